/*
 * The `wedge serve` process: the relay server, and with --address the failover machinery
 * (soft-state member, replication of every connection, takeover of dead peers).
 */
import { networkInterfaces } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { assertPrivileges, splice } from '../native/index.js';
import { loadKeyRing, SoftStateMember } from '../softstate/index.js';
import { parseAddress, parseEndpoint, parseOriginUrl, type Endpoint } from './endpoints.js';
import { WedgeError } from './errors.js';
import { exportSoftStateMetrics } from './metrics.js';
import { Replication } from './replication.js';
import { RstGuard } from './rst-guard.js';
import type { ServeFlags } from './serve-command.js';
import { WedgeServer } from './server.js';
import { Takeover } from './takeover.js';

/* Stalls longer than this are logged: they delay every connection, and past the heartbeat lease
 * peers declare this server dead. */
const STALL_WARNING_MS = 150;

export async function runDaemon(flags: ServeFlags): Promise<void> {
  const logger = pino(
    { name: 'wedge', level: flags.logLevel, base: { server: flags.name } },
    flags.logFile ? pino.destination({ dest: flags.logFile, mkdir: true, sync: false }) : pino.destination(2),
  );
  const listen = parseEndpoint(flags.listen, '--listen');
  if (flags.address) assertPrivileges();
  const server = new WedgeServer({
    name: flags.name,
    listen,
    origin: parseOriginUrl(flags.origin),
    admin: { ...parseEndpoint(flags.admin, '--admin'), ...(flags.adminToken ? { token: flags.adminToken } : {}) },
    logger,
    ...(flags.splice ? { splicer: { splice } } : {}),
  });
  watchEventLoop(logger);
  const failover = flags.address ? await startFailover(flags, listen, server, logger) : undefined;
  await server.start();
  if (!failover) logger.warn('no --address: failover is off (plain relay)');
  const stop = () => {
    logger.info('stopping');
    void (async () => {
      await failover?.stop();
      await server.stop();
      process.exit(0);
    })();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/* Soft state and takeover, wired to the server; returns how to stop them. */
async function startFailover(flags: ServeFlags, listen: Endpoint, server: WedgeServer, logger: Logger): Promise<{ stop(): Promise<void> }> {
  const self = parseAddress(flags.address!, '--address');
  const service = flags.service ? parseEndpoint(flags.service, '--service') : listen;
  if (service.host === '0.0.0.0') throw new WedgeError('WEDGE_ERR_CONFIG', 'give --service ADDR:PORT (the address clients use) when --listen is a wildcard');
  const { iface, prefixLength } = interfaceOf(self, flags.iface);
  const member = new SoftStateMember({
    self,
    keyRing: loadKeyRing({ ...(flags.stateKeyFile ? { keyFile: flags.stateKeyFile } : {}), env: process.env }),
    groups: positive(flags.groups, '--groups'),
    baseGroup: parseAddress(flags.groupBase, '--group-base'),
    port: positive(flags.groupPort, '--group-port'),
    advertIntervalMs: positive(flags.advertInterval, '--advert-interval'),
    expireMs: positive(flags.expire, '--expire'),
    heartbeatIntervalMs: positive(flags.heartbeatInterval, '--heartbeat-interval'),
    deadAfterMs: positive(flags.deadAfter, '--dead-after'),
    heartbeatLeaseMs: positive(flags.heartbeatLease, '--heartbeat-lease'),
    logger,
  });
  const replication = new Replication(server, member, self, server.metrics, logger);
  const guard = new RstGuard();
  const takeover = new Takeover(
    { self, iface, prefixLength, probeTimeoutMs: 100, probeRetries: 4, resumesPerTurn: 256 },
    member,
    server,
    replication,
    guard,
    server.metrics,
    logger,
  );
  server.setPeerReporter((peer, reason) => member.declareDead(peer, reason));
  exportSoftStateMetrics(server.metrics.registry, () => member.metrics);
  await guard.install();
  await member.start();
  replication.start(positive(flags.advertInterval, '--advert-interval'));
  takeover.start([service.host]);
  logger.info({ self, service, iface, group: member.group }, 'failover on');
  return {
    async stop() {
      replication.stop();
      await member.stop();
      await guard.uninstall();
    },
  };
}

function interfaceOf(address: string, wanted?: string): { iface: string; prefixLength: number } {
  for (const [name, entries] of Object.entries(networkInterfaces())) {
    if (wanted && name !== wanted) continue;
    const entry = entries?.find((e) => e.family === 'IPv4' && e.address === address);
    if (entry?.cidr) return { iface: name, prefixLength: Number(entry.cidr.split('/')[1]) };
  }
  throw new WedgeError('WEDGE_ERR_CONFIG', `--address ${address} is not on ${wanted ? `interface ${wanted}` : 'any interface'} of this host`);
}

function positive(text: string, option: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new WedgeError('WEDGE_ERR_CONFIG', `${option} must be a positive integer, got "${text}"`);
  return value;
}

/* Heartbeats share the event loop with the relay: a long stall looks like death to the peers. */
function watchEventLoop(logger: Logger): void {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  setInterval(() => {
    const worstMs = delay.max / 1e6;
    if (worstMs > STALL_WARNING_MS) logger.warn({ worstMs: +worstMs.toFixed(1), p99Ms: +(delay.percentile(99) / 1e6).toFixed(1) }, 'event loop stalled');
    delay.reset();
  }, 1000).unref();
}

