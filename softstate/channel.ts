/*
 * The two ends of the soft-state channel, without sockets: Outbox turns records, heartbeats
 * and notices into sealed datagrams that each fit the MTU budget; Inbox turns any received
 * byte string into a message or a counted rejection.
 *
 * Budget: `mtu` is the UDP payload allowed per datagram (default 1400, below a 1500-byte
 * Ethernet MTU with room for IP/UDP headers and tunnels). The plaintext budget is the MTU less
 * the crypto header and tag, computed once for our sender id.
 *
 * Inbox order of checks, cheapest first: size, header, own sender id, replay pre-check, key, GCM
 * authentication, replay commit, decoding, fragment reassembly. A datagram is counted in
 * exactly one `rejected` reason or accepted.
 */
import {
  decodeFrame,
  decodeItem,
  encodeDeathNotice,
  encodeHeartbeat,
  encodeItem,
  MAX_FRAGMENTS_LIMIT,
  maxItemBytes,
  packAdverts,
  Reassembler,
  type AdvertItem,
  type ReassemblerOptions,
} from './codec.js';
import {
  DatagramOpener,
  DatagramSealer,
  datagramOverhead,
  epochHex,
  parseHeader,
  ReplayGuard,
  type KeyRing,
  type RejectReason,
} from './crypto.js';
import type { DeathNotice, Heartbeat, ServiceClaim } from './records.js';
import { WedgeError } from '../errors/codes.js';

export const DEFAULT_MTU = 1400;
export const DEFAULT_MAX_FRAGMENTS = 32;

export type Rejection =
  | RejectReason
  | 'garbled'
  | 'too-large'
  | 'own'
  | 'duplicate-fragment'
  | 'wrong-group'
  | 'owner-mismatch'
  | 'sender-mismatch';

export interface Origin {
  sender: string;
  epoch: bigint;
  seq: number;
}

export type InboundMessage =
  | ({ kind: 'advert'; items: AdvertItem[] } & Origin)
  | ({ kind: 'heartbeat'; heartbeat: Heartbeat } & Origin)
  | ({ kind: 'death'; notice: DeathNotice } & Origin);

export interface OutboxOptions {
  ring: KeyRing;
  self: string;
  epoch?: bigint;
  /* With `epoch`: the sequence number the same sender sealed last (an in-place upgrade). */
  lastSeq?: number;
  mtu?: number;
  maxFragments?: number;
}

export class Outbox {
  readonly mtu: number;
  readonly maxPayload: number;
  readonly maxFragments: number;
  private readonly sealer: DatagramSealer;
  private messageId = Math.floor(Math.random() * 0x1_0000_0000);

  constructor(options: OutboxOptions) {
    this.sealer = new DatagramSealer(options.ring, options.self, options.epoch, options.lastSeq);
    this.mtu = options.mtu ?? DEFAULT_MTU;
    this.maxFragments = Math.min(options.maxFragments ?? DEFAULT_MAX_FRAGMENTS, MAX_FRAGMENTS_LIMIT);
    this.maxPayload = this.mtu - datagramOverhead(options.self);
    if (this.maxPayload < 64) throw new WedgeError('WEDGE_ERR_CONFIG', `soft-state mtu ${this.mtu} leaves no room for payload`);
  }

  get epoch(): bigint {
    return this.sealer.epoch;
  }

  get epochHex(): string {
    return epochHex(this.sealer.epoch);
  }

  get lastSeq(): number {
    return this.sealer.lastSeq;
  }

  /* Largest encoded item (record) that can still be sent, fragmented. */
  get maxItemBytes(): number {
    return maxItemBytes(this.maxPayload, this.maxFragments);
  }

  setKeyRing(ring: KeyRing): void {
    this.sealer.setKeyRing(ring);
  }

  encodeItem(item: AdvertItem): Buffer {
    return encodeItem(item);
  }

  /* Packs already-encoded items into plaintext frames (one per datagram, to be sealed);
   * `refused` lists items too large to send. */
  advertFrames(encoded: readonly Buffer[]): { frames: Buffer[]; refused: number[]; fragments: number } {
    return packAdverts(encoded, {
      maxPayload: this.maxPayload,
      maxFragments: this.maxFragments,
      nextMessageId: () => (this.messageId = (this.messageId + 1) >>> 0),
    });
  }

