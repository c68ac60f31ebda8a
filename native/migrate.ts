import { addon, type RawCapturedSyn, type RawMigrateCapture } from './addon.js';
import type { NativeError } from './errors.js';

/*
 * Theory of operation: TCP Migrate's raw packets (see native/src/migrate.cc).
 *
 * sendTcpSegment sends one hand-built IPv4/TCP segment from any local or adopted address: the
 * candidate server's Migrate SYN (options from migrate/option.ts) and the agent's SYN-ACK
 * and RST answers. MigrateSynCapture delivers every SYN to `address` whose first TCP option is
 * kind 253 with the given ExID, from a native thread, so the event loop never waits; the agent
 * parses and verifies the option bytes itself. SynAckCapture delivers, the same way, every
 * SYN-ACK to `address` from one of the given ports: how the agent learns new connections. All
 * need CAP_NET_RAW.
 */

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export interface TcpSegment {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  seq: number;
  ack: number;
  /** TCP flag bits (TCP_SYN | TCP_ACK, ...). */
  flags: number;
  /** Unscaled window field (default 65535). */
  window?: number;
  /** TCP option bytes, a multiple of 4, at most 40 (default none). */
  options?: Buffer;
  /** SO_MARK the segment leaves with (default none). */
  mark?: number;
}

/** Sends one segment through a raw socket; throws NativeError if the kernel refuses it. */
export function sendTcpSegment(segment: TcpSegment): void {
  addon.sendTcpSegment({
    localAddress: segment.localAddress,
    localPort: segment.localPort,
    remoteAddress: segment.remoteAddress,
    remotePort: segment.remotePort,
    seq: segment.seq >>> 0,
    ack: segment.ack >>> 0,
    flags: segment.flags,
    window: segment.window ?? 0xffff,
    options: segment.options ?? Buffer.alloc(0),
    ...(segment.mark ? { mark: segment.mark } : {}),
  });
}

/** A TCP segment one of the agent's captures delivered. */
export type CapturedSegment = RawCapturedSyn;
export type CapturedSyn = CapturedSegment;

type RawDelivery = (error: NativeError | null, segment: CapturedSegment | null) => void;

/** A running capture thread; stop() ends it (and lets the process exit). */
export class SegmentCapture {
  private running = true;
  private readonly handle: RawMigrateCapture;

  /** Throws NativeError if the socket cannot be opened (EPERM: no CAP_NET_RAW). */
  protected constructor(open: (deliver: RawDelivery) => RawMigrateCapture, onSegment: (segment: CapturedSegment) => void, onError: (error: NativeError) => void) {
    this.handle = open((error, segment) => {
      // Segments already queued when stop() ran still arrive; they are no longer wanted.
      if (!this.running) return;
      if (error) onError(error);
      else if (segment) onSegment(segment);
    });
  }

  /** Segments dropped because JS fell behind (the native queue is bounded). */
  get dropped(): number {
    return this.handle.dropped();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.handle.stop();
  }
}

export interface MigrateCaptureOptions {
  /** The IPv4 address whose incoming Migrate SYNs to capture (the client's). */
  address: string;
  /** The Migrate option's ExID. */
  exid: number;
  /** Capture only on this interface (default: all). */
  ifname?: string;
}

/** Migrate SYNs to the client: onSyn gets each one, onError the failure that ended the capture. */
export class MigrateSynCapture extends SegmentCapture {
  static start(options: MigrateCaptureOptions, onSyn: (syn: CapturedSyn) => void, onError: (error: NativeError) => void): MigrateSynCapture {
    return new MigrateSynCapture((deliver) => addon.captureMigrateSyns({ address: options.address, ifname: options.ifname ?? '', exid: options.exid }, deliver), onSyn, onError);
  }
}

export interface SynAckCaptureOptions {
  /** The IPv4 address whose incoming SYN-ACKs to capture (the client's). */
  address: string;
  /** Only SYN-ACKs from these source ports (the services' TCP ports; 1 to 64 of them). */
  ports: number[];
  /** Capture only on this interface (default: all). */
  ifname?: string;
}

/** The servers' SYN-ACKs to the client, i.e. every new connection to a service port. */
export class SynAckCapture extends SegmentCapture {
  static start(options: SynAckCaptureOptions, onSynAck: (synAck: CapturedSegment) => void, onError: (error: NativeError) => void): SynAckCapture {
    return new SynAckCapture((deliver) => addon.captureSynAcks({ address: options.address, ifname: options.ifname ?? '', ports: options.ports }, deliver), onSynAck, onError);
  }
}
