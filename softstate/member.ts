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
 *   link.ts      the socket and the sending thread (heartbeats through main-thread stalls)
 *   channel.ts   sealing and opening datagrams (Outbox / Inbox)
 *   options.ts   the options, their defaults and the checks between them
 *
 * Channel. One multicast group per support group (see groups.ts); every datagram is sealed
 * with the cluster key (crypto.ts) and fits the MTU (codec.ts). The member joins its own
 * group only; it sends adverts and heartbeats there, and death notices to the *dead peer's*
 * group, which is where that peer's supporters listen. A received datagram counts only from a
 * member of our group (else rejected 'wrong-group'), a record only from its owner (else
 * 'owner-mismatch'); any authentic one is a sign of life of its sender.
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
import { Adverts, type AdvertCounters } from './adverts.js';
import { Inbox, Outbox, type InboundMessage, type Rejection } from './channel.js';
import type { KeyRing } from './crypto.js';
import { GroupMembership, supportGroupOf, type GroupConfig, type SupportGroup } from './groups.js';
import { Link } from './link.js';
import { Liveness, type PeerInfo } from './liveness.js';
import { memberSettings, type MemberSettings, type SoftStateMemberOptions } from './options.js';
import { isAddress, parseConnectionRecord, type ConnectionRecord, type DeathNotice, type ServiceClaim } from './records.js';
import { compareVersions, SoftStateTable } from './table.js';

export type { PeerInfo } from './liveness.js';

export {
  DEFAULT_ADVERT_INTERVAL_MS,
  DEFAULT_DEAD_AFTER_MS,
  DEFAULT_EXPIRE_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_LEASE_MS,
  type SoftStateMemberOptions,
} from './options.js';

/* The advert counters (adverts.ts) and the rest. */
export interface SoftStateMetrics extends AdvertCounters {
  datagramsSent: number;
  bytesSent: number;
  sendQueueDrops: number;
  sendErrors: number;
  datagramsReceived: number;
  bytesReceived: number;
  datagramsAccepted: number;
  heartbeatsSent: number;
  noticesSent: number;
  recordsReceived: number;
  heartbeatsReceived: number;
  noticesReceived: number;
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
  private readonly settings: MemberSettings;
  private readonly outbox: Outbox;
  private readonly inbox: Inbox;
  private readonly table: SoftStateTable;
  private readonly adverts: Adverts;
  private readonly liveness: Liveness;
  private readonly ourGroup: GroupMembership;
  private readonly logger: SoftStateMemberOptions['logger'];
  private link: Link | undefined;
  private lastSeqSealed = 0;
  private housekeeper: NodeJS.Timeout | undefined;
  private readonly counters = {
    noticesSent: 0,
    recordsReceived: 0,
    heartbeatsReceived: 0,
    noticesReceived: 0,
    recordsSuperseded: 0,
  };

