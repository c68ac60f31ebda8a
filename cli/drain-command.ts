import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { DrainView } from '../daemon/drain.js';
import { WedgeError } from '../errors/codes.js';

const POLL_MS = 200;
/* How a request fails once the wedge has exited (or is closing its admin API). */
const GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

interface DrainFlags {
  admin: string;
  adminToken?: string;
  wait?: boolean;
  timeout: string;
  json?: boolean;
}

export function registerDrainCommand(program: Command): void {
  program
    .command('drain')
    .description('hand every live connection of this server to its support group, then let the wedge exit (asks the local admin API)')
    .option('--admin <url>', 'admin API of the wedge to drain', 'http://127.0.0.1:9090')
    .option('--admin-token <token>', 'bearer token, if the admin API requires one', process.env.WEDGE_ADMIN_TOKEN)
    .option('--wait', 'return only when nothing is left (the wedge has exited)')
    .option('--timeout <s>', 'with --wait: give up waiting after this long (exit status 2)', '120')
    .option('--json', 'print the last GET /drain answer as JSON')
    .addHelpText(
      'after',
      `
Address takeover: the server's service addresses and their connections move to peers at once (no
failure detection: the client stalls for a few tens of milliseconds). TCP Migrate: connections
whose client runs \`wedge agent\` are handed off, the others finish here. What is still here at
the wedge's --drain-timeout is reset and counted (wedge_aborts_total{reason="drain-not-moved"}).
SIGTERM does the same unless the wedge runs with --on-sigterm exit. Metrics: wedge_drains_total,
wedge_drained_connections_total{result}.`,
    )
    .action(async (flags: DrainFlags) => {
      let view = (await ask(flags, 'POST'))!;
      let exited = false;
      const deadline = Date.now() + Number(flags.timeout) * 1000;
      while (flags.wait && !exited && view.phase !== 'drained') {
        if (Date.now() > deadline) throw new WedgeError('WEDGE_ERR_CONFIG', `still draining after ${flags.timeout} s: ${describe(view)}`);
        await sleep(POLL_MS);
        const now = await ask(flags, 'GET', true);
        if (now) view = now;
        else exited = true;
      }
      // The wedge exits right after its drain: the last answer seen is reported.
      if (flags.json) process.stdout.write(JSON.stringify({ ...view, ...(exited ? { exited } : {}) }) + '\n');
      else process.stdout.write(`${describe(view)}${exited ? ' (then the wedge exited)' : ''}\n`);
    });
}

/* The admin API's drain status; undefined when it no longer answers and `goneIsDone` (the wedge exited). */
async function ask(flags: DrainFlags, method: 'GET' | 'POST', goneIsDone = false): Promise<DrainView | undefined> {
  try {
    const response = await request(new URL('/drain', flags.admin), {
      method,
      headers: flags.adminToken ? { authorization: `Bearer ${flags.adminToken}` } : {},
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) throw new Error(`HTTP ${response.statusCode}: ${text}`);
    return JSON.parse(text) as DrainView;
  } catch (err) {
    if (goneIsDone && GONE.has((err as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw new WedgeError('WEDGE_ERR_CONFIG', `cannot ${method} ${flags.admin}/drain (${(err as Error).message}); is \`wedge serve\` running here?`);
  }
}

function describe(view: DrainView): string {
  return `${view.phase}: ${view.remaining} connection(s) left; moved ${view.moved}, finished ${view.finished}, reset ${view.reset}`;
}