  heartbeatFrame(load: Heartbeat['load'], services: ServiceClaim[] = []): Buffer {
    return encodeHeartbeat({ sender: this.sealer.sender, epoch: this.epochHex, load, services });
  }

  noticeFrame(notice: DeathNotice): Buffer {
    return encodeDeathNotice(notice);
  }

  seal(frame: Buffer): Buffer {
    return this.sealer.seal(frame);
  }

  /* Sealed forms of the above, for senders that seal where they pack. */
  adverts(encoded: readonly Buffer[]): { datagrams: Buffer[]; refused: number[]; fragments: number } {
    const packed = this.advertFrames(encoded);
    return { datagrams: packed.frames.map((f) => this.seal(f)), refused: packed.refused, fragments: packed.fragments };
  }

  heartbeat(load: Heartbeat['load'], services: ServiceClaim[] = []): Buffer {
    return this.seal(this.heartbeatFrame(load, services));
  }

  notice(notice: DeathNotice): Buffer {
    return this.seal(this.noticeFrame(notice));
  }
}

export interface InboxOptions {
  ring: KeyRing;
  self: string;
  /* Datagrams larger than this are refused unread (default: the MTU). */
  maxDatagram?: number;
  reassembly?: ReassemblerOptions;
  replayWindow?: number;
}

export class Inbox {
  readonly rejected: Partial<Record<Rejection, number>> = {};
  /* Datagrams that yielded a message, and fragments held for reassembly. */
  accepted = 0;
  fragmentsPending = 0;
  readonly reassembler: Reassembler;
  private readonly opener: DatagramOpener;
  private readonly self: string;
  private readonly maxDatagram: number;

  constructor(options: InboxOptions) {
    this.self = options.self;
    this.maxDatagram = options.maxDatagram ?? DEFAULT_MTU;
    this.opener = new DatagramOpener(options.ring, new ReplayGuard({ windowSize: options.replayWindow ?? 64 }));
    this.reassembler = new Reassembler(options.reassembly);
  }

  get replayGuard(): ReplayGuard {
    return this.opener.guard;
  }

  setKeyRing(ring: KeyRing): void {
    this.opener.setKeyRing(ring);
  }

  private accept(message: InboundMessage): InboundMessage {
    this.accepted++;
    return message;
  }

  reject(reason: Rejection): undefined {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    return undefined;
  }

  /* Returns the message a datagram carries, or undefined (rejected and counted, or a fragment
   * of an item not yet complete). Never throws. */
  receive(datagram: Uint8Array, now = Date.now()): InboundMessage | undefined {
    if (datagram.length > this.maxDatagram) return this.reject('too-large');
    // Our own datagrams (multicast loop on) are dropped before any crypto work; a forged one
    // claiming our id is dropped too, which is what it deserves.
    const header = parseHeader(datagram);
    if (header.ok && header.header.sender === this.self) return this.reject('own');
    const opened = this.opener.open(datagram, now);
    if (!opened.ok) return this.reject(opened.reason);
    const origin: Origin = { sender: opened.header.sender, epoch: opened.header.epoch, seq: opened.header.seq };
    const decoded = decodeFrame(opened.plaintext);
    if (!decoded.ok) return this.reject(decoded.reason);
    const frame = decoded.value;
    switch (frame.kind) {
      case 'advert':
        return this.accept({ kind: 'advert', items: frame.items, ...origin });
      case 'heartbeat':
        if (frame.heartbeat.sender !== origin.sender || frame.heartbeat.epoch !== epochHex(origin.epoch)) {
          return this.reject('sender-mismatch');
        }
        return this.accept({ kind: 'heartbeat', heartbeat: frame.heartbeat, ...origin });
      case 'death':
        if (frame.notice.declarer !== origin.sender) return this.reject('sender-mismatch');
        return this.accept({ kind: 'death', notice: frame.notice, ...origin });
      case 'fragment': {
        const source = `${origin.sender}/${origin.epoch}`;
        const result = this.reassembler.add(source, frame, now);
        if (result.status === 'pending') {
          this.fragmentsPending++;
          return undefined;
        }
        if (result.status === 'rejected') return this.reject(result.reason === 'duplicate' ? 'duplicate-fragment' : 'garbled');
        const item = decodeItem(result.bytes);
        if (!item.ok) return this.reject('garbled');
        return this.accept({ kind: 'advert', items: [item.value], ...origin });
      }
    }
  }
}