  constructor(options: SoftStateMemberOptions) {
    super();
    const settings = memberSettings(options);
    this.settings = settings;
    this.self = settings.self;
    this.groupConfig = settings.groupConfig;
    this.group = settings.group;
    this.ourGroup = new GroupMembership(settings.groupConfig, settings.group);
    this.advertIntervalMs = settings.advertIntervalMs;
    this.expireMs = settings.expireMs;
    this.heartbeatIntervalMs = settings.heartbeatIntervalMs;
    this.deadAfterMs = settings.deadAfterMs;
    this.heartbeatLeaseMs = settings.heartbeatLeaseMs;
    this.keyRing = options.keyRing;
    this.outbox = new Outbox({
      ring: options.keyRing,
      self: this.self,
      mtu: settings.mtu,
      maxFragments: settings.maxFragments,
      ...(options.epoch !== undefined ? { epoch: options.epoch, lastSeq: options.lastSeq ?? 0 } : {}),
    });
    this.inbox = new Inbox({ ring: options.keyRing, self: this.self, maxDatagram: settings.mtu });
    this.table = new SoftStateTable({ ttlMs: this.expireMs });
    this.logger = options.logger;
    this.adverts = new Adverts(this.outbox, this.advertIntervalMs);
    this.liveness = new Liveness({
      ...settings,
      logger: this.logger,
      connections: () => this.adverts.size,
      events: {
        peerDead: (peer, reason) => this.emit('peer-dead', peer, reason),
        peerAlive: (peer) => {
          this.adverts.roundNow();
          this.emit('peer-alive', peer);
        },
        declaredDeadSelf: (declarer, reason) => this.emit('declared-dead-self', declarer, reason),
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
    if (this.link) return;
    const onError = (err: Error) => {
      // An unheard 'error' would throw: log it instead when the daemon does not listen.
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else this.logger?.warn({ err }, 'soft-state socket error');
    };
    const setup = { ring: this.keyRing, epoch: this.outbox.epoch, lastSeq: this.outbox.lastSeq, beat: this.liveness.beatContent() };
    const link = await Link.open(this.settings, setup, (datagram) => this.receive(datagram), onError);
    this.link = link;
    this.liveness.start({
      beat: (load, services, now) => link.beat(load, services, now),
      notice: (notice) => {
        const target = supportGroupOf(notice.peer, this.groupConfig);
        link.send([this.outbox.noticeFrame(notice)], { address: target.address, port: target.port });
        this.counters.noticesSent++;
      },
      silence: () => link.silence(),
    });
    this.housekeeper = setInterval(() => this.housekeeping(), 1000);
    this.adverts.start((frames) => link.send(frames));
    this.logger?.info({ group: this.group, epoch: this.epoch }, 'soft-state member started');
  }

  async stop(): Promise<void> {
    this.liveness.stop();
    clearInterval(this.housekeeper);
    this.housekeeper = undefined;
    this.adverts.stop();
    const link = this.link;
    this.link = undefined;
    await link?.close();
    if (link) this.lastSeqSealed = link.lastSeq;
  }

  /* This member's sender as the next process carries it on after stop() (an in-place upgrade:
   * same epoch, sequence numbers above every one sealed, so peers see no restart). */
  get sender(): { epoch: bigint; lastSeq: number } {
    return { epoch: this.outbox.epoch, lastSeq: this.link?.lastSeq ?? this.lastSeqSealed };
  }

  /* Key rotation (e.g. on SIGHUP): seal with the ring's newest key, open with any of its keys. */
  setKeyRing(ring: KeyRing): void {
    this.keyRing = ring;
    this.outbox.setKeyRing(ring);
    this.inbox.setKeyRing(ring);
    this.link?.setKeyRing(ring);
  }

  /* Service addresses carried by the next heartbeats. */
  setServices(claims: readonly ServiceClaim[]): void {
    this.liveness.setServices(claims);
  }

  /* Load figures carried by the next heartbeats (connections are counted here). */
  setLoad(load: { bytesPerSec: number; cpu?: number }): void {
    this.liveness.setLoad(load);
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
    this.handleNotice(this.liveness.declare(peer, reason), true);
  }

  /*
   * Leaves the group on purpose (a planned drain): no more heartbeats, and a notice that makes
   * every peer take this server for dead now. Adverts go on, and everything heard is still
   * processed, until stop().
   */
  leave(reason: string): void {
    this.liveness.leave(reason);
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
    const sent = this.link?.sent;
    const received = this.link?.received;
    const peers = this.liveness.counts();
    return {
      datagramsSent: sent?.sent ?? 0,
      bytesSent: sent?.sentBytes ?? 0,
      sendQueueDrops: sent?.dropped ?? 0,
      sendErrors: sent?.sendErrors ?? 0,
      datagramsReceived: received?.received ?? 0,
      bytesReceived: received?.receivedBytes ?? 0,
      datagramsAccepted: this.inbox.accepted,
      heartbeatsSent: this.link?.heartbeatsSent ?? 0,
      ...this.adverts.counters,
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
        if (!this.ourGroup.has(message.sender)) return this.inbox.reject('wrong-group');
        this.counters.heartbeatsReceived++;
        return this.liveness.heartbeat(message);
      case 'death':
        this.counters.noticesReceived++;
        return this.handleNotice(message.notice);
      case 'advert':
        return this.handleAdvert(message);
    }
  }

  private handleNotice(notice: DeathNotice, local = false): void {
    if (notice.peer !== this.self && !this.ourGroup.has(notice.peer)) {
      // We watch only our own group; a local declaration about another group just goes out.
      if (!local) this.inbox.reject('wrong-group');
      return;
    }
    this.liveness.notice(notice);
  }

  private handleAdvert(message: Extract<InboundMessage, { kind: 'advert' }>): void {
    if (!this.ourGroup.has(message.sender)) {
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

  private housekeeping(): void {
    this.table.purgeStale();
    this.inbox.reassembler.expire();
    this.liveness.forget();
  }
}
