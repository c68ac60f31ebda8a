/*
 * SoftStateMember: one server's seat in its support group. The daemon (wedge serve) creates
 * one, feeds it its own connections and listens to what it learns about the others.
 *
 * Channel. One multicast group per support group (see groups.ts); every datagram is sealed
 * with the cluster key (crypto.ts) and fits the MTU (codec.ts). The member joins its own
 * group only; it sends adverts and heartbeats there, and death notices to the *dead peer's*
 * group, which is where that peer's supporters listen.
 *
 * Adverts. upsert() stores the record and schedules a triggered advert on setImmediate, so
 * everything the daemon changed in the same event-loop turn leaves in as few datagrams as the
 * MTU allows. Every advertIntervalMs (±10% jitter, so members do not synchronise) all local
 * records are sent again, paced (below): soft state, receivers expire entries after expireMs.
 * remove() sends a withdrawal so receivers forget a closed connection at once. Heartbeats,
 * notices and triggered adverts are never paced: they are small and time-critical.
 *
 * Sending. Every outgoing datagram is sealed and sent by a worker thread (sender.ts), which also
 * sends the heartbeats: a main thread busy for a few hundred milliseconds does not go silent.
 * The main thread checks in every heartbeat interval; after heartbeatLeaseMs without a check-in
 * the heartbeats stop, so a wedged daemon is still found dead (after lease + dead-after).
 *
 * Liveness. A heartbeat (with the sender's load) every heartbeatIntervalMs; a peer not heard
 * for deadAfterMs is dead ('peer-dead' with reason 'silent'). A heartbeat with a higher epoch
 * means the peer restarted and lost its connections: 'peer-dead' ('restarted'), then
 * 'peer-alive'. Defaults: 100 ms / 400 ms.
 *  - Detection bound: the last heartbeat precedes the crash, the check runs every 50 ms, so
 *    death is reported at most 400 + 50 = 450 ms after it (under the 0.5 s target).
 *  - Cost: a heartbeat datagram is ~130 bytes on the wire (~100 B UDP payload + IP/UDP
 *    headers): 10/s = ~1.3 kB/s sent per member, and (n-1) x 10 datagrams/s received in a
 *    group of n, each one GCM open (a few us). Small beside the adverts (~175 kB/s for 1,000
 *    connections every 3 s, see test/bench/softstate.bench.ts).
 *  - False positives: a peer is declared dead only after four heartbeats in a row are lost.
 *    With independent loss p that is p^4 per 100 ms: 1e-8 at 1% loss (one false alarm per
 *    ~30 years per peer), but 0.8% at 30% loss (one per ~12 s). Event-loop stalls
 *    do not (the sender thread heartbeats through them), unless longer than the lease. Either way the error is corrected by the
 *    next heartbeat, as below, and migration numbers keep takeovers safe.
 *
 * Death reports. declareDead(peer) multicasts a notice (three copies, lost datagrams happen)
 * carrying the declarer's last authentic (epoch, seq) from the peer. Receivers mark the peer
 * dead ('peer-dead') unless it already is, and remember max(own, declarer's) (epoch, seq) as
 * the bar. A peer that is in fact alive keeps heartbeating: a heartbeat *above* the bar was
 * sent after the declarer last heard it, so it is alive again ('peer-alive'). The reported
 * peer hears the notice about itself, emits 'declared-dead-self' (the daemon may step back
 * or just carry on) and answers at once with a heartbeat, which refutes the report.
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
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import { DEFAULT_MAX_FRAGMENTS, DEFAULT_MTU, Inbox, Outbox, type InboundMessage, type Rejection } from './channel.js';
import { epochHex, type KeyRing } from './crypto.js';
import {
  DEFAULT_BASE_GROUP,
  DEFAULT_GROUP_PORT,
  DEFAULT_GROUPS,
  supportGroupOf,
  validateGroupConfig,
  type GroupConfig,
  type SupportGroup,
} from './groups.js';
import { isAddress, MAX_REASON_LENGTH, MAX_SERVICES, parseConnectionRecord, type ConnectionRecord, type DeathNotice, type Load, type ServiceClaim, type Withdrawal } from './records.js';
import { compareVersions, SoftStateTable } from './table.js';
import { SenderThread } from './sender.js';
import { MulticastTransport } from './transport.js';

export const DEFAULT_ADVERT_INTERVAL_MS = 3000;
export const DEFAULT_EXPIRE_MS = 10_000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;
export const DEFAULT_DEAD_AFTER_MS = 400;
/* Longer than any stall seen under load (a few hundred ms), far shorter than a hung daemon. */
export const DEFAULT_HEARTBEAT_LEASE_MS = 1000;
const NOTICE_COPIES = 3;
const MAX_REMEMBERED_GROUPS = 4096;
/* Periodic rounds leave in bursts of PACE_BURST records every PACE_INTERVAL_MS (1,000
 * connections = ~500 datagrams = ~80 ms), so a receiver's socket buffer (208 kB by default on
 * Linux) does not overflow while its event loop is busy. Each burst carries its records as they
 * are when it leaves, so a round never overwrites a newer triggered advert with an older copy. */
