import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { adminRequest } from './admin-client.js';
import { COMPILED_CLI } from '../config/package.js';
import { WedgeError } from '../errors/codes.js';
import { addServeOptions, resolveServeFlags, SOURCES_HELP } from './serve-options.js';

const UPGRADE_TIMEOUT_MS = 60_000;
const POLL_MS = 100;

export function registerUpgradeCommand(program: Command): void {
  const upgrade = program
    .command('upgrade')
    .description('replace the running `wedge serve` in place: start a new one with these options (--handover required), which takes the listener and every live connection; returns once it serves');
  addServeOptions(upgrade)
    .addHelpText('after', SOURCES_HELP)
    .addHelpText(
      'after',
      `
Give exactly the options (or --config file) the running wedge has. The new process (this build of
wedge) runs on detached, its output where this command's goes; the old one exits once everything
is handed over. For systemd: ExecReload=wedge upgrade --config /etc/wedge/wedge.yaml (the unit
needs NotifyAccess=all: the new process tells systemd it is the service's main process now).`,
    )
    .action(async (_flags: unknown, command: Command) => {
      const flags = resolveServeFlags(command);
      if (!flags.handover) throw new WedgeError('WEDGE_ERR_CONFIG', 'wedge upgrade needs --handover PATH (or "handover:" in --config), the one the running wedge has');
      const before = await servingPid(flags.admin, flags.adminToken);
      if (before === undefined) throw new WedgeError('WEDGE_ERR_CONFIG', `no wedge answers on its admin API ${flags.admin}: nothing to upgrade (start it with wedge serve)`);
      const args = process.argv.slice(process.argv.indexOf('upgrade') + 1);
      const child = spawn(process.execPath, [COMPILED_CLI, 'serve', ...args], { detached: true, stdio: 'inherit' });
      let exit: string | undefined;
      child.once('exit', (code, signal) => (exit = signal ?? `status ${code}`));
      child.unref();
      const until = Date.now() + UPGRADE_TIMEOUT_MS;
      while ((await servingPid(flags.admin, flags.adminToken)) !== child.pid) {
        if (exit !== undefined) throw new WedgeError('WEDGE_ERR_HANDOVER', `the new wedge exited (${exit}) before it served; the old one (pid ${before}) serves on`);
        if (Date.now() > until) throw new WedgeError('WEDGE_ERR_HANDOVER', `the new wedge (pid ${child.pid}) does not serve after ${UPGRADE_TIMEOUT_MS / 1000} s`);
        await sleep(POLL_MS);
      }
      process.stdout.write(`upgraded in place: wedge ${before} -> ${child.pid}\n`);
    });
}

/* The pid of the wedge answering on its admin API, if one does. */
async function servingPid(admin: string, token: string | undefined): Promise<number | undefined> {
  try {
    return (JSON.parse((await adminRequest(admin, token, '/healthz', { timeoutMs: 2000 })).text) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}
