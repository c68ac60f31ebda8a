/*
 * The state listener (`wedge serve --state-listen`, loopback only): where local origins store
 * per-connection snapshots under the state contract. `PUT /wedge-state/<slot>/<token>` with
 * `Wedge-Exchange: <n>` and `Wedge-Offset: <k>` and the snapshot as body (at most 4 KiB).
 *
 * Answers: 204 stored; 400 malformed position; 403 a peer not on this host; 404 unknown or
 * ended connection (or a wrong token); 409 the position goes backwards; 413 snapshot too large.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { isLoopback } from '../config/endpoints.js';
import { WedgeError } from '../errors/codes.js';
import { MAX_SNAPSHOT_BYTES, type StateSlots, type StoreResult } from '../relay/state-slots.js';

export interface StateStoreCounters {
  snapshot(result: StoreResult | 'refused-peer' | 'too-large' | 'malformed'): void;
}

const STATUS: Record<StoreResult, number> = { stored: 204, unknown: 404, backwards: 409 };

export async function startStateStore(slots: StateSlots, listen: { host: string; port: number }, counters: StateStoreCounters): Promise<FastifyInstance> {
  if (!isLoopback(listen.host)) throw new WedgeError('WEDGE_ERR_CONFIG', `--state-listen must be a loopback address (origins are local), got ${listen.host}`);
  const app = Fastify({ logger: false, bodyLimit: MAX_SNAPSHOT_BYTES });
  // Snapshots are opaque bytes, whatever the origin calls their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  app.addHook('onRequest', async (request, reply) => {
    if (!isLoopback(request.socket.remoteAddress ?? '')) {
      counters.snapshot('refused-peer');
      await reply.code(403).send({ error: 'snapshots are accepted from this host only' });
    }
  });
  app.setErrorHandler(async (error: { statusCode?: number; message: string }, _request, reply) => {
    if (error.statusCode === 413) counters.snapshot('too-large');
    return reply.code(error.statusCode ?? 500).send({ error: error.message });
  });
  app.put<{ Params: { slot: string; token: string } }>('/wedge-state/:slot/:token', async (request, reply) => {
    const exchange = position(request.headers['wedge-exchange']);
    const offset = position(request.headers['wedge-offset']);
    if (exchange === undefined || offset === undefined) {
      counters.snapshot('malformed');
      return reply.code(400).send({ error: 'Wedge-Exchange and Wedge-Offset must be non-negative integers' });
    }
    const data = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const result = slots.store(request.params.slot, request.params.token, { exchange, offset, data: Buffer.from(data) });
    counters.snapshot(result);
    return reply.code(STATUS[result]).send();
  });
  await app.listen({ host: listen.host, port: listen.port });
  return app;
}

function position(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}
