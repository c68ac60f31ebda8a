/*
 * Liveness: which peers of the support group are alive, and this member's own heartbeats. In:
 * authentic heartbeats, death notices and signs of life (any authentic datagram) of peers in
 * our group, as SoftStateMember routes them; this member's load and services; declarations.
 * Out: 'peer-dead', 'peer-alive' and 'declared-dead-self' through LivenessEvents, the peer
 * table (peers()), and check-ins and death notices through the LivenessWire.
 *
 * Heartbeats. A heartbeat (with the sender's load and services) every heartbeatIntervalMs; the
 * sender thread sends them, this part checks in every interval with their content (link.ts). A
 * peer not heard for deadAfterMs is dead ('peer-dead' with reason 'silent'). A heartbeat with a
 * higher epoch means the peer restarted and lost its connections: 'peer-dead' ('restarted'),
 * then 'peer-alive'. Defaults: 100 ms / 400 ms (options.ts).
 *  - Detection bound: the last heartbeat precedes the crash, the check runs every 50 ms, so
 *    death is reported at most 400 + 50 = 450 ms after it (under the 0.5 s target).
 *  - Cost: a heartbeat datagram is ~130 bytes on the wire (~100 B UDP payload + IP/UDP
 *    headers): 10/s = ~1.3 kB/s sent per member, and (n-1) x 10 datagrams/s received in a
 *    group of n, each one GCM open (a few us). Small beside the adverts (~175 kB/s for 1,000
 *    connections every 3 s, see test/bench/softstate.bench.ts).
 *  - False positives: a peer is declared dead only after four heartbeats in a row are lost.
 *    With independent loss p that is p^4 per 100 ms: 1e-8 at 1% loss (one false alarm per
 *    ~30 years per peer), but 0.8% at 30% loss (one per ~12 s). Event-loop stalls do not (the
 *    sender thread heartbeats through them, see link.ts), unless longer than the lease.
 *    Either way the error is corrected by the next heartbeat, as below, and migration numbers
 *    keep takeovers safe.
 *
 * Death reports. declare(peer) multicasts a notice (three copies, lost datagrams happen)
 * carrying the declarer's last authentic (epoch, seq) from the peer. Receivers mark the peer
 * dead ('peer-dead') unless it already is, and remember max(own, declarer's) (epoch, seq) as the
 * bar. A peer that is in fact alive keeps heartbeating: a heartbeat *above* the bar was sent
 * after the declarer last heard it, so it is alive again ('peer-alive'). The reported peer hears
 * the notice about itself, answers at once with a heartbeat, which refutes the report, and
 * emits 'declared-dead-self' (the daemon may step back or just carry on).
 *
 * Leaving. A member that leaves on purpose (a planned drain) silences its heartbeats for good
 * and then sends a notice about itself (declarer = peer = itself, three copies): its peers mark
 * it dead at once ('peer-dead', reason "left: ..."), with no detection delay, and take over its
 * addresses and connections as after a death. It goes on listening (it must hear who took what),
 * but never refutes a notice again: heartbeats stopped before the notice left, so no later one
 * can lift the bar.
 *
 * Forgetting. A peer dead and unheard for max(6 x expiry, 60 s) is dropped from the table:
 * its records have expired long before.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { InboundMessage } from './channel.js';
import { epochHex } from './crypto.js';
import { MAX_REASON_LENGTH, MAX_SERVICES, type DeathNotice, type Load, type ServiceClaim } from './records.js';

const NOTICE_COPIES = 3;

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

export interface LivenessEvents {
  peerDead(peer: string, reason: string): void;
  peerAlive(peer: string): void;
  /* A peer reported this member dead (a heartbeat already went out to refute it). */
  declaredDeadSelf(declarer: string, reason: string): void;
}

/* How this part reaches the group (from start() to stop()). */
export interface LivenessWire {
  /* The main thread is alive: heartbeats go on with this content; `now` sends one at once. */
  beat(load: Load, services: ServiceClaim[], now: boolean): void;
  /* Sends one copy of a notice to the support group of its peer. */
  notice(notice: DeathNotice): void;
  /* Heartbeats end for good (before a leave notice goes out). */
  silence(): void;
}

export interface LivenessOptions {
  self: string;
  heartbeatIntervalMs: number;
  deadAfterMs: number;
  /* Soft-state expiry: dead peers are forgotten a good while after their records expired. */
  expireMs: number;
  events: LivenessEvents;
  /* Connections this member serves now, for its heartbeats' load. */
  connections: () => number;
  logger?: Pick<Logger, 'info' | 'warn'> | undefined;
  /* Monotonic clock in ms (default performance.now; tests drive their own). */
  now?: () => number;
}

type HeartbeatMessage = Extract<InboundMessage, { kind: 'heartbeat' }>;

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

function above(epoch: bigint, seq: number, bar: { epoch: bigint; seq: number }): boolean {
  return epoch > bar.epoch || (epoch === bar.epoch && seq > bar.seq);
}

export class Liveness {
  /* How often the silent check runs: often enough for the detection bound, at most every 50 ms. */
  readonly checkIntervalMs: number;
  private readonly options: LivenessOptions;
  private readonly now: () => number;
  private readonly peerStates = new Map<string, PeerState>();
  private lastCheck = 0;
  private wire: LivenessWire | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly noticeTimers = new Set<NodeJS.Timeout>();
  private load: { bytesPerSec: number; cpu?: number } = { bytesPerSec: 0 };
  private services: ServiceClaim[] = [];
  private left = false;

