/*
 * The soft-state table: what this member has heard about other servers' connections.
 *
 * One entry per connection id, kept in an LRU cache with a TTL (default 10 s, the paper's
 * expiry for a 3 s advert period: three adverts in a row may be lost before an entry goes).
 * Only the newest version of a connection is kept, by this order:
 *
 *   1. higher migration number (every takeover increments it);
 *   2. equal migration, different owners (two takeovers raced): the greater owner address
 *      wins. A fixed rank rather than time, so every member (and both contenders) reach the
 *      same verdict whatever their clocks say;
 *   3. same owner: later updatedAt, then later datagram sequence.
 *
 * A re-advert of the same version refreshes the TTL; an older version does not. A closed
 * connection (withdrawn by its owner, or closed here) leaves its migration number behind for the
 * TTL: an advert of it still in flight, or queued in our socket, must not bring it back.
 * Expired entries are dropped lazily on access and by purgeStale(), which the member calls
 * periodically (no timer per entry).
 */
import { LRUCache } from 'lru-cache';
import type { ConnectionRecord, Withdrawal } from './records.js';

export const DEFAULT_TTL_MS = 10_000;
export const DEFAULT_MAX_ENTRIES = 200_000;

export interface TableEntry {
  record: ConnectionRecord;
  sender: string;
  seq: number;
  receivedAt: number;
}

export type OfferOutcome = 'new' | 'updated' | 'refreshed' | 'older';

/* >0 when a is newer than b, <0 when older, 0 for the same version. */
export function compareVersions(a: ConnectionRecord, b: ConnectionRecord): number {
  if (a.migration !== b.migration) return a.migration - b.migration;
  if (a.owner !== b.owner) return a.owner > b.owner ? 1 : -1;
  return a.updatedAt - b.updatedAt;
}

export interface TableOptions {
  ttlMs?: number;
  max?: number;
}

export class SoftStateTable {
  readonly ttlMs: number;
  private readonly cache: LRUCache<string, TableEntry>;
  /* id → migration number of a connection known closed. */
  private readonly closed: LRUCache<string, number>;

  constructor(options: TableOptions = {}) {
    this.ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.cache = new LRUCache<string, TableEntry>({
      max: options.max ?? DEFAULT_MAX_ENTRIES,
      ttl: this.ttlMs,
      updateAgeOnGet: false,
      updateAgeOnHas: false,
    });
    this.closed = new LRUCache<string, number>({ max: options.max ?? DEFAULT_MAX_ENTRIES, ttl: this.ttlMs });
  }

  get size(): number {
    return this.cache.size;
  }

  /* Keeps the record if it is at least as new as what is known. */
  offer(record: ConnectionRecord, from: { sender: string; seq: number }, now = Date.now()): OfferOutcome {
    const closedAt = this.closed.get(record.id);
    if (closedAt !== undefined && record.migration <= closedAt) return 'older';
    const known = this.cache.get(record.id);
    const entry: TableEntry = { record, sender: from.sender, seq: from.seq, receivedAt: now };
    if (!known) {
      this.cache.set(record.id, entry);
      return 'new';
    }
    const order = compareVersions(record, known.record);
    if (order > 0) {
      this.cache.set(record.id, entry);
      return 'updated';
    }
    if (order < 0 || (known.sender === from.sender && from.seq < known.seq)) return 'older';
    this.cache.set(record.id, entry);
    return 'refreshed';
  }

  /* Drops a record its owner withdrew, unless a newer version (e.g. a takeover) is known. */
  withdraw(w: Withdrawal): boolean {
    const known = this.cache.get(w.id);
    if (!known || known.record.owner !== w.owner || known.record.migration > w.migration) return false;
    this.markClosed(w.id, w.migration);
    return true;
  }

  /* The connection closed at this migration number: forget it, and older adverts of it. */
  markClosed(id: string, migration: number): void {
    this.cache.delete(id);
    this.closed.set(id, Math.max(migration, this.closed.get(id) ?? migration));
  }

  get(id: string): ConnectionRecord | undefined {
    return this.cache.get(id)?.record;
  }

  entry(id: string): TableEntry | undefined {
    return this.cache.get(id);
  }

  /* Forgets a connection entirely (this member serves it now). */
  delete(id: string): boolean {
    this.closed.delete(id);
    return this.cache.delete(id);
  }

  records(): ConnectionRecord[] {
    return [...this.cache.values()].map((e) => e.record);
  }

  /* O(table size): called on a peer's death, not per packet. */
  ownedBy(owner: string): ConnectionRecord[] {
    const out: ConnectionRecord[] = [];
    for (const e of this.cache.values()) if (e.record.owner === owner) out.push(e.record);
    return out;
  }

  purgeStale(): boolean {
    return this.cache.purgeStale();
  }
}
