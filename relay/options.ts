/*
 * The relay's boundary: what a RelayConnection is given (its origin, logger, the daemon's
 * counters, the kernel splice engine, and after a takeover the adopted stream) and what it
 * reports to the observer.
 */
import type { Logger } from 'pino';
import type { WedgeErrorCode } from '../errors/codes.js';
import type { AbortReason, TakeoverAbort } from '../errors/reasons.js';
import type { ResumeStep } from '../stream-map/resume-plan.js';
import type { Exchange as MapExchange, StreamMap } from '../stream-map/stream-map.js';

/* Moves `length` bytes from one socket fd to another inside the kernel. */
export interface Splicer {
  splice(fromFd: number, toFd: number, length: number): SpliceJob;
}
export interface SpliceJob {
  readonly done: Promise<{ bytes: number; eof: boolean }>;
  cancel(): void;
}

/* What the daemon counts; kept as an interface so the relay knows nothing of Prometheus. */
export interface RelayObserver {
  request(method: string): void;
  reject(code: WedgeErrorCode): void;
  bytes(direction: 'client-to-origin' | 'origin-to-client', count: number): void;
  abort(reason: AbortReason | TakeoverAbort): void;
  spliced(count: number): void;
}

export interface RelayOptions {
  origin: { host: string; port: number };
  logger: Logger;
  observer: RelayObserver;
  splicer?: Splicer;
  maxHeaderBytes?: number;
  /* Parsed-but-unanswered request bytes held before the wedge stops reading the client. */
  maxPipelineBytes?: number;
  /* Bodies shorter than this stay in JavaScript: a splice costs a few syscalls to set up. */
  spliceThreshold?: number;
  /* A connection taken over from another server, to continue where its client stands. */
  adopted?: AdoptedStream;
  /* The connection's name when its socket's addresses no longer say it: after a TCP Migrate the
   * socket is bound to this server's address, the client's still to the original server's. */
  id?: string;
}

/* The state of a taken-over connection at the point the client has reached (stream-map/resume-plan.ts). */
export interface AdoptedStream {
  streamMap: StreamMap;
  bytesFromClient: number;
  bytesToClient: number;
  steps: ResumeStep[];
  replay: MapExchange[];
  /* The client had already sent its FIN: serve what is planned, then close. */
  clientFinished: boolean;
}
