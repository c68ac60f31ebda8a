import type { Command } from 'commander';

export function registerLabCommands(program: Command): void {
  program.command('lab').description('a replica cluster on this machine, made of network namespaces');
}
