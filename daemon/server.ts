/*
 * Theory of operation: the per-server daemon (`wedge serve`).
 *
 * It accepts client connections on the service address and gives each one to a
 * RelayConnection (relay/connection.ts) that relays it to the local origin and keeps its stream
 * map. It owns the registry of live connections, the metrics and the admin API. Takeover and
 * soft state plug in here: they see the same registry. Every connection, accepted or adopted,
 * gets the same front-end limits; beyond `maxConnections` served at once a new client is told
 * 503 (WEDGE_ERR_TOO_MANY_CONNECTIONS, counted as a reject) and closed unread. Adopted
 * connections are never refused: their clients are mid-download.
 */
import { EventEmitter } from 'node:events';
import net, { type Server, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import { RelayConnection, type AdoptedStream, type Splicer } from '../relay/connection.js';
import { errorResponse } from '../relay/error-page.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_ORIGIN_RECOVERY, type RelayLimits } from '../relay/options.js';
import type { PeerOrigin } from '../relay/origin-recovery.js';
import type { StreamMapJSON } from '../stream-map/stream-map.js';
import type { ForwardedMode } from '../parsers/forwarded-head.js';
import { StateSlots } from '../relay/state-slots.js';
import { startAdmin, type AdminSource } from './admin.js';
import { startStateStore } from './state-store.js';
import { WedgeMetrics } from './metrics.js';

export interface ServeConfig {
  name: string;
  listen: { host: string; port: number };
  origin: { host: string; port: number };
  admin: { host: string; port: number; token?: string };
  splicer?: Splicer;
  logger: Logger;
  limits?: Partial<RelayLimits>;
  maxConnections?: number;
  /* The state contract's listener (loopback), when on. */
  stateListen?: { host: string; port: number };
  /* How long the local origin may stay away mid-response (--origin-retry). */
  originRetryMs?: number;
  /* How the origin learns each client's address (--forwarded). */
  forwarded?: ForwardedMode;
}

/* How long a refused client may take to read its 503 before its socket is closed anyway. */
const REFUSAL_LINGER_MS = 2000;

export class WedgeServer extends EventEmitter<{ connection: [RelayConnection] }> {
  readonly metrics = new WedgeMetrics();
  readonly connections = new Map<string, RelayConnection>();
  private server: Server | undefined;
  private admin: FastifyInstance | undefined;
  private stateStore: FastifyInstance | undefined;
  private stateSlots: StateSlots | undefined;
  private reportPeerDead: ((peer: string, reason: string) => void) | undefined;
  private shedder: ((count: number) => number) | undefined;
  private drainer: AdminSource['drain'];
  private originPeers: () => PeerOrigin[] = () => [];
  private protection: (id: string) => Protection = () => ({ protected: false, reason: 'failover is off (no --address)' });

  constructor(readonly config: ServeConfig) {
    super();
  }

  async start(): Promise<void> {
    await this.listen();
    await this.startServices();
  }

  /* Accepting clients: on `listen`, or on the listening socket a predecessor handed over (an
   * in-place upgrade: the same socket, its accept queue included). */
  async listen(listenerFd?: number): Promise<void> {
    const { listen } = this.config;
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (listenerFd === undefined) server.listen({ host: listen.host, port: listen.port, backlog: 4096 }, () => resolve());
      else server.listen({ fd: listenerFd }, () => resolve());
    });
    this.server = server;
  }

  /* The listening socket's descriptor (handed to the next process on an in-place upgrade). */
  get listenerFd(): number {
    return (this.server as unknown as { _handle: { fd: number } })._handle.fd;
  }

  /* The state contract's listener and the admin API. */
  async startServices(): Promise<void> {
    const { logger, listen } = this.config;
    const { stateListen } = this.config;
    if (stateListen) {
      const slots = new StateSlots();
      this.stateStore = await startStateStore(slots, stateListen, this.metrics);
      // The port actually bound (0 in tests).
      slots.base = `http://${stateListen.host}:${(this.stateStore.server.address() as net.AddressInfo).port}`;
      this.stateSlots = slots;
    }
    this.admin = await startAdmin(
      {
        name: this.config.name,
        connections: () => [...this.connections.values()].map((c) => describeConnection(c, this.protection(c.id))),
        metricsText: () => this.metrics.registry.metrics(),
        metricsContentType: this.metrics.registry.contentType,
        ...(this.reportPeerDead ? { declarePeerDead: this.reportPeerDead } : {}),
        ...(this.shedder ? { shed: this.shedder } : {}),
        ...(this.drainer ? { drain: this.drainer } : {}),
      },
      this.config.admin,
    );
    logger.info({ listen, origin: this.config.origin, admin: this.config.admin.host + ':' + this.config.admin.port, splice: !!this.config.splicer }, 'wedge serving');
  }

  /* Where the admin API's death reports go (the soft-state member), when failover is on. */
  setPeerReporter(report: (peer: string, reason: string) => void): void {
    this.reportPeerDead = report;
  }

  /* Whether each connection could be taken over now (the replication knows), when failover is on. */
  setProtection(protection: (id: string) => Protection): void {
    this.protection = protection;
  }

  /* The live peers' origins, asked for the rest of a response the local origin dropped, when
   * failover is on (daemon/peer-range.ts). */
  setOriginPeers(peers: () => PeerOrigin[]): void {
    this.originPeers = peers;
  }

  /* What POST /drain starts and GET /drain shows (daemon/drain.ts). */
  setDrainer(drainer: NonNullable<AdminSource['drain']>): void {
    this.drainer = drainer;
  }

  /* Where the admin API's load-shedding calls go (TCP Migrate handoffs), when failover is on. */
  setShedder(shed: (count: number) => number): void {
    this.shedder = shed;
  }

  serves(id: string): boolean {
    return this.connections.has(id);
  }

  /* Connections served now: what the TCP Migrate race weighs its delay by. */
  get load(): number {
    return this.connections.size;
  }

  /* The bound ports (useful when configured as 0). */
  get listenPort(): number {
    return (this.server?.address() as net.AddressInfo).port;
  }

  get adminPort(): number {
    return (this.admin?.server.address() as net.AddressInfo).port;
  }

  /* No new client from now on (a drain); served and adopted connections go on. */
  stopAccepting(): void {
    if (this.server?.listening) this.server.close();
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server?.listening ? this.server.close(() => resolve()) : resolve()));
    for (const connection of this.connections.values()) connection.client.destroy();
    await closed;
    await this.stopServices();
  }

  /* Frees the admin API's and the state listener's ports (for the next process, on an upgrade). */
  async stopServices(): Promise<void> {
    await this.admin?.close();
    await this.stateStore?.close();
    this.admin = this.stateStore = undefined;
  }

  private accept(socket: Socket): void {
    if (!socket.remoteAddress) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= (this.config.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      this.refuse(socket);
      return;
    }
    this.register(socket);
  }

  /* Answered before anything is read; what the client sends meanwhile is read and dropped, so
   * that closing does not reset the 503 away. */
  private refuse(socket: Socket): void {
    const error = new WedgeError('WEDGE_ERR_TOO_MANY_CONNECTIONS', `${this.connections.size} open`);
    this.metrics.reject(error.code);
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.destroy());
    socket.setTimeout(REFUSAL_LINGER_MS, () => socket.destroy());
    socket.resume();
    socket.end(errorResponse(error));
  }

  /* A connection taken over from another server (its socket restored here); `id` names it when
   * it moved by TCP Migrate (see RelayOptions.id). */
  adopt(socket: Socket, adopted: AdoptedStream, id: string): RelayConnection {
    return this.register(socket, adopted, id);
  }

  private register(socket: Socket, adopted?: AdoptedStream, id?: string): RelayConnection {
    const connection = new RelayConnection(socket, {
      origin: this.config.origin,
      logger: this.config.logger,
      observer: this.metrics,
      ...this.config.limits,
      originRecovery: { retryMs: this.config.originRetryMs ?? DEFAULT_ORIGIN_RECOVERY.retryMs, peers: () => this.originPeers() },
      ...(this.config.splicer ? { splicer: this.config.splicer } : {}),
      ...(adopted ? { adopted } : {}),
      ...(id ? { id } : {}),
      ...(this.stateSlots ? { stateSlots: this.stateSlots } : {}),
      ...(this.config.forwarded ? { forwarded: this.config.forwarded } : {}),
    });
    this.connections.set(connection.id, connection);
    this.metrics.connectionsTotal.inc();
    this.metrics.connectionsActive.inc();
    connection.once('ended', () => {
      this.connections.delete(connection.id);
      this.metrics.connectionsActive.dec();
    });
    if (!adopted) this.emit('connection', connection);
    return connection;
  }
}

