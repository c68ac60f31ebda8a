import type { Command } from 'commander';
import { adminRequest } from './admin-client.js';
import type { DrainView } from '../daemon/admin.js';
import { WedgeError } from '../errors/codes.js';

/* How a request fails when the wedge exits before its answer is read. */
const GONE = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

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
    .option('--wait', 'return only when the drain is over (the wedge exits right after)')
    .option('--timeout <s>', 'with --wait: give up waiting after this long (exit status 2)', '120')
    .option('--json', 'print the answer of POST /drain as JSON')
    .addHelpText(
      'after',
      `
Address takeover: the server's service addresses and their connections move to peers at once (no
failure detection: the client stalls for a few tens of milliseconds). TCP Migrate: connections
whose client runs \`wedge agent\` are handed off, the others finish here. What is still here at
the wedge's --drain-timeout is reset and counted (wedge_aborts_total{reason="drain-not-moved"}).
SIGTERM does the same unless the wedge runs with --on-sigterm exit. Admin API: POST /drain
(202, at once), POST /drain?wait=1 (when it is over), GET /drain. Metrics: wedge_drains_total,
wedge_drained_connections_total{result}.`,
    )
    .action(async (flags: DrainFlags) => {
      const view = await drain(flags);
      if (flags.json) process.stdout.write(JSON.stringify(view ?? { phase: 'drained', exited: true }) + '\n');
      else process.stdout.write(view ? `${view.phase}: ${view.remaining} connection(s) left; moved ${view.moved}, finished ${view.finished}, reset ${view.reset}\n` : 'drained: the wedge exited\n');
    });
}

/* The answer of POST /drain; undefined when the wedge exited before answering a --wait. */
async function drain(flags: DrainFlags): Promise<DrainView | undefined> {
  const timeoutMs = Number(flags.timeout) * 1000;
  try {
    const answer = await adminRequest(flags.admin, flags.adminToken, flags.wait ? '/drain?wait=1' : '/drain', { method: 'POST', timeoutMs });
    if (answer.statusCode >= 300) throw new Error(`HTTP ${answer.statusCode}: ${answer.text}`);
    return JSON.parse(answer.text) as DrainView;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (flags.wait && GONE.has(code)) return undefined;
    throw new WedgeError('WEDGE_ERR_CONFIG', `cannot POST ${flags.admin}/drain (${(err as Error).message}); is \`wedge serve\` running here?`);
  }
}
