import type { Command } from 'commander';
import { adminRequest } from './admin-client.js';
import type { ConnectionView } from '../daemon/server.js';
import { WedgeError } from '../errors/codes.js';


export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show the connections this server holds (asks the local admin API)')
    .option('--admin <url>', 'admin API of the wedge to ask', 'http://127.0.0.1:9090')
    .option('--admin-token <token>', 'bearer token, if the admin API requires one', process.env.WEDGE_ADMIN_TOKEN)
    .option('--json', 'print the raw JSON for scripts')
    .action(async (flags: { admin: string; adminToken?: string; json?: boolean }) => {
      let body: { server: string; connections: ConnectionView[] };
      try {
        const answer = await adminRequest(flags.admin, flags.adminToken, '/connections');
        if (answer.statusCode !== 200) throw new Error(`HTTP ${answer.statusCode}: ${answer.text}`);
        body = JSON.parse(answer.text) as typeof body;
      } catch (err) {
        throw new WedgeError('WEDGE_ERR_CONFIG', `cannot read ${flags.admin}/connections (${(err as Error).message}); is \`wedge serve\` running here?`);
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify(body) + '\n');
        return;
      }
      process.stdout.write(`server ${body.server}: ${body.connections.length} connection(s)\n`);
      for (const c of body.connections) {
        const protection = c.protected ? 'protected' : `unprotected (${c.unprotectedReason})`;
        process.stdout.write(`  ${c.id}  ${c.state}  requests=${c.requests}  in=${c.bytes.fromClient}  out=${c.bytes.toClient}  ${protection}\n`);
      }
    });
}