export type Protection = { protected: true } | { protected: false; reason: string };

/* One connection as GET /connections (and `wedge status`) shows it. */
export interface ConnectionView {
  id: string;
  client: { address: string | undefined; port: number | undefined };
  service: { address: string | undefined; port: number | undefined };
  state: string;
  lifecycle: string;
  openedAt: string;
  requests: number;
  bytes: { fromClient: number; toClient: number };
  protected: boolean;
  unprotectedReason?: string;
  streamMap: StreamMapJSON;
  /* The origin's latest snapshot (state contract): its position, size and age. */
  snapshot?: { exchange: number; offset: number; bytes: number; ageMs: number };
}

function describeConnection(connection: RelayConnection, protection: Protection): ConnectionView {
  const { client } = connection;
  return {
    id: connection.id,
    client: { address: client.remoteAddress, port: client.remotePort },
    service: { address: client.localAddress, port: client.localPort },
    // `state` keeps the values it had before the kernel splice was a state of its own.
    state: connection.state === 'splicing' ? 'relaying-body' : connection.state,
    lifecycle: connection.state,
    openedAt: new Date(connection.openedAt).toISOString(),
    requests: connection.requests,
    bytes: { fromClient: connection.bytesFromClient, toClient: connection.bytesToClient },
    protected: protection.protected,
    ...(protection.protected ? {} : { unprotectedReason: protection.reason }),
    streamMap: connection.streamMap.toJSON(),
    ...snapshotView(connection),
  };
}

function snapshotView(connection: RelayConnection): Pick<ConnectionView, 'snapshot'> {
  const slot = connection.stateSlot;
  if (!slot?.snapshot) return {};
  const { exchange, offset, data } = slot.snapshot;
  return { snapshot: { exchange, offset, bytes: data.length, ageMs: Date.now() - slot.storedAt! } };
}
