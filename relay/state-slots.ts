/*
 * The wedge's half of the state contract (Migratory TCP): one slot per client connection where
 * its origin stores a snapshot of the connection's application state.
 *
 * In: open() for each connection served here; store() for each PUT the state listener receives
 * (daemon/state-store.ts). Out: each slot's URL (sent to the origin as `Wedge-State`) and its
 * latest snapshot, with a callback so the connection re-advertises its record.
 *
 * A slot's URL carries a 128-bit random token: only the origin told the URL can write the slot.
 * Tokens are compared in constant time. A slot is valid for its connection only, from open()
 * to close(); a snapshot's position (exchange, offset) never goes backwards.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Snapshot } from '../stream-map/resume-plan.js';

export type { Snapshot } from '../stream-map/resume-plan.js';

export const MAX_SNAPSHOT_BYTES = 4096;

export type StoreResult = 'stored' | 'unknown' | 'backwards';

export class StateSlot {
  snapshot: Snapshot | undefined;
  /* When the snapshot was stored (ms, wall clock). */
  storedAt: number | undefined;
  /* Told after every stored snapshot. */
  onStored: (() => void) | undefined;

  constructor(
    readonly url: string,
    readonly token: Buffer,
    private readonly closing: () => void,
  ) {}

  close(): void {
    this.closing();
  }
}

export class StateSlots {
  private readonly slots = new Map<string, StateSlot>();
  private nextSlot = 1;

  /* The state listener's URL, e.g. http://127.0.0.1:9092, once it listens. */
  base = '';

  get size(): number {
    return this.slots.size;
  }

  open(): StateSlot {
    const name = String(this.nextSlot++);
    const token = randomBytes(16);
    const slot = new StateSlot(`${this.base}/wedge-state/${name}/${token.toString('hex')}`, token, () => this.slots.delete(name));
    this.slots.set(name, slot);
    return slot;
  }

  store(name: string, token: string, snapshot: Snapshot): StoreResult {
    const slot = this.slots.get(name);
    if (!slot || !tokenMatches(slot.token, token)) return 'unknown';
    const previous = slot.snapshot;
    if (previous && (snapshot.exchange < previous.exchange || (snapshot.exchange === previous.exchange && snapshot.offset < previous.offset))) return 'backwards';
    slot.snapshot = snapshot;
    slot.storedAt = Date.now();
    slot.onStored?.();
    return 'stored';
  }
}

function tokenMatches(expected: Buffer, given: string): boolean {
  if (!/^[0-9a-f]{32}$/.test(given)) return false;
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}
