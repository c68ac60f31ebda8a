/* Adverts on a fake clock, with a real Outbox and no socket: what leaves, when, and in how
 * many records (triggered per event-loop turn, periodic rounds in paced bursts, withdrawals). */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Adverts } from '../../softstate/adverts.js';
import { Outbox } from '../../softstate/channel.js';
import { WedgeError } from '../../errors/codes.js';
import { sampleRecord } from './sample.js';

const keyRing = { current: 1, keys: new Map([[1, randomBytes(32)]]) };
const SELF = sampleRecord(0).owner;

let adverts: Adverts;
let sends: number[];
beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5); // no jitter: rounds every 1000 ms exactly
  adverts = new Adverts(new Outbox({ ring: keyRing, self: SELF }), 1000);
  sends = [];
  let advertised = 0;
  // Records carried by each send, read from the counter the send moved.
  adverts.start(() => queueMicrotask(() => {
    sends.push(adverts.counters.recordsAdvertised - advertised);
    advertised = adverts.counters.recordsAdvertised;
  }));
});
afterEach(() => {
  adverts.stop();
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('Adverts', () => {
  it('sends everything set in one event-loop turn in one triggered advert', async () => {
    for (let i = 0; i < 40; i++) adverts.set(sampleRecord(i));
    expect(sends).toEqual([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toEqual([40]);
    expect(adverts.counters.triggeredAdverts).toBe(1);
    adverts.readvertise(sampleRecord(3).id);
    adverts.readvertise('unknown');
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toEqual([40, 1]);
  });

  it('sends a periodic round in bursts of 32 records, 5 ms apart', async () => {
    for (let i = 0; i < 100; i++) adverts.set(sampleRecord(i));
    await vi.advanceTimersByTimeAsync(999);
    expect(sends).toEqual([100]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sends).toEqual([100, 32]);
    await vi.advanceTimersByTimeAsync(15);
    expect(sends).toEqual([100, 32, 32, 32, 4]);
    expect(adverts.counters.periodicAdverts).toBe(1);
  });

  it('withdraws a removed record and leaves it out of the rounds that follow', async () => {
    const records = [sampleRecord(1), sampleRecord(2)];
    for (const r of records) adverts.set(r);
    await vi.advanceTimersByTimeAsync(0);
    expect(adverts.remove(records[0]!.id)).toEqual(records[0]);
    expect(adverts.remove(records[0]!.id)).toBeUndefined();
    await vi.advanceTimersByTimeAsync(0);
    expect(adverts.counters.withdrawalsSent).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sends).toEqual([2, 0, 1]);
    expect(adverts.records()).toEqual([records[1]]);
  });

  it('refuses a record too large for the fragments allowed, keeping nothing', () => {
    const small = new Adverts(new Outbox({ ring: keyRing, self: SELF, maxFragments: 2 }), 1000);
    expect(() => small.set(sampleRecord(1, {}, 10_000))).toThrow(WedgeError);
    expect(small.counters.recordsTooLarge).toBe(1);
    expect(small.size).toBe(0);
  });

  it('sends nothing after stop, and what changed meanwhile at the next start', async () => {
    adverts.stop();
    adverts.set(sampleRecord(1));
    await vi.advanceTimersByTimeAsync(2000);
    expect(sends).toEqual([]);
    adverts.start(() => sends.push(-1));
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toEqual([-1]);
  });
});