const PACE_BURST = 32;
const PACE_INTERVAL_MS = 5;

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

export interface PeerInfo {
  address: string;
  alive: boolean;
  /* Wall-clock ms of the last heartbeat, if any was heard. */
  lastHeardAt: number | undefined;
  load: Load | undefined;
  /* Service addresses the peer said it answers for in its last heartbeat. */
  services: ServiceClaim[];
  epoch: string | undefined;
  /* Why and since when (wall-clock ms) the peer is dead. */
  deadReason?: string;
  deadSince?: number;
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

interface PeerState {
  address: string;
  alive: boolean;
  epoch: bigint | undefined;
  seq: number;
  lastHeardMono: number;
  lastHeardAt: number | undefined;
  load: Load | undefined;
  services: ServiceClaim[];
  deadReason?: string;
  deadSince?: number;
  /* After a death notice: a heartbeat must be above this (epoch, seq) to prove life. */
  bar?: { epoch: bigint; seq: number };
}

interface LocalEntry {
  record: ConnectionRecord;
  encoded: Buffer;
}

function above(epoch: bigint, seq: number, bar: { epoch: bigint; seq: number }): boolean {
  return epoch > bar.epoch || (epoch === bar.epoch && seq > bar.seq);
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
  private readonly local = new Map<string, LocalEntry>();
  private readonly groupOfAddress = new Map<string, boolean>();
  private readonly dirty = new Set<string>();
  private readonly withdrawals: Withdrawal[] = [];
  private readonly peerStates = new Map<string, PeerState>();
  private readonly logger: SoftStateMemberOptions['logger'];
  /* Receives; the sender thread sends. */
  private transport: MulticastTransport | undefined;
  private sender: SenderThread | undefined;
  private flushScheduled: NodeJS.Immediate | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly noticeTimers = new Set<NodeJS.Timeout>();
  private advertTimer: NodeJS.Timeout | undefined;
  /* Ids of the records still to go out in the current periodic round. */
  private paced: string[] = [];
  private pacer: NodeJS.Timeout | undefined;
  private load: { bytesPerSec: number; cpu?: number } = { bytesPerSec: 0 };
  private services: ServiceClaim[] = [];
  private peerCheckIntervalMs = 50;
  private lastPeerCheck = 0;
  private readonly counters = {
    advertDatagramsSent: 0,
    fragmentsSent: 0,
    recordsAdvertised: 0,
    triggeredAdverts: 0,
    periodicAdverts: 0,
    withdrawalsSent: 0,
    noticesSent: 0,
    recordsReceived: 0,
    heartbeatsReceived: 0,
    noticesReceived: 0,
    recordsTooLarge: 0,
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
    transport.on('message', (datagram) => this.receive(datagram));
    transport.on('error', onError);
    this.transport = transport;
    this.peerCheckIntervalMs = Math.max(10, Math.min(50, Math.floor(this.deadAfterMs / 8)));
    this.lastPeerCheck = performance.now();
    this.timers.push(setInterval(() => this.checkIn(), this.heartbeatIntervalMs));
    this.timers.push(setInterval(() => this.checkPeers(), this.peerCheckIntervalMs));
    this.timers.push(setInterval(() => this.housekeeping(), 1000));
    this.schedulePeriodicAdvert();
    if (this.dirty.size > 0) this.scheduleFlush();
    this.logger?.info({ group: this.group, epoch: this.epoch }, 'soft-state member started');
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    for (const t of this.noticeTimers) clearTimeout(t);
    this.noticeTimers.clear();
    if (this.advertTimer) clearTimeout(this.advertTimer);
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    if (this.pacer) clearTimeout(this.pacer);
    this.paced = [];
    this.pacer = undefined;
    this.advertTimer = undefined;
    this.flushScheduled = undefined;
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
    const encoded = this.outbox.encodeItem({ kind: 'record', record });
    if (encoded.length > this.outbox.maxItemBytes) {
      this.counters.recordsTooLarge++;
      throw new WedgeError(
        'WEDGE_ERR_STATE_RECORD_TOO_LARGE',
        `${record.id}: ${encoded.length} bytes, at most ${this.outbox.maxItemBytes} fit in ${this.outbox.maxFragments} datagrams`,
      );
    }
    this.table.delete(record.id);
    this.local.set(record.id, { record, encoded });
    this.dirty.add(record.id);
    this.scheduleFlush();
    return true;
  }

  /* Sends a local record again as it was last upserted (its encoding is kept): a repeat for
   * a datagram that may have been lost. */
  readvertise(id: string): void {
    if (!this.local.has(id)) return;
    this.dirty.add(id);
    this.scheduleFlush();
  }

  /* Forgets a local connection (closed) and tells the group. */
  remove(id: string): boolean {
    const entry = this.local.get(id);
    if (!entry) return false;
    this.local.delete(id);
    this.dirty.delete(id);
    // Its previous owner's adverts may still be queued in our socket: they must not revive it.
    this.table.markClosed(id, entry.record.migration);
    this.withdrawals.push({ id, owner: this.self, migration: entry.record.migration });
    this.scheduleFlush();
    return true;
  }

  /* Operator / monitor report: broadcast a death notice to the peer's support group. */
  declareDead(peer: string, reason: string): void {
    if (!isAddress(peer)) throw new TypeError(`invalid peer address ${JSON.stringify(peer)}`);
    const known = this.peerStates.get(peer);
    const notice: DeathNotice = { declarer: this.self, peer, reason: reason.slice(0, MAX_REASON_LENGTH), at: Date.now() };
    if (known?.epoch !== undefined) {
      notice.peerEpoch = epochHex(known.epoch);
      notice.peerSeq = known.seq;
    }
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
    return [...this.peerStates.values()].map((p) => ({
      address: p.address,
      alive: p.alive,
      lastHeardAt: p.lastHeardAt,
      load: p.load,
      services: p.services,
      epoch: p.epoch === undefined ? undefined : epochHex(p.epoch),
      ...(p.deadReason !== undefined ? { deadReason: p.deadReason, deadSince: p.deadSince } : {}),
    }));
  }

  /* Every known connection: this member's own, then those heard from the group. */
  records(): ConnectionRecord[] {
    const own = [...this.local.values()].map((e) => e.record);
    return own.concat(this.table.records().filter((r) => !this.local.has(r.id)));
  }

  /* The newest version of a connection heard from the group (this member's own ones excluded). */
  heard(id: string): ConnectionRecord | undefined {
    return this.table.get(id);
  }

  recordsOwnedBy(peer: string): ConnectionRecord[] {
    if (peer === this.self) return [...this.local.values()].map((e) => e.record);
    return this.table.ownedBy(peer);
  }

  get metrics(): SoftStateMetrics {
    const sent = this.sender?.stats;
    const received = this.transport?.stats;
    const peers = [...this.peerStates.values()];
    return {
      datagramsSent: sent?.sent ?? 0,
      bytesSent: sent?.sentBytes ?? 0,
      sendQueueDrops: sent?.dropped ?? 0,
      sendErrors: sent?.sendErrors ?? 0,
      datagramsReceived: received?.received ?? 0,
      bytesReceived: received?.receivedBytes ?? 0,
      datagramsAccepted: this.inbox.accepted,
      heartbeatsSent: this.sender?.heartbeatsSent ?? 0,
      ...this.counters,
      reassemblyEvicted: this.inbox.reassembler.evicted,
      reassemblyTimedOut: this.inbox.reassembler.timedOut,
      rejected: { ...this.inbox.rejected },
      localRecords: this.local.size,
      tableRecords: this.table.size,
      peersAlive: peers.filter((p) => p.alive).length,
      peersDead: peers.filter((p) => !p.alive).length,
    };
  }

  /* Processes one received datagram (the transport calls this; public for in-process use). */
  receive(datagram: Buffer): void {
    const message = this.inbox.receive(datagram);
    if (!message) return;
    // Any authentic datagram shows its sender alive: when our loop falls behind, the adverts
    // queued in front of a heartbeat must not let that peer look silent.
    const sender = this.peerStates.get(message.sender);
    if (sender?.alive) sender.lastHeardMono = performance.now();
    switch (message.kind) {
      case 'heartbeat':
        return this.handleHeartbeat(message);
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

  private handleHeartbeat(message: Extract<InboundMessage, { kind: 'heartbeat' }>): void {
    if (!this.inOurGroup(message.sender)) {
      this.inbox.reject('wrong-group');
      return;
    }
    this.counters.heartbeatsReceived++;
    const now = performance.now();
    let peer = this.peerStates.get(message.sender);
    if (!peer) {
      peer = { address: message.sender, alive: false, epoch: undefined, seq: 0, lastHeardMono: now, lastHeardAt: undefined, load: undefined, services: [] };
      this.peerStates.set(message.sender, peer);
    }
    // A higher epoch is a new incarnation (checked authentic and newer by the replay guard):
    // the old one died with its connections, even if the restart beat deadAfterMs.
    if (peer.alive && peer.epoch !== undefined && message.epoch > peer.epoch) this.markDead(peer, 'restarted');
    peer.epoch = message.epoch;
    peer.seq = message.seq;
    peer.lastHeardMono = now;
    peer.lastHeardAt = Date.now();
    peer.load = message.heartbeat.load;
    peer.services = message.heartbeat.services ?? [];
    if (peer.alive) return;
    if (peer.bar && !above(message.epoch, message.seq, peer.bar)) return;
    peer.alive = true;
    delete peer.bar;
    delete peer.deadReason;
    delete peer.deadSince;
    this.logger?.info({ peer: peer.address }, 'peer alive');
    this.emit('peer-alive', peer.address);
  }

  private handleNotice(notice: DeathNotice, local = false): void {
    if (notice.peer === this.self) {
      this.logger?.warn({ declarer: notice.declarer, reason: notice.reason }, 'declared dead by a peer; refuting with a heartbeat');
      this.checkIn(true);
      this.emit('declared-dead-self', notice.declarer, notice.reason);
      return;
    }
    if (!this.inOurGroup(notice.peer)) {
      // We watch only our own group; a local declaration about another group just goes out.
      if (!local) this.inbox.reject('wrong-group');
      return;
    }
    let peer = this.peerStates.get(notice.peer);
    if (!peer) {
      peer = { address: notice.peer, alive: true, epoch: undefined, seq: 0, lastHeardMono: performance.now(), lastHeardAt: undefined, load: undefined, services: [] };
      this.peerStates.set(notice.peer, peer);
    }
    const barCandidates: { epoch: bigint; seq: number }[] = [];
    if (peer.epoch !== undefined) barCandidates.push({ epoch: peer.epoch, seq: peer.seq });
    if (notice.peerEpoch !== undefined && notice.peerSeq !== undefined) {
      barCandidates.push({ epoch: BigInt('0x' + notice.peerEpoch), seq: notice.peerSeq });
    }
    if (peer.bar) barCandidates.push(peer.bar);
    peer.bar = barCandidates.reduce((a, b) => (above(b.epoch, b.seq, a) ? b : a), { epoch: 0n, seq: 0 });
    if (!peer.alive) return;
    this.markDead(peer, `declared dead by ${notice.declarer}${notice.reason ? `: ${notice.reason}` : ''}`);
  }

  private markDead(peer: PeerState, reason: string): void {
    peer.alive = false;
    peer.deadReason = reason;
    peer.deadSince = Date.now();
    this.logger?.warn({ peer: peer.address, reason }, 'peer dead');
    this.emit('peer-dead', peer.address, reason);
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
      const mine = this.local.get(record.id);
      if (mine) {
        if (compareVersions(record, mine.record) > 0) this.supersede(record, message);
        continue;
      }
      const outcome = this.table.offer(record, { sender: message.sender, seq: message.seq });
      if (outcome === 'new' || outcome === 'updated') this.emit('record', record);
    }
  }

  /* A newer version of a connection we own (or were about to own) exists: step back. */
  private supersede(record: ConnectionRecord, from?: { sender: string; seq: number }): void {
    this.local.delete(record.id);
    this.dirty.delete(record.id);
    if (from) this.table.offer(record, from);
    this.counters.recordsSuperseded++;
    this.logger?.info({ id: record.id, owner: record.owner, migration: record.migration }, 'connection superseded');
    this.emit('superseded', record);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.sender) return;
    this.flushScheduled = setImmediate(() => {
      this.flushScheduled = undefined;
      this.flushTriggered();
    });
  }

  private flushTriggered(): void {
    const items: Buffer[] = [];
    for (const id of this.dirty) {
      const entry = this.local.get(id);
      if (entry) items.push(entry.encoded);
    }
    const withdrawals = this.withdrawals.splice(0);
    for (const w of withdrawals) items.push(this.outbox.encodeItem({ kind: 'withdrawal', withdrawal: w }));
    this.counters.withdrawalsSent += withdrawals.length;
    this.dirty.clear();
    if (items.length === 0) return;
    this.counters.triggeredAdverts++;
    this.sendAdverts(items, items.length - withdrawals.length);
  }

  private schedulePeriodicAdvert(): void {
    const delay = this.advertIntervalMs * (0.9 + 0.2 * Math.random());
    this.advertTimer = setTimeout(() => {
      if (!this.sender) return;
      if (this.local.size > 0) {
        this.counters.periodicAdverts++;
        // A new round carries every current record: what is left of the previous one is stale.
        this.paced = [...this.local.keys()];
        if (!this.pacer) this.pace();
      }
      this.schedulePeriodicAdvert();
    }, delay);
  }

  private sendAdverts(items: Buffer[], records: number): void {
    const sender = this.sender;
    if (!sender) return;
    const { frames, refused, fragments } = this.outbox.advertFrames(items);
    this.counters.recordsTooLarge += refused.length;
    sender.send(frames);
    this.counters.advertDatagramsSent += frames.length;
    this.counters.fragmentsSent += fragments;
    this.counters.recordsAdvertised += records - refused.length;
  }

  /* The next burst of the round, each record as it is now (a record changed since the round
   * began goes out in its current version; one removed meanwhile is skipped). */
  private pace(): void {
    this.pacer = undefined;
    const burst: Buffer[] = [];
    for (const id of this.paced.splice(0, PACE_BURST)) {
      const entry = this.local.get(id);
      if (entry) burst.push(entry.encoded);
    }
    this.sendAdverts(burst, burst.length);
    if (this.paced.length > 0) this.pacer = setTimeout(() => this.pace(), PACE_INTERVAL_MS);
  }

  private beatContent(): { load: Load; services: ServiceClaim[] } {
    return { load: { connections: this.local.size, ...this.load }, services: this.services };
  }

  /* The main thread is alive: heartbeats go on, with the current load and services. */
  private checkIn(now = false): void {
    const { load, services } = this.beatContent();
    this.sender?.beat(load, services, now);
  }

  /*
   * A peer is dead when nothing was heard from it for deadAfterMs. If this check itself ran
   * late (our event loop was stalled), heartbeats that did arrive may still sit unread in the
   * socket: the silence is ours, not the peer's, so its clocks restart from now instead.
   */
  private checkPeers(): void {
    const now = performance.now();
    const stalled = now - this.lastPeerCheck > this.peerCheckIntervalMs * 2;
    this.lastPeerCheck = now;
    for (const peer of this.peerStates.values()) {
      if (stalled) peer.lastHeardMono = Math.max(peer.lastHeardMono, now - this.heartbeatIntervalMs);
      else if (peer.alive && now - peer.lastHeardMono > this.deadAfterMs) this.markDead(peer, 'silent');
    }
  }

  private housekeeping(): void {
    this.table.purgeStale();
    this.inbox.reassembler.expire();
    // Forget peers long dead and gone: their records have expired too.
    const forgetAfter = Math.max(6 * this.expireMs, 60_000);
    const now = performance.now();
    for (const [address, peer] of this.peerStates) {
      if (!peer.alive && now - peer.lastHeardMono > forgetAfter) this.peerStates.delete(address);
    }
  }
}
