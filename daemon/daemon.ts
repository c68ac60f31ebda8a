/*
 * The `wedge serve` process: the relay server, and with --address the failover machinery
 * (soft-state member, replication of every connection, takeover of dead peers).
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { notifySystemd, raiseOpenFileLimit, splice } from '../native/index.js';
import { preflight, preflightTarget } from './preflight.js';
import { loadKeyRing, SoftStateMember } from '../softstate/index.js';
import { parseAddress, parseEndpoint, parseOriginUrl, type Endpoint } from '../config/endpoints.js';
import { WedgeError } from '../errors/codes.js';
import { exportSoftStateMetrics } from './metrics.js';
import { MigrateRace } from '../takeover/movers/migrate.js';
import { serviceIdentity } from '../migrate/negotiation.js';
import { MigrateServing } from './migrate-serving.js';
import { Replication } from '../replication/replication.js';
import { RstGuard } from '../takeover/guard.js';
import type { ServeFlags } from './serve-flags.js';
import { WedgeServer } from './server.js';
import { PeerRangeService, peerOrigins } from './peer-range.js';
import { AddressTakeover } from '../takeover/movers/address.js';
import { TakeoverPipeline } from '../takeover/pipeline.js';
import { Drain, type DrainFailover } from './drain.js';
import { connectPredecessor, listenForSuccessor, type HandedFailover, type Handing } from './handover.js';
import type { RelayConnection } from '../relay/connection.js';
import type { ConnectionRecord } from '../softstate/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { FORWARDED_MODES, type ForwardedMode } from '../parsers/forwarded-head.js';

/* Stalls longer than this are logged: they delay every connection, and past the heartbeat lease
 * peers declare this server dead. */
const STALL_WARNING_MS = 150;

export async function runDaemon(flags: ServeFlags): Promise<void> {
  const logger = pino(
    { name: 'wedge', level: flags.logLevel, base: { server: flags.name } },
    flags.logFile ? pino.destination({ dest: flags.logFile, mkdir: true, sync: false }) : pino.destination(2),
  );
  const listen = parseEndpoint(flags.listen, '--listen');
  if (flags.onSigterm !== 'drain' && flags.onSigterm !== 'exit') throw new WedgeError('WEDGE_ERR_CONFIG', `--on-sigterm must be drain or exit, got "${flags.onSigterm}"`);
  if (flags.address) await preflight(preflightTarget(flags), logger);
  const maxConnections = connectionLimit(positive(flags.maxConnections, '--max-connections'), logger);
  const server = new WedgeServer({
    name: flags.name,
    listen,
    origin: parseOriginUrl(flags.origin),
    admin: { ...parseEndpoint(flags.admin, '--admin'), ...(flags.adminToken ? { token: flags.adminToken } : {}) },
    logger,
    ...(flags.splice ? { splicer: { splice } } : {}),
    maxConnections,
    ...(flags.stateListen ? { stateListen: parseEndpoint(flags.stateListen, '--state-listen') } : {}),
    originRetryMs: positive(flags.originRetry, '--origin-retry'),
    forwarded: forwardedMode(flags.forwarded),
    limits: {
      headerTimeoutMs: positive(flags.headerTimeout, '--header-timeout'),
      idleTimeoutMs: positive(flags.idleTimeout, '--idle-timeout'),
      bodyTimeoutMs: positive(flags.bodyTimeout, '--body-timeout'),
      responseTimeoutMs: positive(flags.responseTimeout, '--response-timeout'),
      maxRequestLineBytes: positive(flags.maxRequestLine, '--max-request-line'),
      maxEmptyLines: positive(flags.maxEmptyLines, '--max-empty-lines'),
    },
  });
  watchEventLoop(logger);
  const drainTimeoutMs = positive(flags.drainTimeout, '--drain-timeout');
  // An in-place upgrade: the running wedge hands this one its listener first, then (its own
  // failover stopped) its connections.
  const predecessor = flags.handover ? await connectPredecessor(flags.handover, logger) : undefined;
  if (predecessor) await predecessor.takeListener(server);
  const handed = await predecessor?.state();
  const failover = flags.address ? await startFailover(flags, listen, server, logger, handed?.failover) : undefined;
  const drain = new Drain(server, failover?.drain, drainTimeoutMs, logger);
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping');
    notifySystemd('STOPPING=1');
    void (async () => {
      await failover?.stop();
      await server.stop();
      process.exit(code);
    })();
  };
  const drainAndStop = (trigger: string): Promise<void> => {
    notifySystemd('STOPPING=1\nSTATUS=draining');
    return drain.start(trigger).then(
      () => stop(0),
      (err: Error) => {
        logger.error({ err: err.message }, 'drain failed');
        stop(1);
      },
    );
  };
  server.setDrainer({ start: () => drainAndStop('admin'), status: () => drain.status() });
  if (predecessor) {
    await server.startServices();
    predecessor.adopt(handed!.connections, server, (connection, record) => failover?.track(connection, record));
  } else {
    await server.start();
  }
  // systemd (Type=notify): ready, and after an in-place upgrade this process is the service's main one.
  notifySystemd(`READY=1\nMAINPID=${process.pid}\nSTATUS=serving${predecessor ? ' (upgraded in place)' : ''}`);
  if (flags.handover) {
    const handing: Handing = {
      listenerFd: () => server.listenerFd,
      stopAccepting: () => server.stopAccepting(),
      connections: () => [...server.connections.values()],
      record: (id) => failover?.record(id),
      stopFailover: async () => failover?.stopForHandover(),
      stopServices: () => server.stopServices(),
    };
    // A handover that failed half-way leaves this process without its listener: it exits non-zero
    // (systemd restarts it) once what it still serves has finished.
    await listenForSuccessor(flags.handover, handing, logger, ({ left, error }) => void finishHere(left, drainTimeoutMs, logger).then(() => stop(error ? 1 : 0)));
  }
  if (!failover) logger.warn('no --address: failover is off (plain relay)');
  // A second SIGTERM during a drain stops at once; SIGINT always does.
  process.on('SIGTERM', () => (flags.onSigterm === 'drain' && drain.status().phase === 'serving' ? void drainAndStop('sigterm') : stop(0)));
  process.once('SIGINT', () => stop(0));
}

