/* A wedge daemon in this process on loopback, in front of a given origin port. */
import { pino } from 'pino';
import type { Splicer } from '../../relay/connection.js';
import { WedgeServer } from '../../daemon/server.js';

export async function startLoopbackWedge(originPort: number, splicer?: Splicer): Promise<WedgeServer> {
  const server = new WedgeServer({
    name: 'test',
    listen: { host: '127.0.0.1', port: 0 },
    origin: { host: '127.0.0.1', port: originPort },
    admin: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: process.env.WEDGE_TEST_LOG ?? 'silent' }),
    ...(splicer ? { splicer } : {}),
  });
  await server.start();
  return server;
}
