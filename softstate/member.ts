/*
 * SoftStateMember: one server's seat in its support group. The daemon (wedge serve) creates
 * one, feeds it its own connections and listens to what it learns about the others. In: the
 * daemon's records, load and services; datagrams from the group. Out: events ('record',
 * 'superseded', 'peer-dead', 'peer-alive', 'declared-dead-self'), the table, the metrics.
 *
 * This file assembles the parts and routes between them; each part opens with its theory:
 *   adverts.ts   the local records, triggered adverts, paced periodic rounds, withdrawals
 *   liveness.ts  peers alive or dead: heartbeats, death notices and their bars, the silent check
 *   table.ts     what was heard about other servers' connections, and the version order
 *   channel.ts   sealing and opening datagrams (Outbox / Inbox); sender.ts the sending thread
 *
 * Channel. One multicast group per support group (see groups.ts); every datagram is sealed
 * with the cluster key (crypto.ts) and fits the MTU (codec.ts). The member joins its own
 * group only; it sends adverts and heartbeats there, and death notices to the *dead peer's*
 * group, which is where that peer's supporters listen. A received datagram counts only from a
 * member of our group (else rejected 'wrong-group'), a record only from its owner (else
 * 'owner-mismatch'); any authentic one is a sign of life of its sender.
 *
 * Sending. Every outgoing datagram is sealed and sent by a worker thread (sender.ts), which also
 * sends the heartbeats: a main thread busy for a few hundred milliseconds does not go silent.
 * The main thread checks in every heartbeat interval; after heartbeatLeaseMs without a check-in
 * the heartbeats stop, so a wedged daemon is still found dead (after lease + dead-after).
 * Heartbeats and notices are never paced: they are small and time-critical.
 *
 * Ownership. For a connection this member owns, a record with a higher version (compareVersions
 * in table.ts: migration number, then a fixed owner rank) means someone took it over: the
 * local record is dropped and 'superseded' is emitted, and the daemon gives the connection up
 * silently. The taker advertises its record at once (triggered advert), and the old owner stops
 * advertising, so both can never keep the same connection: at any moment the version order
 * names one owner, and each owner steps back as soon as it hears a higher version. upsert() of
 * a version older than one already heard is refused the same way.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import { Adverts } from './adverts.js';
import { DEFAULT_MAX_FRAGMENTS, DEFAULT_MTU, Inbox, Outbox, type InboundMessage, type Rejection } from './channel.js';
import type { KeyRing } from './crypto.js';
import {
  DEFAULT_BASE_GROUP,
  DEFAULT_GROUP_PORT,
  DEFAULT_GROUPS,
  supportGroupOf,
  validateGroupConfig,
  type GroupConfig,
  type SupportGroup,
} from './groups.js';
import { Liveness, type PeerInfo } from './liveness.js';
import { isAddress, MAX_SERVICES, parseConnectionRecord, type ConnectionRecord, type DeathNotice, type Load, type ServiceClaim } from './records.js';
import { compareVersions, SoftStateTable } from './table.js';
import { SenderThread } from './sender.js';
import { MulticastTransport } from './transport.js';

export type { PeerInfo } from './liveness.js';

export const DEFAULT_ADVERT_INTERVAL_MS = 3000;
export const DEFAULT_EXPIRE_MS = 10_000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;
export const DEFAULT_DEAD_AFTER_MS = 400;
/* Longer than any stall seen under load (a few hundred ms), far shorter than a hung daemon. */
export const DEFAULT_HEARTBEAT_LEASE_MS = 1000;
const NOTICE_COPIES = 3;
const MAX_REMEMBERED_GROUPS = 4096;

export interface SoftStateMemberOptions {
  /* This server's address: its sender id, its records' owner, the input of its group hash. */
  self: string;
  /* Local address of the cluster-network interface (default: self). */
  interfaceAddress?: string;
  keyRing: KeyRing;
  groups?: number;
  baseGroup?: string;
  port?: number;
  advertIntervalMs?: number;
  expireMs?: number;
  heartbeatIntervalMs?: number;
  deadAfterMs?: number;
  /* Heartbeats continue this long after the main thread last checked in. */
  heartbeatLeaseMs?: number;
  /* UDP payload budget per datagram. */
  mtu?: number;
  maxFragments?: number;
  /* Receive our own multicast (single-host setups); own datagrams are dropped by sender id. */
  loopback?: boolean;
  /* Fixed epoch (tests); default: boot time. */
  epoch?: bigint;
  logger?: Pick<Logger, 'debug' | 'info' | 'warn'>;
}

