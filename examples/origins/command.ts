import type { Command } from 'commander';

export function registerOriginCommand(program: Command): void {
  program.command('origin').description('run the built-in HTTP origin (static files, byte ranges, strong ETags)');
}
