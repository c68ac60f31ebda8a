import { closeSync } from 'node:fs';
import type net from 'node:net';
import { addon, type RawDump, type RawRestoreSpec } from './addon.js';
import { NativeError } from './errors.js';
import type { ProbeAnswer } from './probe.js';

/* TCP_REPAIR in TypeScript terms: what a connection's transport state is (dump), how to
 * rebuild it elsewhere (restore), and how to let a connection go without a word (quietClose).
 * The policy lives here: which sequence numbers, clock and window the new socket gets. */

/** Transport state of a live connection, as read by dump(). Sequence numbers are uint32. */
export interface ConnectionDump extends RawDump {
  /** Next byte this side will send: ISN+1 plus every byte written so far. */
  sendSeq: number;
  /** Next byte this side expects from the peer (rcv_nxt). */
  recvSeq: number;
  /** TCP timestamp clock of the socket when read (ms units; odd on a µs-clock socket). */
  timestamp: number;
  /** Wall clock (ms since the epoch) at which `timestamp` was read. */
  clockReadAt: number;
  /** The peer's MSS (what TCP_REPAIR_OPTIONS wants). */
  mss: number;
  /** Shift applied to windows the peer advertises. */
  sndWscale: number;
  /** Shift the peer applies to windows we advertise. */
  rcvWscale: number;
}

export interface RestoreOptions {
  /** Added to the extrapolated timestamp clock so the client's PAWS check never sees it go back. */
  timestampMarginMs?: number;
  /** Wall clock now, ms since the epoch (default Date.now()). */
  now?: number;
  /** SO_MARK for the new socket (its segments, resets included, carry it); 0 or absent: none. */
  mark?: number;
}

export const DEFAULT_TIMESTAMP_MARGIN_MS = 1000;
const FALLBACK_RECEIVE_WINDOW = 65535;

/** The OS file descriptor under a connected net.Socket. */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new NativeError('socket has no file descriptor', 'fd', 9, 'EBADF');
  return fd;
}

/** Reads the transport state of a live TCP socket (IPv4) without disturbing the stream. */
export function dump(fd: number): ConnectionDump {
  return addon.dump(fd);
}

/** The old server's timestamp clock carried to now, plus a margin; even, so the kernel keeps ms units. */
export function extrapolateClock(dump: ConnectionDump, now: number, marginMs: number): number {
  const elapsed = Math.max(0, Math.ceil(now - dump.clockReadAt));
  return ((dump.timestamp + elapsed + marginMs) & ~1) >>> 0;
}

/** What restore() sets: sequences from the client's answer, options and window from both.
 * (probeAndRestore() applies the same policy in native/src/repair.cc SpecFor.) */
export function restoreSpec(dump: ConnectionDump, answer: ProbeAnswer, options: RestoreOptions = {}): RawRestoreSpec {
  const sndWnd = answer.window * 2 ** (dump.windowScaling ? dump.sndWscale : 0);
  return {
    localAddress: dump.localAddress,
    localPort: dump.localPort,
    remoteAddress: dump.remoteAddress,
    remotePort: dump.remotePort,
    sendSeq: answer.ack,
    recvSeq: answer.seq,
    mss: dump.mss,
    windowScaling: dump.windowScaling,
    sndWscale: dump.sndWscale,
    rcvWscale: dump.rcvWscale,
    sack: dump.sack,
    timestamps: dump.timestamps,
    timestamp: extrapolateClock(dump, options.now ?? Date.now(), options.timestampMarginMs ?? DEFAULT_TIMESTAMP_MARGIN_MS),
    ...(options.mark ? { mark: options.mark } : {}),
    window: {
      sndWl1: answer.seq,
      sndWnd,
      maxWindow: Math.max(sndWnd, dump.window.maxWindow),
      rcvWnd: dump.window.rcvWnd || FALLBACK_RECEIVE_WINDOW,
      rcvWup: answer.seq,
    },
  };
}

/**
 * Rebuilds the connection described by `dump` at the point the client's `answer` reports, on
 * this host (which must own dump.localAddress). Returns a non-blocking fd for
 * `new net.Socket({ fd, readable: true, writable: true })`; the next byte written goes to
 * stream offset (answer.ack - dump.sendSeq) mod 2^32 of the old server's stream.
 */
export function restore(dump: ConnectionDump, answer: ProbeAnswer, options: RestoreOptions = {}): number {
  return addon.restore(restoreSpec(dump, answer, options));
}

/** Puts a socket in or out of TCP_REPAIR mode (needs CAP_NET_ADMIN). */
export function setRepair(fd: number, on: boolean): void {
  addon.setRepair(fd, on);
}

/** Drops a connection without sending anything (no FIN, no RST) and destroys the socket. */
export function quietClose(socket: net.Socket): void {
  try {
    setRepair(socketFd(socket), true);
  } finally {
    socket.destroy();
  }
}

/** quietClose() for a bare fd (a restored socket not wrapped in a net.Socket). */
export function closeQuietly(fd: number): void {
  try {
    setRepair(fd, true);
  } finally {
    closeSync(fd);
  }
}
