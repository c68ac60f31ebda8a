#!/usr/bin/env node
/*
 * The `wedge` command. Each area registers its own subcommands; this file only assembles them
 * and turns a WedgeError into one clear line and a non-zero exit code.
 */
import { Command } from 'commander';
import { WedgeError } from '../errors/codes.js';
import { registerServeCommand } from './serve-command.js';
import { registerStatusCommand } from './status-command.js';
import { registerDrainCommand } from './drain-command.js';
import { registerCheckCommand } from './check-command.js';
import { registerUpgradeCommand } from './upgrade-command.js';
import { registerDemoCommand } from './demo-command.js';
import { registerAgentCommand } from './agent-command.js';
import { registerLabCommands } from '../lab/command.js';
import { registerOriginCommand } from '../examples/origins/command.js';

const program = new Command('wedge')
  .description(
    'Keeps long-running TCP connections (big downloads, media streams) alive when the replica ' +
      'HTTP server behind them dies: another replica resumes each connection at the next byte.',
  )
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: false });

registerServeCommand(program);
registerCheckCommand(program);
registerUpgradeCommand(program);
registerStatusCommand(program);
registerDrainCommand(program);
registerDemoCommand(program);
registerAgentCommand(program);
registerLabCommands(program);
registerOriginCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof WedgeError) {
    process.stderr.write(`wedge: ${err.code}: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
