/*
 * The relay's boundary: what a RelayConnection is given (its origin, logger, the daemon's
 * counters, the kernel splice engine, and after a takeover the adopted stream) and what it
 * reports to the observer; and the front-end limits every connection gets (RELAY_LIMITS).
 */
import type { Logger } from 'pino';
import type { WedgeErrorCode } from '../errors/codes.js';
import type { AbortReason, TakeoverAbort } from '../errors/reasons.js';
import type { ResumeStep, Snapshot } from '../stream-map/resume-plan.js';
import type { Exchange as MapExchange, StreamMap } from '../stream-map/stream-map.js';
import type { Deadline, Timeouts } from './deadlines.js';
import type { StateSlots } from './state-slots.js';
import type { PeerOrigin, RecoverySource, RecoveryResult } from './origin-recovery.js';
import type { ForwardedMode } from '../parsers/forwarded-head.js';

/* Moves `length` bytes from one socket fd to another inside the kernel. */
export interface Splicer {
  splice(fromFd: number, toFd: number, length: number): SpliceJob;
}
export interface SpliceJob {
  readonly done: Promise<{ bytes: number; eof: boolean }>;
  /* Bytes moved so far. */
  readonly bytes: number;
  cancel(): void;
}

/* What the daemon counts; kept as an interface so the relay knows nothing of Prometheus. */
export interface RelayObserver {
  request(method: string): void;
  reject(code: WedgeErrorCode): void;
  bytes(direction: 'client-to-origin' | 'origin-to-client', count: number): void;
  abort(reason: AbortReason | TakeoverAbort): void;
  spliced(count: number): void;
  /* A time limit expired (relay/deadlines.ts); what it led to is counted as a reject or abort. */
  timeout(deadline: Deadline): void;
  /* A takeover's response was restarted from the origin's snapshot (the state contract). */
  snapshotResumed?(): void;
  /* A response the origin dropped mid-body was finished from `source`, or given up (relay/origin-recovery.ts). */
  originResume?(source: RecoverySource, result: RecoveryResult): void;
}

/*
 * What a front-end must bound so that no client holds the wedge or the origin (nginx and HAProxy
 * defaults are the reference). Each is a `wedge serve` flag (cli/serve-command.ts).
 */
export interface RelayLimits extends Timeouts {
  maxHeaderBytes: number;
  /* nginx large_client_header_buffers: 8k; beyond it 414. */
  maxRequestLineBytes: number;
  /* RFC 9112 §2.2 asks to ignore at least one; a few cover every real client. */
  maxEmptyLines: number;
  /* Parsed-but-unanswered request bytes held before the wedge stops reading the client. */
  maxPipelineBytes: number;
}

export const RELAY_LIMITS: Readonly<RelayLimits> = {
  maxHeaderBytes: 16384,
  maxRequestLineBytes: 8192,
  maxEmptyLines: 4,
  maxPipelineBytes: 1 << 20,
  // HAProxy's `timeout http-request` in its examples; nginx client_header_timeout is 60 s.
  headerTimeoutMs: 10_000,
  // nginx keepalive_timeout is 75 s, client_body_timeout and proxy_read_timeout 60 s.
  idleTimeoutMs: 60_000,
  bodyTimeoutMs: 60_000,
  responseTimeoutMs: 60_000,
};

/* Client connections a server serves at once (daemon/server.ts refuses more with a 503). */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

export interface RelayOptions extends Partial<RelayLimits> {
  origin: { host: string; port: number };
  logger: Logger;
  observer: RelayObserver;
  splicer?: Splicer;
  /* Bodies shorter than this stay in JavaScript: a splice costs a few syscalls to set up. */
  spliceThreshold?: number;
  /* The state contract is on: every request to the origin carries Wedge-Exchange and Wedge-State. */
  stateSlots?: StateSlots;
  /* A connection taken over from another server, to continue where its client stands. */
  adopted?: AdoptedStream;
  /* Where the rest of a response the origin dropped mid-body comes from (relay/origin-recovery.ts). */
  originRecovery?: OriginRecoveryOptions;
  /* How the origin learns the client's address (--forwarded; default none). */
  forwarded?: ForwardedMode;
  /* The connection's name when its socket's addresses no longer say it: after a TCP Migrate the
   * socket is bound to this server's address, the client's still to the original server's. */
  id?: string;
}

export interface OriginRecoveryOptions {
  /* How long the local origin may stay away before the peers' origins are asked (--origin-retry). */
  retryMs: number;
  /* The live peers' origins, in the order to ask them. */
  peers(): PeerOrigin[];
}

/* Without --origin-retry: the local origin gets 5 s to come back (an Apache restart takes ~1 s). */
export const DEFAULT_ORIGIN_RECOVERY: OriginRecoveryOptions = { retryMs: 5000, peers: () => [] };

/* The state of a taken-over connection at the point the client has reached (stream-map/resume-plan.ts). */
export interface AdoptedStream {
  streamMap: StreamMap;
  bytesFromClient: number;
  bytesToClient: number;
  steps: ResumeStep[];
  replay: MapExchange[];
  /* The client had already sent its FIN: serve what is planned, then close. */
  clientFinished: boolean;
  /* The origin's latest snapshot in the record (state contract), carried on here. */
  snapshot?: Snapshot;
  /* Handed over in place (the same kernel socket): where its acknowledgement count starts, and
   * the client's bytes the old process had read but not parsed yet. */
  ackBase?: number;
  pending?: Buffer;
}
