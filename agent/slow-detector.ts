/*
 * Client-triggered migration's trigger (after Migratory TCP): a connection whose throughput
 * stays below a fraction of its own best is probably served by an overloaded or badly connected
 * server, and another replica may do better. Fed one sample of the client socket's received
 * byte count per poll; pure, so that its rules are tested without a network:
 *   - the first samples after the start (or a migration) are TCP slow start, not the
 *     connection's best, and are skipped (warm-up);
 *   - a sample with no bytes is idle (a keep-alive connection between requests), never slow,
 *     and ends a run of slow samples;
 *   - a sample taken while the client's receive queue holds unread bytes is reader-limited (a
 *     player reading at its play rate, `curl --limit-rate`): the application, not the server,
 *     sets the pace; it is neither slow nor a best, and ends a run of slow samples;
 *   - `samples` consecutive samples below `fraction` of the best ask for a move, at most once
 *     per `minIntervalMs`.
 */

export interface SlowDetectorOptions {
  /** Slow means below this fraction of the best throughput (0 < fraction < 1). */
  fraction: number;
  /** This many consecutive slow samples ask for a move. */
  samples: number;
  /** Throughput samples ignored after a (re)start. */
  warmupSamples: number;
  /** At most one move request per this many ms. */
  minIntervalMs: number;
}

export class SlowDetector {
  private previous: { bytes: number; atMs: number } | undefined;
  private seen = 0;
  private best = 0;
  private slowRun = 0;
  private lastMoveAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: SlowDetectorOptions) {}

  /** Takes the socket's received-bytes counter at time atMs; true when a move should be asked for now. */
  sample(bytes: number, atMs: number, readerLimited = false): boolean {
    const previous = this.previous;
    this.previous = { bytes, atMs };
    if (!previous || atMs <= previous.atMs) return false;
    const rate = Math.max(0, bytes - previous.bytes) / (atMs - previous.atMs);
    if (++this.seen <= this.options.warmupSamples) return false;
    if (rate === 0 || readerLimited) {
      this.slowRun = 0;
      return false;
    }
    this.best = Math.max(this.best, rate);
    this.slowRun = rate < this.options.fraction * this.best ? this.slowRun + 1 : 0;
    if (this.slowRun < this.options.samples || atMs - this.lastMoveAtMs < this.options.minIntervalMs) return false;
    this.slowRun = 0;
    this.lastMoveAtMs = atMs;
    return true;
  }

  /** The connection moved: its new path has its own best, measured after a new warm-up. */
  restart(): void {
    this.seen = 0;
    this.best = 0;
    this.slowRun = 0;
  }

  /** Bytes per ms at its best so far (0 while warming up). */
  get bestRate(): number {
    return this.best;
  }
}