/* After an in-place upgrade: what could not be handed over (a request arriving) finishes here,
 * within the drain timeout; what is still here then is reset. */
async function finishHere(left: readonly RelayConnection[], timeoutMs: number, logger: Logger): Promise<void> {
  const until = performance.now() + timeoutMs;
  const open = () => left.filter((c) => c.state !== 'closed' && c.state !== 'aborted' && c.state !== 'relinquished');
  while (open().length > 0 && performance.now() < until) await sleep(20);
  for (const connection of open()) connection.reset('drain-not-moved');
  logger.warn({ finishedHere: left.length }, 'in-place upgrade done: exiting');
}

interface Failover {
  drain: DrainFailover;
  /* A connection handed over in place, served here from now on with its record. */
  track(connection: RelayConnection, record: ConnectionRecord): void;
  record(id: string): ConnectionRecord | undefined;
  /* Everything stopped for an in-place upgrade; what the next process carries on. */
  stopForHandover(): Promise<HandedFailover>;
  stop(): Promise<void>;
}

/* Soft state and takeover, wired to the server; returns how to stop them. `inherited`: the
 * predecessor's sender and claims (an in-place upgrade). */
async function startFailover(flags: ServeFlags, listen: Endpoint, server: WedgeServer, logger: Logger, inherited?: HandedFailover): Promise<Failover> {
  const self = parseAddress(flags.address!, '--address');
  const service = flags.service ? parseEndpoint(flags.service, '--service') : listen;
  if (service.host === '0.0.0.0') throw new WedgeError('WEDGE_ERR_CONFIG', 'give --service ADDR:PORT (the address clients use) when --listen is a wildcard');
  if (flags.takeover !== 'address' && flags.takeover !== 'migrate') throw new WedgeError('WEDGE_ERR_CONFIG', `--takeover must be address or migrate, got "${flags.takeover}"`);
  if (flags.takeover === 'migrate' && !flags.migrateKey) throw new WedgeError('WEDGE_ERR_CONFIG', '--takeover migrate needs --migrate-key (the service\'s Ed25519 private key)');
  const { iface, prefixLength } = interfaceOf(self, flags.iface);
  const keyRing = loadKeyRing({ ...(flags.stateKeyFile ? { keyFile: flags.stateKeyFile } : {}), env: process.env });
  const member = new SoftStateMember({
    self,
    keyRing,
    groups: positive(flags.groups, '--groups'),
    baseGroup: parseAddress(flags.groupBase, '--group-base'),
    port: positive(flags.groupPort, '--group-port'),
    advertIntervalMs: positive(flags.advertInterval, '--advert-interval'),
    expireMs: positive(flags.expire, '--expire'),
    heartbeatIntervalMs: positive(flags.heartbeatInterval, '--heartbeat-interval'),
    deadAfterMs: positive(flags.deadAfter, '--dead-after'),
    heartbeatLeaseMs: positive(flags.heartbeatLease, '--heartbeat-lease'),
    logger,
    ...(inherited ? { epoch: BigInt(inherited.sender.epoch), lastSeq: inherited.sender.lastSeq } : {}),
  });
  const peerRange = new PeerRangeService({ host: self, port: positive(flags.peerPort, '--peer-port') }, parseOriginUrl(flags.origin), keyRing, logger);
  server.setOriginPeers(() => peerOrigins(alivePeers(member, self), positive(flags.peerPort, '--peer-port'), keyRing));
  const replication = new Replication(member, self, () => server.metrics.relinquished.inc(), logger);
  server.on('connection', (connection) => replication.accepted(connection));
  // Accepted on a predecessor's listener before failover was up (an in-place upgrade).
  for (const connection of server.connections.values()) replication.accepted(connection);
  server.setProtection((id) => replication.protection(id));
  const guard = new RstGuard();
  const probe = { probeTimeoutMs: 100, probeRetries: 4 };
  const serving = flags.migrateKey
    ? new MigrateServing(service, serviceIdentity(readKey(flags.migrateKey)), server, replication, server.metrics, logger)
    : undefined;
  server.setPeerReporter((peer, reason) => member.declareDead(peer, reason));
  server.setShedder((count) => shed(replication, count, server, logger, 'shed'));
  exportSoftStateMetrics(server.metrics.registry, () => member.metrics);
  server.metrics.lastHeard = (peer) => member.peers().find((p) => p.address === peer)?.lastHeardAt;
  member.on('peer-dead', (peer, reason) => reason === 'silent' && server.metrics.peerSilent(peer));
  await guard.install();
  await member.start();
  await peerRange.start();
  replication.start(positive(flags.advertInterval, '--advert-interval'));
  await serving?.start();
  const pipeline = (probeIface: string) => new TakeoverPipeline({ iface: probeIface, ...probe, resumesPerTurn: 1024 }, server, guard, replication, server.metrics, logger);
  let addresses: AddressTakeover | undefined;
  if (flags.takeover === 'migrate') {
    const race = { self, service: { address: service.host, port: service.port }, ...RACE };
    new MigrateRace(race, member, pipeline(interfaceOf(service.host).iface), replication, logger, serving && ((record, timeoutMs) => serving.invite(record, timeoutMs))).start();
  } else {
    addresses = new AddressTakeover({ self, iface, prefixLength }, member, pipeline(iface), logger);
    addresses.start([service.host], inherited?.services);
  }
  logger.info({ self, service, iface, group: member.group, takeover: flags.takeover, migrateKey: !!serving, inherited: !!inherited }, 'failover on');
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    replication.stop();
    await serving?.stop();
    await peerRange.stop();
    await member.stop();
    await guard.uninstall();
  };
  return {
    drain: {
      takeover: flags.takeover,
      servicePort: service.port,
      held: () => addresses?.held() ?? [],
      livePeers: () => alivePeers(member, self).length,
      advertiseAll: () => replication.advertiseAll(),
      handOffAll: () => shed(replication, Number.MAX_SAFE_INTEGER, server, logger, 'drain'),
      leave: (reason) => member.leave(reason),
    },
    track: (connection, record) => replication.track(connection, record.transport, record.migration, record.migrate),
    record: (id) => replication.record(id),
    async stopForHandover() {
      await stop();
      return { sender: { epoch: member.sender.epoch.toString(), lastSeq: member.sender.lastSeq }, services: addresses?.claims() ?? [] };
    },
    stop,
  };
}

