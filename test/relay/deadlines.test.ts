/*
 * The connection's one timer (relay/deadlines.ts) on a fake clock: a trickling head still
 * expires at its header deadline, a steady body never does and costs no timer per chunk, a
 * stalled body expires exactly its timeout after its last byte, and a kernel splice counts as
 * progress while its byte count moves.
 */
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadlines, type Deadline, type Watched } from '../../relay/deadlines.js';
import { Lifecycle } from '../../relay/lifecycle.js';
import type { RequestQueue } from '../../relay/request-queue.js';

const TIMEOUTS = { idleTimeoutMs: 60_000, headerTimeoutMs: 10_000, bodyTimeoutMs: 5_000, responseTimeoutMs: 5_000 };

function subject() {
  const queue = { headPending: false, streaming: false };
  const client = { writableLength: 0, isPaused: () => false };
  let exchange: { splice?: { moved: number } } | undefined;
  const watched: Watched = {
    lifecycle: new Lifecycle(pino({ level: 'silent' })),
    client: client as unknown as Socket,
    queue: queue as unknown as RequestQueue,
    exchange: () => exchange,
  };
  const expired: Array<[Deadline, number]> = [];
  // Like the connection, whose every expiry ends the wait (it answers, closes or resets).
  const deadlines: Deadlines = new Deadlines(TIMEOUTS, watched, (deadline) => {
    expired.push([deadline, Date.now()]);
    deadlines.stop();
  }, (handle) => handle());
  return { queue, deadlines, expired, setExchange: (e: typeof exchange) => (exchange = e) };
}

describe('Deadlines', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a head that trickles in expires at its header deadline, counted from its first byte', () => {
    const { queue, deadlines, expired } = subject();
    deadlines.update();
    vi.advanceTimersByTime(1000);
    queue.headPending = true;
    for (let t = 0; t < 20; t++) {
      deadlines.client();
      deadlines.update();
      vi.advanceTimersByTime(1000);
    }
    expect(expired).toEqual([['header', 11_000]]);
  });

  it('a steady body never expires and re-arms no timer per chunk; a stall expires its timeout after the last byte', () => {
    const { queue, deadlines, expired, setExchange } = subject();
    setExchange({});
    queue.streaming = true;
    const timers = vi.spyOn(globalThis, 'setTimeout');
    deadlines.update();
    for (let chunk = 0; chunk < 2000; chunk++) {
      vi.advanceTimersByTime(10);
      deadlines.client();
      deadlines.update();
    }
    expect(expired).toEqual([]);
    // One timer per period (20 s of chunks, 5 s periods), not one per chunk.
    expect(timers.mock.calls.length).toBeLessThanOrEqual(6);
    vi.advanceTimersByTime(20_000);
    expect(expired).toEqual([['body', 20_000 + 5_000]]);
  });

  it('a kernel splice is progress while its count moves; stalled, it expires within two periods', () => {
    const { deadlines, expired, setExchange } = subject();
    const splice = { moved: 0 };
    setExchange({ splice });
    deadlines.update();
    for (let t = 0; t < 30; t++) {
      vi.advanceTimersByTime(1000);
      splice.moved += 100_000;
    }
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(10_000);
    expect(expired).toHaveLength(1);
    expect(expired[0]![0]).toBe('response');
    expect(expired[0]![1]).toBeGreaterThanOrEqual(30_000 + 5_000);
    expect(expired[0]![1]).toBeLessThanOrEqual(30_000 + 10_000);
  });

  it('idle: the wait from the end of an exchange; stop() silences it', () => {
    const { deadlines, expired } = subject();
    deadlines.update();
    vi.advanceTimersByTime(60_000);
    expect(expired).toEqual([['idle', 60_000]]);
    const other = subject();
    other.deadlines.update();
    other.deadlines.stop();
    vi.advanceTimersByTime(120_000);
    expect(other.expired).toEqual([]);
  });
});