  constructor(options: LivenessOptions) {
    this.options = options;
    this.now = options.now ?? (() => performance.now());
    this.checkIntervalMs = Math.max(10, Math.min(50, Math.floor(options.deadAfterMs / 8)));
  }

  /* Check-ins every heartbeat interval and the silent check every checkIntervalMs begin. */
  start(wire: LivenessWire): void {
    this.wire = wire;
    this.lastCheck = this.now();
    this.timers.push(setInterval(() => this.checkIn(), this.options.heartbeatIntervalMs));
    this.timers.push(setInterval(() => this.check(), this.checkIntervalMs));
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    for (const t of this.noticeTimers) clearTimeout(t);
    this.noticeTimers.clear();
    this.wire = undefined;
  }

  /* Service addresses carried by the next heartbeats. */
  setServices(claims: readonly ServiceClaim[]): void {
    this.services = claims.slice(0, MAX_SERVICES);
  }

  /* Load figures carried by the next heartbeats (connections are counted here). */
  setLoad(load: { bytesPerSec: number; cpu?: number }): void {
    this.load = load;
  }

  beatContent(): { load: Load; services: ServiceClaim[] } {
    return { load: { connections: this.options.connections(), ...this.load }, services: this.services };
  }

  /* Any authentic datagram shows its sender alive: when our loop falls behind, the adverts
   * queued in front of a heartbeat must not let that peer look silent. */
  heard(sender: string): void {
    const peer = this.peerStates.get(sender);
    if (peer?.alive) peer.lastHeardMono = this.now();
  }

  heartbeat(message: HeartbeatMessage): void {
    const now = this.now();
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
    this.options.logger?.info({ peer: peer.address }, 'peer alive');
    this.options.events.peerAlive(peer.address);
  }

  /* Sends a notice that `peer` is dead, with the bar known here, in NOTICE_COPIES copies
   * spaced half a heartbeat (at least 20 ms) apart; returns it (the member then takes it as if received). */
  declare(peer: string, reason: string): DeathNotice {
    const known = this.peerStates.get(peer);
    const notice: DeathNotice = { declarer: this.options.self, peer, reason: reason.slice(0, MAX_REASON_LENGTH), at: Date.now() };
    if (known?.epoch !== undefined) {
      notice.peerEpoch = epochHex(known.epoch);
      notice.peerSeq = known.seq;
    }
    this.wire?.notice(notice);
    for (let copy = 1; copy < NOTICE_COPIES; copy++) {
      const timer = setTimeout(() => {
        this.noticeTimers.delete(timer);
        this.wire?.notice(notice);
      }, copy * Math.max(20, this.options.heartbeatIntervalMs / 2));
      this.noticeTimers.add(timer);
    }
    return notice;
  }

  /* This member leaves its group: heartbeats end, then its peers are told (see "Leaving"). */
  leave(reason: string): DeathNotice {
    this.left = true;
    this.wire?.silence();
    return this.declare(this.options.self, reason);
  }

  /* A death notice about this member or a peer of its group (received, or declared here). */
  notice(notice: DeathNotice): void {
    if (notice.peer === this.options.self) {
      if (this.left) return;
      this.options.logger?.warn({ declarer: notice.declarer, reason: notice.reason }, 'declared dead by a peer; refuting with a heartbeat');
      this.checkIn(true);
      this.options.events.declaredDeadSelf(notice.declarer, notice.reason);
      return;
    }
    let peer = this.peerStates.get(notice.peer);
    if (!peer) {
      peer = { address: notice.peer, alive: true, epoch: undefined, seq: 0, lastHeardMono: this.now(), lastHeardAt: undefined, load: undefined, services: [] };
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
    if (notice.declarer === notice.peer) this.markDead(peer, `left: ${notice.reason}`);
    else this.markDead(peer, `declared dead by ${notice.declarer}${notice.reason ? `: ${notice.reason}` : ''}`);
  }

  /*
   * A peer is dead when nothing was heard from it for deadAfterMs. If this check itself ran
   * late (our event loop was stalled), heartbeats that did arrive may still sit unread in the
   * socket: the silence is ours, not the peer's, so its clocks restart from now instead.
   */
  private check(): void {
    const now = this.now();
    const stalled = now - this.lastCheck > this.checkIntervalMs * 2;
    this.lastCheck = now;
    for (const peer of this.peerStates.values()) {
      if (stalled) peer.lastHeardMono = Math.max(peer.lastHeardMono, now - this.options.heartbeatIntervalMs);
      else if (peer.alive && now - peer.lastHeardMono > this.options.deadAfterMs) this.markDead(peer, 'silent');
    }
  }

  /* Forgets peers long dead and gone: their records have expired too. */
  forget(): void {
    const forgetAfter = Math.max(6 * this.options.expireMs, 60_000);
    const now = this.now();
    for (const [address, peer] of this.peerStates) {
      if (!peer.alive && now - peer.lastHeardMono > forgetAfter) this.peerStates.delete(address);
    }
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

  /* Peers alive and dead, for the metrics. */
  counts(): { alive: number; dead: number } {
    let alive = 0;
    for (const p of this.peerStates.values()) if (p.alive) alive++;
    return { alive, dead: this.peerStates.size - alive };
  }

  private checkIn(now = false): void {
    if (this.left) return;
    const { load, services } = this.beatContent();
    this.wire?.beat(load, services, now);
  }

  private markDead(peer: PeerState, reason: string): void {
    peer.alive = false;
    peer.deadReason = reason;
    peer.deadSince = Date.now();
    this.options.logger?.warn({ peer: peer.address, reason }, 'peer dead');
    this.options.events.peerDead(peer.address, reason);
  }
}