export interface SoftStateMetrics {
  datagramsSent: number;
  bytesSent: number;
  sendQueueDrops: number;
  sendErrors: number;
  datagramsReceived: number;
  bytesReceived: number;
  datagramsAccepted: number;
  advertDatagramsSent: number;
  fragmentsSent: number;
  recordsAdvertised: number;
  triggeredAdverts: number;
  periodicAdverts: number;
  withdrawalsSent: number;
  heartbeatsSent: number;
  noticesSent: number;
  recordsReceived: number;
  heartbeatsReceived: number;
  noticesReceived: number;
  recordsTooLarge: number;
  recordsSuperseded: number;
  reassemblyEvicted: number;
  reassemblyTimedOut: number;
  rejected: Partial<Record<Rejection, number>>;
  localRecords: number;
  tableRecords: number;
  peersAlive: number;
  peersDead: number;
}

export interface SoftStateMemberEvents {
  'peer-dead': [peer: string, reason: string];
  'peer-alive': [peer: string];
  record: [record: ConnectionRecord];
  superseded: [record: ConnectionRecord];
  'declared-dead-self': [declarer: string, reason: string];
  error: [error: Error];
}

export class SoftStateMember extends EventEmitter<SoftStateMemberEvents> {
  readonly self: string;
  readonly group: SupportGroup;
  readonly groupConfig: GroupConfig;
  readonly advertIntervalMs: number;
  readonly expireMs: number;
  readonly heartbeatIntervalMs: number;
  readonly deadAfterMs: number;
  readonly heartbeatLeaseMs: number;
  private keyRing: KeyRing;
  private readonly mtu: number;
  private readonly interfaceAddress: string;
  private readonly loopback: boolean;
  private readonly outbox: Outbox;
  private readonly inbox: Inbox;
  private readonly table: SoftStateTable;
  private readonly adverts: Adverts;
  private readonly liveness: Liveness;
  private readonly groupOfAddress = new Map<string, boolean>();
  private readonly logger: SoftStateMemberOptions['logger'];
  /* Receives; the sender thread sends. */
  private transport: MulticastTransport | undefined;
  private sender: SenderThread | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly noticeTimers = new Set<NodeJS.Timeout>();
  private load: { bytesPerSec: number; cpu?: number } = { bytesPerSec: 0 };
  private services: ServiceClaim[] = [];
  private readonly counters = {
    noticesSent: 0,
    recordsReceived: 0,
    heartbeatsReceived: 0,
    noticesReceived: 0,
    recordsSuperseded: 0,
  };

