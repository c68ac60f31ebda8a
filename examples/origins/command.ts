/*
 * `wedge origin`: runs the built-in origin (server.ts) until SIGTERM/SIGINT, then closes it
 * gracefully. The lab starts one per server on 127.0.0.1:8080 inside the server's namespace.
 */
import type { Command } from 'commander';
import { WedgeError } from '../../errors/codes.js';
import { createOrigin, parseListen } from './server.js';

interface OriginCommandOptions {
  root: string;
  listen: string;
  quiet?: boolean;
}

export function registerOriginCommand(program: Command): void {
  program
    .command('origin')
    .description('run the built-in HTTP origin (static files, byte ranges, strong ETags)')
    .requiredOption('--root <dir>', 'directory to serve')
    .option('--listen <addr:port>', 'address and port to listen on', '127.0.0.1:8080')
    .option('--quiet', 'do not log each request')
    .action(async (options: OriginCommandOptions) => {
      let listen: { host: string; port: number };
      try {
        listen = parseListen(options.listen);
      } catch (err) {
        throw new WedgeError('WEDGE_ERR_CONFIG', (err as Error).message);
      }
      const app = await createOrigin({ root: options.root, log: !options.quiet });
      const stop = (): void => {
        app.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      await app.listen(listen);
    });
}
