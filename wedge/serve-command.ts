import type { Command } from 'commander';

export function registerServeCommand(program: Command): void {
  program.command('serve').description('run the wedge in front of a local HTTP origin');
}
