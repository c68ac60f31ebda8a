import { addon, type RawProbeAnswer } from './addon.js';

/* Asking the client's kernel where the stream stands (see native/src/probe.cc). */

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

export interface ProbeOptions {
  /** Wait per attempt, ms (default 200). */
  timeoutMs?: number;
  /** Attempts after the first (default 3). */
  retries?: number;
  /** Capture only on this interface (default: all). */
  ifname?: string;
  /** Sequence number of the probe's byte; must be old for the client (default sendSeq - 1, the SYN's slot). */
  oldSeq?: number;
  /** Acknowledgment number of the probe (default recvSeq). */
  ack?: number;
}

export type ProbeAnswer = RawProbeAnswer;

const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 3;

/**
 * Makes the client's kernel reveal its next expected byte and its own send sequence. Holds a
 * silent placeholder socket for the 4-tuple meanwhile, so this host must own localAddress.
 * Rejects with NativeError: ETIMEDOUT (no answer after all attempts), ECONNRESET (the client
 * answered RST: its socket is gone), or the failing syscall.
 */
export function probe(target: ProbeTarget, options: ProbeOptions = {}): Promise<ProbeAnswer> {
  return addon.probe({
    localAddress: target.localAddress,
    localPort: target.localPort,
    remoteAddress: target.remoteAddress,
    remotePort: target.remotePort,
    seq: options.oldSeq ?? (target.sendSeq - 1) >>> 0,
    ack: options.ack ?? target.recvSeq,
    ifname: options.ifname ?? '',
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    retries: options.retries ?? DEFAULT_RETRIES,
  });
}

/** Offset in the server-to-client stream (counted from sendSeq) of the client's next wanted byte. */
export function resumeOffset(target: Pick<ProbeTarget, 'sendSeq'>, answer: Pick<ProbeAnswer, 'ack'>): number {
  return (answer.ack - target.sendSeq) >>> 0;
}