/* The Migrate race's timing: a candidate waits 50 ms per rendezvous rank, 0.5 ms per connection
 * it serves (1,000 connections: the 500 ms cap), and 0-5 ms of jitter. */
const RACE = { rankStepMs: 50, jitterMs: 5, loadDelayMsPerConnection: 0.5, maxLoadDelayMs: 500 };

/* Load shedding (or a drain): hands up to `count` movable connections to the group; returns how many. */
function shed(replication: Replication, count: number, server: WedgeServer, logger: Logger, trigger: 'shed' | 'drain'): number {
  const chosen = replication.movable().slice(0, count);
  for (const id of chosen) if (replication.handOff(id)) server.metrics.handoffs.inc({ trigger });
  logger.warn({ trigger, asked: count, handedOff: chosen.length }, 'connections handed to the group');
  return chosen.length;
}

/* Peers alive now, the least loaded first (their origins serve the rest of a dropped response). */
function alivePeers(member: SoftStateMember, self: string): string[] {
  return member
    .peers()
    .filter((peer) => peer.alive && peer.address !== self)
    .sort((a, b) => (a.load?.connections ?? 0) - (b.load?.connections ?? 0))
    .map((peer) => peer.address);
}

function readKey(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--migrate-key ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function interfaceOf(address: string, wanted?: string): { iface: string; prefixLength: number } {
  for (const [name, entries] of Object.entries(networkInterfaces())) {
    if (wanted && name !== wanted) continue;
    const entry = entries?.find((e) => e.family === 'IPv4' && e.address === address);
    if (entry?.cidr) return { iface: name, prefixLength: Number(entry.cidr.split('/')[1]) };
  }
  throw new WedgeError('WEDGE_ERR_CONFIG', `--address ${address} is not on ${wanted ? `interface ${wanted}` : 'any interface'} of this host`);
}

function forwardedMode(text: string): ForwardedMode {
  if (!(FORWARDED_MODES as readonly string[]).includes(text)) throw new WedgeError('WEDGE_ERR_CONFIG', `--forwarded must be one of ${FORWARDED_MODES.join(', ')}, got "${text}"`);
  return text as ForwardedMode;
}

function positive(text: string, option: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new WedgeError('WEDGE_ERR_CONFIG', `${option} must be a positive integer, got "${text}"`);
  return value;
}

/* Descriptors a client connection holds: its socket and the origin's, plus, on average, a share
 * of the four a kernel splice adds (two dups and a pipe) while it moves a body. */
const DESCRIPTORS_PER_CONNECTION = 3;
/* Kept for everything else: the admin API must answer when the data path is full. */
const DESCRIPTOR_RESERVE = 512;

/*
 * The connections served at once: --max-connections, unless the descriptor limit (its soft limit
 * raised to the hard one first) cannot hold that many; then as many as it can, with a warning. A
 * shell's 1024 would cap the server at a few hundred connections, and running out of descriptors
 * resets new clients and silences the admin API.
 */
function connectionLimit(wanted: number, logger: Logger): number {
  const files = raiseOpenFileLimit();
  const fits = Math.max(1, Math.floor((files.soft - DESCRIPTOR_RESERVE) / DESCRIPTORS_PER_CONNECTION));
  const limit = Math.min(wanted, fits);
  if (limit < wanted) logger.warn({ wanted, limit, openFiles: files }, '--max-connections lowered to what the descriptor limit holds (raise LimitNOFILE / ulimit -n)');
  else logger.info({ maxConnections: limit, openFiles: files }, 'connection limit');
  return limit;
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