  constructor(options: SoftStateMemberOptions) {
    super();
    if (!isAddress(options.self)) throw new WedgeError('WEDGE_ERR_CONFIG', `invalid soft-state self address ${JSON.stringify(options.self)}`);
    this.self = options.self;
    this.interfaceAddress = options.interfaceAddress ?? options.self;
    this.groupConfig = validateGroupConfig({
      groups: options.groups ?? DEFAULT_GROUPS,
      baseGroup: options.baseGroup ?? DEFAULT_BASE_GROUP,
      port: options.port ?? DEFAULT_GROUP_PORT,
    });
    this.group = supportGroupOf(this.self, this.groupConfig);
    this.advertIntervalMs = options.advertIntervalMs ?? DEFAULT_ADVERT_INTERVAL_MS;
    this.expireMs = options.expireMs ?? DEFAULT_EXPIRE_MS;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.deadAfterMs = options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
    this.heartbeatLeaseMs = options.heartbeatLeaseMs ?? DEFAULT_HEARTBEAT_LEASE_MS;
    if (this.heartbeatLeaseMs < this.heartbeatIntervalMs) {
      throw new WedgeError('WEDGE_ERR_CONFIG', `heartbeat lease (${this.heartbeatLeaseMs} ms) must be at least the heartbeat interval (${this.heartbeatIntervalMs} ms)`);
    }
    if (this.deadAfterMs <= this.heartbeatIntervalMs) {
      throw new WedgeError('WEDGE_ERR_CONFIG', `dead-after (${this.deadAfterMs} ms) must exceed the heartbeat interval (${this.heartbeatIntervalMs} ms)`);
    }
    if (this.expireMs <= this.advertIntervalMs) {
      throw new WedgeError('WEDGE_ERR_CONFIG', `soft-state expiry (${this.expireMs} ms) must exceed the advert interval (${this.advertIntervalMs} ms)`);
    }
    this.loopback = options.loopback ?? false;
    const mtu = options.mtu ?? DEFAULT_MTU;
    this.mtu = mtu;
    this.keyRing = options.keyRing;
    this.outbox = new Outbox({
      ring: options.keyRing,
      self: this.self,
      mtu,
      maxFragments: options.maxFragments ?? DEFAULT_MAX_FRAGMENTS,
      ...(options.epoch !== undefined ? { epoch: options.epoch } : {}),
    });
    this.inbox = new Inbox({ ring: options.keyRing, self: this.self, maxDatagram: mtu });
    this.table = new SoftStateTable({ ttlMs: this.expireMs });
    this.logger = options.logger;
    this.adverts = new Adverts(this.outbox, this.advertIntervalMs);
    this.liveness = new Liveness({
      self: this.self,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      deadAfterMs: this.deadAfterMs,
      expireMs: this.expireMs,
      logger: this.logger,
      events: {
        peerDead: (peer, reason) => this.emit('peer-dead', peer, reason),
        peerAlive: (peer) => this.emit('peer-alive', peer),
        declaredDeadSelf: (declarer, reason) => {
          this.checkIn(true);
          this.emit('declared-dead-self', declarer, reason);
        },
      },
    });
  }

  get epoch(): string {
    return this.outbox.epochHex;
  }

  /* Largest encoded record upsert() accepts. */
  get maxRecordBytes(): number {
    return this.outbox.maxItemBytes;
  }

  async start(): Promise<void> {
    if (this.transport) return;
    const transport = new MulticastTransport({
      group: this.group.address,
      port: this.group.port,
      interfaceAddress: this.interfaceAddress,
      loopback: this.loopback,
    });
    const onError = (err: Error) => {
      // An unheard 'error' would throw: log it instead when the daemon does not listen.
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else this.logger?.warn({ err }, 'soft-state socket error');
    };
    await transport.start();
    try {
      this.sender = await SenderThread.start(
        {
          ring: this.keyRing,
          self: this.self,
          epoch: this.outbox.epoch.toString(),
          mtu: this.mtu,
          transport: { group: this.group.address, port: this.group.port, interfaceAddress: this.interfaceAddress, loopback: this.loopback },
          heartbeatIntervalMs: this.heartbeatIntervalMs,
          leaseMs: this.heartbeatLeaseMs,
          beat: this.beatContent(),
        },
        onError,
      );
    } catch (err) {
      await transport.stop();
      throw err;
    }
    const sender = this.sender;
    transport.on('message', (datagram) => this.receive(datagram));
    transport.on('error', onError);
    this.transport = transport;
    this.liveness.start();
    this.timers.push(setInterval(() => this.checkIn(), this.heartbeatIntervalMs));
    this.timers.push(setInterval(() => this.liveness.check(), this.liveness.checkIntervalMs));
    this.timers.push(setInterval(() => this.housekeeping(), 1000));
    this.adverts.start((frames) => sender.send(frames));
    this.logger?.info({ group: this.group, epoch: this.epoch }, 'soft-state member started');
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    for (const t of this.noticeTimers) clearTimeout(t);
    this.noticeTimers.clear();
    this.adverts.stop();
    const transport = this.transport;
    const sender = this.sender;
    this.transport = undefined;
    this.sender = undefined;
    await Promise.all([transport?.stop(), sender?.stop()]);
  }

  /* Key rotation (e.g. on SIGHUP): seal with the ring's newest key, open with any of its keys. */
  setKeyRing(ring: KeyRing): void {
    this.keyRing = ring;
    this.outbox.setKeyRing(ring);
    this.inbox.setKeyRing(ring);
    this.sender?.setKeyRing(ring);
  }

