import Fastify, { type FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { isLoopback, type Endpoint } from '../config/endpoints.js';
import { PACKAGE_VERSION } from '../config/package.js';
import { WedgeError } from '../errors/codes.js';

/* Prometheus metrics of one client agent, and the loopback HTTP endpoint that serves them. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly negotiations = new Counter({ name: 'wedge_agent_negotiations_total', help: 'Key exchanges with servers of learned connections, by result (ok, unnegotiated: the server did not answer validly)', labelNames: ['result'], registers: [this.registry] });
  readonly migrations = new Counter({ name: 'wedge_agent_migrations_total', help: 'Connections moved to another server by a valid Migrate SYN', registers: [this.registry] });
  readonly rejectedSyns = new Counter({ name: 'wedge_agent_rejected_syns_total', help: 'Migrate SYNs refused with RST, by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly ignoredSynAcks = new Counter({ name: 'wedge_agent_ignored_synacks_total', help: 'SYN-ACKs that started nothing, by reason (no-socket: the client has no such socket, a spoof; not-a-reuse: other ISNs for a live connection that its server does not vouch for)', labelNames: ['reason'], registers: [this.registry] });
  readonly invitations = new Counter({ name: 'wedge_agent_invitations_total', help: 'Key exchanges run with a replica that invited the agent (adopting a connection whose key never reached its group), by result (negotiated, failed)', labelNames: ['result'], registers: [this.registry] });
  readonly orphanResets = new Counter({ name: 'wedge_agent_orphan_resets_total', help: 'Connections reset because no replica could move them: their server went silent before the key exchange finished, then sent nothing for --orphan-timeout', registers: [this.registry] });
  readonly moveRequests = new Counter({ name: 'wedge_agent_move_requests_total', help: 'MOVE requests sent for connections slower than a fraction of their best', registers: [this.registry] });

  constructor(connections: () => number) {
    new Gauge({
      name: 'wedge_agent_connections',
      help: 'Negotiated connections the agent can migrate now',
      registers: [this.registry],
      collect() {
        this.set(connections());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'wedge_agent_' });
    new Gauge({ name: 'wedge_agent_build_info', help: 'Always 1; the labels say which agent runs (version) on which Node.js (node)', labelNames: ['version', 'node'], registers: [this.registry] }).set({ version: PACKAGE_VERSION, node: process.versions.node }, 1);
    // Both results show from the start, so a dashboard can tell "none yet" from "not exported".
    for (const result of ['ok', 'unnegotiated']) this.negotiations.inc({ result }, 0);
  }
}

/** Serves GET /metrics on a loopback address (the metrics name the client's servers). */
export async function serveAgentMetrics(metrics: AgentMetrics, where: Endpoint): Promise<FastifyInstance> {
  if (!isLoopback(where.host)) throw new WedgeError('WEDGE_ERR_CONFIG', `--metrics must be a loopback address (127.x.x.x, ::1, localhost), got ${where.host}`);
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  try {
    await app.listen({ host: where.host, port: where.port });
  } catch (error) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--metrics ${where.host}:${where.port}: ${(error as Error).message}`, { cause: error });
  }
  return app;
}
