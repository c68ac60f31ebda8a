import type { Command } from 'commander';
import { pino } from 'pino';
import { parseEndpoint, parseOriginUrl } from './endpoints.js';
import { WedgeServer } from './server.js';

interface ServeFlags {
  name: string;
  listen: string;
  origin: string;
  admin: string;
  adminToken?: string;
  logFile?: string;
  logLevel: string;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the wedge: relay client connections on the service address to the local HTTP origin')
    .option('--name <name>', 'this server\'s name in logs and the admin API', 'wedge')
    .option('--listen <addr:port>', 'where clients connect (the service address)', '0.0.0.0:80')
    .option('--origin <url>', 'the local HTTP/1.1 origin', 'http://127.0.0.1:8080')
    .option('--admin <addr:port>', 'admin API (connections, metrics, health); loopback unless a token is set', '127.0.0.1:9090')
    .option('--admin-token <token>', 'require this bearer token on the admin API (env WEDGE_ADMIN_TOKEN)', process.env.WEDGE_ADMIN_TOKEN)
    .option('--log-file <path>', 'write JSON logs here instead of stderr')
    .option('--log-level <level>', 'trace, debug, info, warn or error', process.env.WEDGE_LOG_LEVEL ?? 'info')
    .addHelpText(
      'after',
      '\nExample (one replica, origin on port 8080):\n  wedge serve --name s1 --listen 10.0.0.101:80 --origin http://127.0.0.1:8080\n' +
        'Then: curl http://10.0.0.101/file   and   wedge status',
    )
    .action(async (flags: ServeFlags) => {
      const logger = pino(
        { name: 'wedge', level: flags.logLevel, base: { server: flags.name } },
        flags.logFile ? pino.destination({ dest: flags.logFile, mkdir: true, sync: false }) : pino.destination(2),
      );
      const server = new WedgeServer({
        name: flags.name,
        listen: parseEndpoint(flags.listen, '--listen'),
        origin: parseOriginUrl(flags.origin),
        admin: { ...parseEndpoint(flags.admin, '--admin'), ...(flags.adminToken ? { token: flags.adminToken } : {}) },
        logger,
      });
      await server.start();
      const stop = () => {
        logger.info('stopping');
        void server.stop().then(() => process.exit(0));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