  /* Service addresses carried by the next heartbeats. */
  setServices(claims: readonly ServiceClaim[]): void {
    this.services = claims.slice(0, MAX_SERVICES);
  }

  /* Load figures carried by the next heartbeats (connections are counted here). */
  setLoad(load: { bytesPerSec: number; cpu?: number }): void {
    this.load = load;
  }

  /*
   * Adds or changes a connection this server owns and advertises it in a triggered advert.
   * Returns false (and emits 'superseded' with the newer record) if a higher version of the
   * connection is already known: the daemon must not serve it. Throws WedgeError
   * WEDGE_ERR_STATE_RECORD_TOO_LARGE if the record cannot be sent even fragmented.
   */
  upsert(input: ConnectionRecord): boolean {
    const record = parseConnectionRecord(input);
    if (!record) throw new TypeError(`invalid connection record ${JSON.stringify(input.id)}`);
    if (record.owner !== this.self) throw new TypeError(`record ${record.id} is owned by ${record.owner}, not by ${this.self}`);
    const heard = this.table.get(record.id);
    if (heard && compareVersions(heard, record) > 0) {
      this.supersede(heard);
      return false;
    }
    this.adverts.set(record);
    this.table.delete(record.id);
    return true;
  }

  /* Sends a local record again as it was last upserted (its encoding is kept): a repeat for
   * a datagram that may have been lost. */
  readvertise(id: string): void {
    this.adverts.readvertise(id);
  }

  /* Forgets a local connection (closed) and tells the group. */
  remove(id: string): boolean {
    const record = this.adverts.remove(id);
    if (!record) return false;
    // Its previous owner's adverts may still be queued in our socket: they must not revive it.
    this.table.markClosed(id, record.migration);
    return true;
  }

  /* Operator / monitor report: broadcast a death notice to the peer's support group. */
  declareDead(peer: string, reason: string): void {
    if (!isAddress(peer)) throw new TypeError(`invalid peer address ${JSON.stringify(peer)}`);
    const notice = this.liveness.noticeAbout(peer, reason);
    const target = supportGroupOf(peer, this.groupConfig);
    for (let copy = 0; copy < NOTICE_COPIES; copy++) {
      const send = (): void => {
        if (!this.sender) return;
        this.sender.send([this.outbox.noticeFrame(notice)], { address: target.address, port: target.port });
        this.counters.noticesSent++;
      };
      if (copy === 0) {
        send();
        continue;
      }
      const timer = setTimeout(() => {
        this.noticeTimers.delete(timer);
        send();
      }, copy * Math.max(20, this.heartbeatIntervalMs / 2));
      this.noticeTimers.add(timer);
    }
    this.handleNotice(notice, true);
  }

  peers(): PeerInfo[] {
    return this.liveness.peers();
  }

  /* Every known connection: this member's own, then those heard from the group. */
  records(): ConnectionRecord[] {
    return this.adverts.records().concat(this.table.records().filter((r) => !this.adverts.has(r.id)));
  }

  /* The newest version of a connection heard from the group (this member's own ones excluded). */
  heard(id: string): ConnectionRecord | undefined {
    return this.table.get(id);
  }

  recordsOwnedBy(peer: string): ConnectionRecord[] {
    if (peer === this.self) return this.adverts.records();
    return this.table.ownedBy(peer);
  }

