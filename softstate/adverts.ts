/*
 * Adverts: the connections this member owns, and when they go out. In: records to advertise,
 * repeats and removals, as SoftStateMember accepts them. Out: sealed advert frames for our own
 * group, through the send function given to start(), and counters for the metrics.
 *
 * Triggered adverts. set() keeps the record with its encoding (encoded once, sent many times)
 * and schedules a triggered advert on setImmediate, so everything the daemon changed in the same
 * event-loop turn leaves in as few datagrams as the MTU allows. readvertise() sends a record
 * again from its kept encoding. remove() sends a withdrawal so receivers forget a closed
 * connection at once. Triggered adverts are never paced: they are small and time-critical.
 *
 * Periodic rounds. Every advertIntervalMs (±10% jitter, so members do not synchronise) all local
 * records are sent again: soft state, receivers expire entries after their expiry. A round leaves
 * in bursts of PACE_BURST records every PACE_INTERVAL_MS (1,000 connections = ~500 datagrams =
 * ~80 ms), so a receiver's socket buffer (208 kB by default on Linux) does not overflow while its
 * event loop is busy. Each burst carries its records as they are when it leaves, so a round never
 * overwrites a newer triggered advert with an older copy.
 *
 * A member that joins (or comes back) knows none of our records: when a peer becomes alive, a
 * round starts at once (roundNow), so it can take over our connections from its first second.
 *
 * Too large. A record whose encoding does not fit in maxFragments datagrams is refused by set()
 * with WEDGE_ERR_STATE_RECORD_TOO_LARGE and counted (recordsTooLarge).
 *
 * Nothing is sent before start() or after stop(); what changed meanwhile waits in the dirty set.
 */
import { WedgeError } from '../errors/codes.js';
import type { Outbox } from './channel.js';
import type { ConnectionRecord, Withdrawal } from './records.js';

const PACE_BURST = 32;
const PACE_INTERVAL_MS = 5;

export interface AdvertCounters {
  advertDatagramsSent: number;
  fragmentsSent: number;
  recordsAdvertised: number;
  triggeredAdverts: number;
  periodicAdverts: number;
  withdrawalsSent: number;
  recordsTooLarge: number;
}

interface LocalEntry {
  record: ConnectionRecord;
  encoded: Buffer;
}

export class Adverts {
  readonly counters: AdvertCounters = {
    advertDatagramsSent: 0,
    fragmentsSent: 0,
    recordsAdvertised: 0,
    triggeredAdverts: 0,
    periodicAdverts: 0,
    withdrawalsSent: 0,
    recordsTooLarge: 0,
  };
  private readonly outbox: Outbox;
  private readonly advertIntervalMs: number;
  private readonly local = new Map<string, LocalEntry>();
  private readonly dirty = new Set<string>();
  private readonly withdrawals: Withdrawal[] = [];
  /* Set between start() and stop(). */
  private send: ((frames: Buffer[]) => void) | undefined;
  private flushScheduled: NodeJS.Immediate | undefined;
  private advertTimer: NodeJS.Timeout | undefined;
  /* Ids of the records still to go out in the current periodic round. */
  private paced: string[] = [];
  private pacer: NodeJS.Timeout | undefined;

  constructor(outbox: Outbox, advertIntervalMs: number) {
    this.outbox = outbox;
    this.advertIntervalMs = advertIntervalMs;
  }

  get size(): number {
    return this.local.size;
  }

  get(id: string): ConnectionRecord | undefined {
    return this.local.get(id)?.record;
  }

  has(id: string): boolean {
    return this.local.has(id);
  }

  records(): ConnectionRecord[] {
    return [...this.local.values()].map((e) => e.record);
  }

  start(send: (frames: Buffer[]) => void): void {
    this.send = send;
    this.schedulePeriodicAdvert();
    if (this.dirty.size > 0) this.scheduleFlush();
  }

  stop(): void {
    if (this.advertTimer) clearTimeout(this.advertTimer);
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    if (this.pacer) clearTimeout(this.pacer);
    this.paced = [];
    this.pacer = undefined;
    this.advertTimer = undefined;
    this.flushScheduled = undefined;
    this.send = undefined;
  }

  /* Keeps (or replaces) a local record and advertises it in the next triggered advert.
   * Throws WEDGE_ERR_STATE_RECORD_TOO_LARGE, keeping nothing, if it cannot be sent. */
  set(record: ConnectionRecord): void {
    const encoded = this.outbox.encodeItem({ kind: 'record', record });
    if (encoded.length > this.outbox.maxItemBytes) {
      this.counters.recordsTooLarge++;
      throw new WedgeError(
        'WEDGE_ERR_STATE_RECORD_TOO_LARGE',
        `${record.id}: ${encoded.length} bytes, at most ${this.outbox.maxItemBytes} fit in ${this.outbox.maxFragments} datagrams`,
      );
    }
    this.local.set(record.id, { record, encoded });
    this.dirty.add(record.id);
    this.scheduleFlush();
  }

  readvertise(id: string): void {
    if (!this.local.has(id)) return;
    this.dirty.add(id);
    this.scheduleFlush();
  }

  /* Forgets a local record and withdraws it from the group; returns what it was. */
  remove(id: string): ConnectionRecord | undefined {
    const record = this.drop(id);
    if (!record) return undefined;
    this.withdrawals.push({ id, owner: record.owner, migration: record.migration });
    this.scheduleFlush();
    return record;
  }

  /* Forgets a local record silently (someone else owns it now). */
  drop(id: string): ConnectionRecord | undefined {
    const entry = this.local.get(id);
    this.local.delete(id);
    this.dirty.delete(id);
    return entry?.record;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.send) return;
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

  /* A periodic round now (a peer just joined or came back, and knows none of our records); the
   * next one follows a whole interval later. */
  roundNow(): void {
    if (!this.send) return;
    clearTimeout(this.advertTimer);
    this.round();
    this.schedulePeriodicAdvert();
  }

  private schedulePeriodicAdvert(): void {
    const delay = this.advertIntervalMs * (0.9 + 0.2 * Math.random());
    this.advertTimer = setTimeout(() => {
      if (!this.send) return;
      this.round();
      this.schedulePeriodicAdvert();
    }, delay);
  }

  private round(): void {
    if (this.local.size === 0) return;
    this.counters.periodicAdverts++;
    // A new round carries every current record: what is left of the previous one is stale.
    this.paced = [...this.local.keys()];
    if (!this.pacer) this.pace();
  }

  private sendAdverts(items: Buffer[], records: number): void {
    const send = this.send;
    if (!send) return;
    const { frames, refused, fragments } = this.outbox.advertFrames(items);
    this.counters.recordsTooLarge += refused.length;
    send(frames);
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
}
