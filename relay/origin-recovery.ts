/*
 * Theory of operation: finishing a response whose origin dropped it mid-body.
 *
 * In: a failure of the exchange in progress after its response began (the origin closed or reset
 * mid-body, its socket failed, a kernel splice came up short, or the response stalled for
 * --response-timeout while the client was reading), the connection's stream map and position.
 * Out: either a resume step, started later through the host (the same Range + If-Range request a
 * takeover sends, relay/resume.ts, checked to be the 206 of the same representation), or the
 * abort reason to reset the client with; a count per recovery, wedge_origin_resumes_total
 * {source, result}; one JSON log line per attempt and per outcome.
 *
 *   local   the local origin again, after 50 ms, then backing off to 500 ms, for at most
 *           retryMs from the failure (Apache restarting, a worker killed, the built-in origin
 *           restarted: it answers again within a second or two)
 *   peer    then each live peer's origin once, through that peer's wedge on its cluster address
 *           (daemon/peer-range.ts; the request is signed with the cluster key)
 *   give up origin-lost (nobody answered), or representation-changed (someone answered, but not
 *           with the rest of the same representation: the file changed everywhere)
 *
 * A recovery that made progress and fails again starts over (a second restart mid-download is a
 * new failure). Only resumable responses (GET, 200/206, Content-Length, strong validator:
 * stream-map/stream-map.ts) are recovered; anything else is reset as before. Bounded: one timer
 * per connection at most, retryMs plus one attempt per peer.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AbortReason } from '../errors/reasons.js';
import { progress, socketFd } from '../native/index.js';
import type { ResumeStep } from '../stream-map/resume-plan.js';
import type { StreamMap } from '../stream-map/stream-map.js';

/* Failures after which the rest of the body may still come from an origin. */
const RECOVERABLE: ReadonlySet<AbortReason> = new Set(['origin-error', 'origin-closed-early', 'origin-closed-mid-body', 'response-timeout', 'representation-changed']);
const FIRST_RETRY_MS = 50;
const MAX_RETRY_MS = 500;

export type RecoverySource = 'local' | 'peer';
export type RecoveryResult = 'resumed' | 'origin-lost' | 'representation-changed';

/* A peer replica's origin, reached through its wedge (daemon/peer-range.ts). */
export interface PeerOrigin {
  name: string;
  endpoint: { host: string; port: number };
  /* The header lines that authorise `request` (a range request) at that peer. */
  authorize(request: Buffer): Buffer;
}

export interface RecoveryOptions {
  /* How long the local origin may stay away before the peers are asked. */
  retryMs: number;
  /* The live peers' origins, asked in order when the local origin stays away. */
  peers(): PeerOrigin[];
  counted(source: RecoverySource, result: RecoveryResult): void;
}

/* What recovery needs of its connection. */
export interface RecoveryHost {
  readonly client: Socket;
  readonly streamMap: StreamMap;
  bytesToClient(): number;
  guard(handle: () => void): void;
  /* Start `step` now, at the local origin or (`via`) a peer's. */
  resume(step: ResumeStep, via: PeerOrigin | undefined): void;
}

interface Attempt {
  exchangeIndex: number;
  bodyOffset: number;
  since: number;
  delayMs: number;
  source: RecoverySource;
  /* Peers not yet asked; filled when the local origin is given up. */
  peers?: PeerOrigin[];
  changed: boolean;
}

export class OriginRecovery {
  private attempt: Attempt | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: RecoveryOptions,
    private readonly host: RecoveryHost,
    private readonly log: Logger,
  ) {}

  /* The exchange failed after its response began. Return: undefined when the rest will be asked
   * for (later, through host.resume), else the reason to reset the client with. */
  failed(reason: AbortReason, err: unknown): AbortReason | undefined {
    if (!RECOVERABLE.has(reason)) return this.giveUp(reason);
    if (reason === 'response-timeout' && this.clientBehind()) return this.giveUp(reason);
    const position = this.host.streamMap.locate(this.host.bytesToClient());
    if (position.kind !== 'body') {
      this.log.warn({ reason, position: position.kind, why: 'reason' in position ? position.reason : undefined }, 'origin dropped a response that cannot be resumed');
      return this.giveUp(reason);
    }
    const { exchange, bodyOffset } = position;
    const now = Date.now();
    let attempt = this.attempt;
    if (!attempt || attempt.exchangeIndex !== exchange.index || attempt.bodyOffset < bodyOffset) {
      attempt = { exchangeIndex: exchange.index, bodyOffset, since: now, delayMs: FIRST_RETRY_MS, source: 'local', changed: false };
      this.attempt = attempt;
      this.log.warn({ reason, err: err instanceof Error ? err.message : err, bodyOffset, bodyLength: exchange.bodyLength }, 'origin dropped the response mid-body; resuming it');
    }
    if (reason === 'representation-changed') attempt.changed = true;
    const step: ResumeStep = { exchange, headRest: Buffer.alloc(0), bodyOffset };
    // The local origin is retried until retryMs, unless it answered with something else.
    if (attempt.source === 'local' && !attempt.changed && now + attempt.delayMs - attempt.since <= this.options.retryMs) {
      this.later(attempt.delayMs, step, undefined);
      attempt.delayMs = Math.min(attempt.delayMs * 2, MAX_RETRY_MS);
      return undefined;
    }
    if (attempt.source === 'local') {
      attempt.source = 'peer';
      attempt.peers = this.options.peers();
    }
    const peer = attempt.peers?.shift();
    if (peer) {
      this.log.warn({ peer: peer.name, bodyOffset }, 'local origin away; asking a peer\'s origin for the rest');
      this.later(0, step, peer);
      return undefined;
    }
    return this.giveUp(attempt.changed ? 'representation-changed' : 'origin-lost');
  }

  /* The recovered response is complete. */
  finished(): void {
    const attempt = this.attempt;
    if (!attempt) return;
    this.attempt = undefined;
    this.options.counted(attempt.source, 'resumed');
    this.log.info({ source: attempt.source, tookMs: Date.now() - attempt.since }, 'origin resume complete');
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private giveUp(reason: AbortReason): AbortReason {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt) {
      const result: RecoveryResult = reason === 'representation-changed' ? reason : 'origin-lost';
      this.options.counted(attempt.source, result);
      this.log.warn({ source: attempt.source, result, triedMs: Date.now() - attempt.since }, 'origin resume failed');
      return result;
    }
    return reason;
  }

  private later(delayMs: number, step: ResumeStep, via: PeerOrigin | undefined): void {
    this.cancel();
    this.timer = setTimeout(() => this.host.guard(() => this.host.resume(step, via)), delayMs);
  }

  /* Bytes wait for the client (in Node's buffer or unsent in the kernel): the stall is the
   * client's, and asking an origin again would not help. */
  private clientBehind(): boolean {
    if (this.host.client.writableLength > 0) return true;
    try {
      return progress(socketFd(this.host.client)).notSent > 0;
    } catch {
      return true;
    }
  }
}