  get metrics(): SoftStateMetrics {
    const sent = this.sender?.stats;
    const received = this.transport?.stats;
    const advertised = this.adverts.counters;
    const peers = this.liveness.counts();
    return {
      datagramsSent: sent?.sent ?? 0,
      bytesSent: sent?.sentBytes ?? 0,
      sendQueueDrops: sent?.dropped ?? 0,
      sendErrors: sent?.sendErrors ?? 0,
      datagramsReceived: received?.received ?? 0,
      bytesReceived: received?.receivedBytes ?? 0,
      datagramsAccepted: this.inbox.accepted,
      heartbeatsSent: this.sender?.heartbeatsSent ?? 0,
      advertDatagramsSent: advertised.advertDatagramsSent,
      fragmentsSent: advertised.fragmentsSent,
      recordsAdvertised: advertised.recordsAdvertised,
      triggeredAdverts: advertised.triggeredAdverts,
      periodicAdverts: advertised.periodicAdverts,
      withdrawalsSent: advertised.withdrawalsSent,
      recordsTooLarge: advertised.recordsTooLarge,
      ...this.counters,
      reassemblyEvicted: this.inbox.reassembler.evicted,
      reassemblyTimedOut: this.inbox.reassembler.timedOut,
      rejected: { ...this.inbox.rejected },
      localRecords: this.adverts.size,
      tableRecords: this.table.size,
      peersAlive: peers.alive,
      peersDead: peers.dead,
    };
  }

  /* Processes one received datagram (the transport calls this; public for in-process use). */
  receive(datagram: Buffer): void {
    const message = this.inbox.receive(datagram);
    if (!message) return;
    this.liveness.heard(message.sender);
    switch (message.kind) {
      case 'heartbeat':
        if (!this.inOurGroup(message.sender)) return this.inbox.reject('wrong-group');
        this.counters.heartbeatsReceived++;
        return this.liveness.heartbeat(message);
      case 'death':
        this.counters.noticesReceived++;
        return this.handleNotice(message.notice);
      case 'advert':
        return this.handleAdvert(message);
    }
  }

  /* Asked for every datagram received, and the group hash is a SHA-256: remembered per address
   * (authenticated senders only, so the cache stays as small as the cluster). */
  private inOurGroup(address: string): boolean {
    let ours = this.groupOfAddress.get(address);
    if (ours === undefined) {
      if (this.groupOfAddress.size >= MAX_REMEMBERED_GROUPS) this.groupOfAddress.clear();
      ours = supportGroupOf(address, this.groupConfig).bucket === this.group.bucket;
      this.groupOfAddress.set(address, ours);
    }
    return ours;
  }

  private handleNotice(notice: DeathNotice, local = false): void {
    if (notice.peer !== this.self && !this.inOurGroup(notice.peer)) {
      // We watch only our own group; a local declaration about another group just goes out.
      if (!local) this.inbox.reject('wrong-group');
      return;
    }
    this.liveness.notice(notice);
  }

  private handleAdvert(message: Extract<InboundMessage, { kind: 'advert' }>): void {
    if (!this.inOurGroup(message.sender)) {
      this.inbox.reject('wrong-group');
      return;
    }
    for (const item of message.items) {
      if (item.kind === 'withdrawal') {
        if (item.withdrawal.owner !== message.sender) this.inbox.reject('owner-mismatch');
        else this.table.withdraw(item.withdrawal);
        continue;
      }
      const record = item.record;
      // A server speaks only for the connections it owns.
      if (record.owner !== message.sender) {
        this.inbox.reject('owner-mismatch');
        continue;
      }
      this.counters.recordsReceived++;
      const mine = this.adverts.get(record.id);
      if (mine) {
        if (compareVersions(record, mine) > 0) this.supersede(record, message);
        continue;
      }
      const outcome = this.table.offer(record, { sender: message.sender, seq: message.seq });
      if (outcome === 'new' || outcome === 'updated') this.emit('record', record);
    }
  }

  /* A newer version of a connection we own (or were about to own) exists: step back. */
  private supersede(record: ConnectionRecord, from?: { sender: string; seq: number }): void {
    this.adverts.drop(record.id);
    if (from) this.table.offer(record, from);
    this.counters.recordsSuperseded++;
    this.logger?.info({ id: record.id, owner: record.owner, migration: record.migration }, 'connection superseded');
    this.emit('superseded', record);
  }

  private beatContent(): { load: Load; services: ServiceClaim[] } {
    return { load: { connections: this.adverts.size, ...this.load }, services: this.services };
  }

  /* The main thread is alive: heartbeats go on, with the current load and services. */
  private checkIn(now = false): void {
    const { load, services } = this.beatContent();
    this.sender?.beat(load, services, now);
  }

  private housekeeping(): void {
    this.table.purgeStale();
    this.inbox.reassembler.expire();
    this.liveness.forget();
  }
}
