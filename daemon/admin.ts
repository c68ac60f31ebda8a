/*
 * The admin API of one wedge daemon (fastify). It binds to loopback by default; bound anywhere
 * else it refuses to start without a token, and then every route but /healthz requires
 * `Authorization: Bearer <token>`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { isLoopback } from '../config/endpoints.js';
import { WedgeError } from '../errors/codes.js';

export interface AdminSource {
  name: string;
  connections(): unknown[];
  metricsText(): Promise<string>;
  metricsContentType: string;
  declarePeerDead?(address: string, reason: string): void;
  /* Hands up to `count` connections to the support group; returns how many. */
  shed?(count: number): number;
  /* A planned drain: start() begins it (once) and resolves when it is over; status() as GET /drain shows it. */
  drain?: { start(): Promise<void>; status(): DrainView };
}

export type DrainPhase = 'serving' | 'draining' | 'drained';

/* GET /drain. */
export interface DrainView {
  phase: DrainPhase;
  startedAt?: string;
  finishedAt?: string;
  /* Connections still served here. */
  remaining: number;
  /* Of the connections live at the start (and adopted during the drain), how each ended. */
  moved: number;
  finished: number;
  reset: number;
}

export interface AdminOptions {
  host: string;
  port: number;
  token?: string;
}

export async function startAdmin(source: AdminSource, options: AdminOptions): Promise<FastifyInstance> {
  if (!isLoopback(options.host) && !options.token) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `admin API on non-loopback ${options.host} needs --admin-token (or WEDGE_ADMIN_TOKEN)`);
  }
  const app = Fastify({ logger: false });
  const token = options.token ? Buffer.from(`Bearer ${options.token}`) : undefined;

  app.addHook('onRequest', async (request, reply) => {
    if (!token || request.url === '/healthz') return;
    const given = Buffer.from(request.headers.authorization ?? '');
    if (given.length !== token.length || !timingSafeEqual(given, token)) {
      await reply.code(401).send({ error: 'missing or wrong admin token' });
    }
  });

  app.get('/healthz', async () => ({ ok: true, server: source.name, pid: process.pid }));
  app.get('/connections', async () => ({ server: source.name, connections: source.connections() }));
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', source.metricsContentType);
    return source.metricsText();
  });
  app.post<{ Params: { address: string } }>('/peers/:address/dead', async (request, reply) => {
    if (isIP(request.params.address) === 0) return reply.code(400).send({ error: 'not an IP address' });
    if (!source.declarePeerDead) return reply.code(503).send({ error: 'soft state is not running on this server' });
    source.declarePeerDead(request.params.address, 'admin');
    return { ok: true, declared: request.params.address };
  });

  app.post<{ Querystring: { count?: string } }>('/shed', async (request, reply) => {
    const count = Number(request.query.count ?? '1');
    if (!Number.isSafeInteger(count) || count <= 0) return reply.code(400).send({ error: 'count must be a positive integer' });
    if (!source.shed) return reply.code(503).send({ error: 'soft state is not running on this server' });
    return { ok: true, asked: count, handedOff: source.shed(count) };
  });

  app.get('/drain', async (_request, reply) => {
    if (!source.drain) return reply.code(503).send({ error: 'drain is not available on this server' });
    return source.drain.status();
  });
  // ?wait=1 answers when the drain is over (the wedge exits right after).
  app.post<{ Querystring: { wait?: string } }>('/drain', async (request, reply) => {
    if (!source.drain) return reply.code(503).send({ error: 'drain is not available on this server' });
    const done = source.drain.start();
    if (request.query.wait === undefined) return reply.code(202).send(source.drain.status());
    await done;
    return source.drain.status();
  });

  await app.listen({ host: options.host, port: options.port });
  return app;
}
