import { addon, type RawProbeAnswer, type RawProbeBatch, type RawProbeTarget } from './addon.js';
import { NativeError } from './errors.js';

/* Asking clients' kernels where their streams stand (see native/src/probe.cc). */

/** The connection to probe, from the server's side; a ConnectionDump fits. */
export interface ProbeTarget {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** The server's anchor send sequence (ISN+1). */
  sendSeq: number;
  /** The client's sequence the server has acknowledged. */
  recvSeq: number;
}

/** Where one connection's probe segment sits in its sequence spaces. */
export interface ProbeSequence {
  /** Sequence number of the probe's byte; must be old for the client (default sendSeq - 1, the SYN's slot). */
  oldSeq?: number;
  /** Acknowledgment number of the probe (default recvSeq). */
  ack?: number;
}

/**
 * TCP Migrate: the SYN that asks the client's agent to move the connection to localAddress
 * before the probe (see migrate/option.ts for what seq, ack and options carry).
 */
export interface MigrateSynRequest {
  seq: number;
  ack: number;
  /** TCP option bytes (the Migrate option first), a multiple of 4, at most 40. */
  options: Buffer;
}

/** One connection of a probeMany() batch. */
export type ProbeRequest = ProbeTarget & ProbeSequence & { migrateSyn?: MigrateSynRequest };

/** Shared by every connection of a batch. */
export interface ProbeBatchOptions {
  /** Wait per attempt, ms (default 200). */
  timeoutMs?: number;
  /** Attempts after the first, for the connections still unanswered (default 3). */
  retries?: number;
  /** Capture only on this interface (default: all). */
  ifname?: string;
}

export type ProbeOptions = ProbeBatchOptions & ProbeSequence;

export type ProbeAnswer = RawProbeAnswer;

/** A connection's probe result: its answer, or the NativeError saying why there is none. */
export type ProbeResult = ProbeAnswer | NativeError;

const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 3;

/**
 * Probes many connections at once, on one worker thread with one capture and one raw socket:
 * every client's kernel reveals its next expected byte and its own send sequence. Holds a silent
 * placeholder socket per 4-tuple meanwhile, so this host must own each localAddress. A request
 * with a migrateSyn first sends that SYN and probes once the client's agent accepted it (its
 * answer then has moveMs). Resolves with one result per request, in order; a failed
 * connection's NativeError says ETIMEDOUT (no answer after all attempts), ECONNRESET (the client
 * answered RST: its socket is gone), ECONNREFUSED (the agent refused the Migrate SYN), or the
 * failing syscall. Never rejects for a connection's failure.
 */
export function probeMany(requests: readonly ProbeRequest[], options: ProbeBatchOptions = {}): Promise<ProbeResult[]> {
  return addon.probeMany(rawProbeBatch(requests.map(rawProbeTarget), options)) as Promise<ProbeResult[]>;
}

/**
 * probeMany() of connections whose 4-tuples are live sockets of this host (a re-probe of
 * connections served here): no placeholder is held, the socket itself keeps our kernel from
 * answering with RST. The answer is the client's first ACK after the probe.
 */
export function probeLive(requests: readonly ProbeRequest[], options: ProbeBatchOptions = {}): Promise<ProbeResult[]> {
  return addon.probeMany(rawProbeBatch(requests.map((r) => ({ ...rawProbeTarget(r), live: true })), options)) as Promise<ProbeResult[]>;
}

/** The addon's batch (shared with probeAndRestore()). */
export function rawProbeBatch(targets: RawProbeTarget[], options: ProbeBatchOptions): RawProbeBatch {
  return { ifname: options.ifname ?? '', timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, retries: options.retries ?? DEFAULT_RETRIES, targets };
}

export function rawProbeTarget(request: ProbeRequest): RawProbeTarget {
  return {
    localAddress: request.localAddress,
    localPort: request.localPort,
    remoteAddress: request.remoteAddress,
    remotePort: request.remotePort,
    seq: request.oldSeq ?? (request.sendSeq - 1) >>> 0,
    ack: request.ack ?? request.recvSeq,
    ...(request.migrateSyn ? { migrateSyn: { seq: request.migrateSyn.seq >>> 0, ack: request.migrateSyn.ack >>> 0, options: request.migrateSyn.options } } : {}),
  };
}

/** One connection's probe (a batch of one): rejects with the NativeError probeMany() would report. */
export async function probe(target: ProbeTarget, options: ProbeOptions = {}): Promise<ProbeAnswer> {
  const { oldSeq, ack, ...batch } = options;
  const [result] = await probeMany([{ ...target, oldSeq, ack }], batch);
  if (result instanceof NativeError) throw result;
  return result;
}

