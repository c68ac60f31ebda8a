/*
 * The time limits of one client connection, on one timer.
 *
 * In: the connection's parts that say what it waits for now (read after anything that may change
 * it: update()), and the moments bytes move (client(): a byte from the client; origin(): a byte
 * of the response). Out: `expired(deadline, error)`, once per expiry, with the error to answer or
 * abort with (none for idle); the connection ends through its own endings (relay/connection.ts).
 *
 *   idle      nothing to do until the client's next request (or, closing, until it closes):
 *             from the moment the wait began (keep-alive idle timeout; not an error)
 *   header    a request head has begun: from its first byte to its end, whatever trickles in
 *             (a head pipelined behind a response is timed from when that response ends)
 *   body      the request at the origin is still arriving: since the client's last byte
 *   response  a response is owed: since its last byte moved (origin silent, or the client not
 *             reading it); during a kernel splice JavaScript sees no byte, so the splice's own
 *             count is compared at each expiry instead (a stall is then found within 1-2 periods)
 *
 * Cost: a byte only stores a timestamp. The timer is set again only when a wait begins whose
 * deadline is earlier than the pending one, and when it fires early (bytes moved since): once
 * per period at most, never per chunk.
 */

import type { Socket } from 'node:net';
import { WedgeError } from '../errors/codes.js';
import type { Lifecycle } from './lifecycle.js';
import type { RequestQueue } from './request-queue.js';

export type Deadline = 'idle' | 'header' | 'body' | 'response';

export interface Timeouts {
  idleTimeoutMs: number;
  headerTimeoutMs: number;
  bodyTimeoutMs: number;
  responseTimeoutMs: number;
}

interface Waiting {
  deadline: Deadline;
  /* Bytes moved so far by a transfer JavaScript does not see (a kernel splice). */
  hiddenProgress?: number;
}

/* The parts of a connection its deadlines read. */
export interface Watched {
  lifecycle: Lifecycle;
  client: Socket;
  queue: RequestQueue;
  /* The exchange in progress, if any (and its kernel splice). */
  exchange(): { splice?: { readonly moved: number } } | undefined;
}

/* What the connection waits for. A client the wedge stopped reading is not slow: the origin
 * then owes progress. */
function waitingOf({ lifecycle, client, queue, exchange }: Watched): Waiting | undefined {
  if (lifecycle.ended) return undefined;
  if (lifecycle.state === 'closing') return { deadline: 'idle' };
  const current = exchange();
  if (!current) return { deadline: queue.headPending ? 'header' : 'idle' };
  if (queue.streaming && !client.isPaused()) return { deadline: 'body' };
  return current.splice ? { deadline: 'response', hiddenProgress: current.splice.moved } : { deadline: 'response' };
}

function errorOf(deadline: Deadline, timeouts: Timeouts): WedgeError | undefined {
  switch (deadline) {
    case 'idle':
      return undefined;
    case 'header':
      return new WedgeError('WEDGE_ERR_HTTP_REQUEST_TIMEOUT', `no complete request head in ${timeouts.headerTimeoutMs} ms`);
    case 'body':
      return new WedgeError('WEDGE_ERR_HTTP_REQUEST_TIMEOUT', `no request body byte for ${timeouts.bodyTimeoutMs} ms`);
    case 'response':
      return new WedgeError('WEDGE_ERR_ORIGIN_TIMEOUT', `no response byte moved for ${timeouts.responseTimeoutMs} ms`);
  }
}

export class Deadlines {
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private current: Deadline | undefined;
  private since = 0;
  private clientAt = 0;
  private originAt = 0;
  private hidden: number | undefined;
  private stopped = false;

  constructor(
    private readonly timeouts: Timeouts,
    private readonly watched: Watched,
    private readonly expired: (deadline: Deadline, error: WedgeError | undefined) => void,
    private readonly guard: (handle: () => void) => void,
  ) {}

  client(): void {
    this.clientAt = Date.now();
  }

  origin(): void {
    this.originAt = Date.now();
  }

  /* What the connection waits for may have changed. */
  update(): void {
    if (this.stopped) return;
    const now = Date.now();
    this.observe(now);
    if (this.current) this.arm(this.dueAt(), now);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private observe(now: number): void {
    const waiting = waitingOf(this.watched);
    if (waiting?.deadline !== this.current) {
      this.current = waiting?.deadline;
      this.since = now;
      this.hidden = waiting?.hiddenProgress;
    } else if (waiting?.hiddenProgress !== this.hidden) {
      this.hidden = waiting?.hiddenProgress;
      this.originAt = now;
    }
  }

  /* Closing, with bytes still queued for the client: not idle yet. */
  private draining(): boolean {
    return this.watched.lifecycle.state === 'closing' && this.watched.client.writableLength > 0;
  }

  private dueAt(): number {
    const { idleTimeoutMs, headerTimeoutMs, bodyTimeoutMs, responseTimeoutMs } = this.timeouts;
    switch (this.current!) {
      case 'idle':
        return this.since + idleTimeoutMs;
      case 'header':
        return this.since + headerTimeoutMs;
      case 'body':
        return Math.max(this.since, this.clientAt) + bodyTimeoutMs;
      case 'response':
        return Math.max(this.since, this.originAt) + responseTimeoutMs;
    }
  }

  private arm(at: number, now: number): void {
    if (this.timer && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.guard(() => this.fire()), Math.max(0, at - now));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.stopped) return;
    const now = Date.now();
    this.observe(now);
    const deadline = this.current;
    if (!deadline) return;
    const due = this.dueAt();
    if (now < due || this.draining()) {
      this.arm(now < due ? due : now + this.timeouts.idleTimeoutMs, now);
      return;
    }
    this.current = undefined;
    this.expired(deadline, errorOf(deadline, this.timeouts));
    this.update();
  }
}
