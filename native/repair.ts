import { closeSync } from 'node:fs';
import type net from 'node:net';
import { addon, type RawDump, type RawRestoreBase } from './addon.js';
import { NativeError } from './errors.js';
import type { ProbeAnswer } from './probe.js';

/* TCP_REPAIR in TypeScript terms: what a connection's transport state is (dump), how to
 * rebuild it elsewhere (restore), and how to let a connection go without a word (quietClose).
 * Which sequence numbers, clock and window a rebuilt socket gets is decided in C++
 * (native/src/repair.cc SpecFor); this side passes the record, the answer and the options. */

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
  /** SO_MARK for the new socket (its segments, resets included, carry it); 0 or absent: none. */
  mark?: number;
}

export const DEFAULT_TIMESTAMP_MARGIN_MS = 1000;

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

/** What a restore takes from the recorded connection and the options (the addon's RestoreBase). */
export function restoreBase(dump: ConnectionDump, options: RestoreOptions = {}): RawRestoreBase {
  return {
    mss: dump.mss,
    windowScaling: dump.windowScaling,
    sndWscale: dump.sndWscale,
    rcvWscale: dump.rcvWscale,
    sack: dump.sack,
    timestamps: dump.timestamps,
    timestamp: dump.timestamp,
    clockReadAt: dump.clockReadAt,
    maxWindow: dump.window.maxWindow,
    rcvWnd: dump.window.rcvWnd,
    timestampMarginMs: options.timestampMarginMs ?? DEFAULT_TIMESTAMP_MARGIN_MS,
    mark: options.mark ?? 0,
  };
}

/**
 * Rebuilds the connection described by `dump` at the point the client's `answer` reports, on
 * this host (which must own dump.localAddress): sending from answer.ack, expecting answer.seq,
 * with the timestamp clock carried to now. Returns a non-blocking fd for
 * `new net.Socket({ fd, readable: true, writable: true })`; the next byte written goes to
 * stream offset (answer.ack - dump.sendSeq) mod 2^32 of the old server's stream.
 */
export function restore(dump: ConnectionDump, answer: ProbeAnswer, options: RestoreOptions = {}): number {
  return addon.restore(dump, restoreBase(dump, options), answer);
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
