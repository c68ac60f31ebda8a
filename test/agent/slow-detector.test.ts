import { describe, expect, it } from 'vitest';
import { SlowDetector } from '../../agent/slow-detector.js';

const OPTIONS = { fraction: 0.3, samples: 4, warmupSamples: 2, minIntervalMs: 5000 };

/** Feeds per-500 ms byte rates (bytes per sample); returns the sample indexes that asked for a move. */
function feed(detector: SlowDetector, perSample: number[], startMs = 0, startBytes = 0): number[] {
  const moves: number[] = [];
  let bytes = startBytes;
  detector.sample(bytes, startMs);
  perSample.forEach((delta, i) => {
    bytes += delta;
    if (detector.sample(bytes, startMs + (i + 1) * 500)) moves.push(i);
  });
  return moves;
}

describe('SlowDetector', () => {
  it('asks for a move after `samples` consecutive samples below the fraction of the best', () => {
    const detector = new SlowDetector(OPTIONS);
    // warm-up (2), fast (3), then slow: the 4th slow sample asks.
    expect(feed(detector, [10, 50, 1000, 1000, 1000, 100, 100, 100, 100, 100])).toEqual([8]);
    expect(detector.bestRate).toBe(2); // 1000 bytes per 500 ms
  });

  it('never counts a reader-limited sample (unread bytes queued at the client) as slow or as a best', () => {
    const detector = new SlowDetector(OPTIONS);
    let bytes = 0;
    let at = 0;
    const step = (delta: number, readerLimited = false) => detector.sample((bytes += delta), (at += 500), readerLimited);
    detector.sample(0, 0);
    for (const delta of [10, 50, 1000, 1000]) step(delta);
    // A reader at a tenth of the path's speed, its socket buffer full: never a move.
    const moves = Array.from({ length: 12 }, () => step(100, true)).filter(Boolean);
    expect(moves).toEqual([]);
    expect(detector.bestRate).toBe(2);
    // The same rate with nothing queued is the path being slow: four samples ask.
    expect(Array.from({ length: 4 }, () => step(100)).at(-1)).toBe(true);
  });

  it('ignores slow start: the warm-up samples never set the best', () => {
    const detector = new SlowDetector(OPTIONS);
    expect(feed(detector, [100000, 100000, 100, 100, 100, 100, 100])).toEqual([]);
  });

  it('does not count idle samples as slow, and they end a slow run', () => {
    const detector = new SlowDetector(OPTIONS);
    expect(feed(detector, [0, 0, 1000, 100, 100, 100, 0, 0, 0, 0, 0, 100, 100, 100])).toEqual([]);
    expect(feed(new SlowDetector(OPTIONS), [0, 0, 1000, 0, 0, 0, 0, 0, 0, 0, 0])).toEqual([]);
  });

  it('asks at most once per minIntervalMs while the connection stays slow', () => {
    const detector = new SlowDetector(OPTIONS);
    const moves = feed(detector, [0, 0, 1000, ...Array<number>(30).fill(100)]);
    // First ask at the 4th slow sample (index 6), the next one 5 s (10 samples) later.
    expect(moves).toEqual([6, 16, 26]);
  });

  it('measures the best afresh after a migration', () => {
    const detector = new SlowDetector(OPTIONS);
    expect(feed(detector, [0, 0, 1000])).toEqual([]);
    detector.restart();
    // The new path is slower than the old best, but steady: not slow against its own best.
    expect(feed(detector, [100, 100, 100, 100, 100, 100, 100, 100], 10_000, 2000)).toEqual([]);
    expect(detector.bestRate).toBeCloseTo(0.2);
  });

  it('ignores samples that do not advance in time', () => {
    const detector = new SlowDetector(OPTIONS);
    detector.sample(0, 1000);
    expect(detector.sample(500, 1000)).toBe(false);
    expect(detector.sample(400, 900)).toBe(false);
  });
});
