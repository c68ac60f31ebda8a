/*
 * Datagram protection for soft state: AES-256-GCM with the cluster key, replay protection.
 *
 * Soft state holds TCP Migrate keys, URLs and sequence numbers: a forged or replayed advert
 * could make a server write into a stranger's connection. So every datagram is
 *
 *   magic "WS" | version u8 | key id u8 | sender length u8 | sender (ASCII)
 *   | epoch u64 | seq u64 | nonce (12 random bytes) | ciphertext | GCM tag (16)
 *
 * with the whole header authenticated as AAD. The nonce is random (not derived from
 * sender/epoch/seq) so that two senders that happen to share an epoch can never reuse one;
 * 2^32 datagrams per key keeps the collision risk negligible, and keys rotate long before.
 *
 * Key rotation uses a key ring: each key has a one-byte id, the sender seals with the newest,
 * receivers open with whichever id the header names.
 *
 * Replay protection per sender: the epoch is the sender's boot time (ms, with 16 random low
 * bits), the sequence increases by one per datagram. A receiver keeps, per sender, the current
 * epoch, the highest sequence and a 64-entry bitmap below it. A datagram is accepted once; one
 * older than the window is refused ("stale"), since it cannot be told from a replay. A higher
 * epoch (sender restarted) replaces the old one, but only after the datagram authenticates; a
 * lower epoch is refused, so a recorded datagram from a sender's previous life cannot be
 * replayed after its restart. That relies on the sender's wall clock not stepping back across
 * a restart; receivers forget a silent sender after `forgetAfterMs`, which bounds the
 * lock-out if it does.
 *
 * Nothing here throws on received bytes: openDatagram returns a typed rejection.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WedgeError } from '../errors/codes.js';
import { isAddress } from './records.js';

export const WIRE_VERSION = 1;
export const KEY_BYTES = 32;
const MAGIC = 0x5753; // "WS"
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const FIXED_HEADER_BYTES = 2 + 1 + 1 + 1 + 8 + 8 + NONCE_BYTES;

export type RejectReason =
  | 'truncated'
  | 'bad-magic'
  | 'bad-version'
  | 'bad-sender'
  | 'unknown-key'
  | 'auth-failed'
  | 'replay'
  | 'stale'
  | 'stale-epoch';

export interface KeyRing {
  /* Id the sender seals with: the newest key. */
  current: number;
  keys: ReadonlyMap<number, Buffer>;
}

export interface DatagramHeader {
  version: number;
  keyId: number;
  sender: string;
  epoch: bigint;
  seq: number;
}

export type OpenResult = { ok: true; header: DatagramHeader; plaintext: Buffer } | { ok: false; reason: RejectReason };

/* Bytes a datagram adds to its plaintext for this sender. */
export function datagramOverhead(sender: string): number {
  return FIXED_HEADER_BYTES + Buffer.byteLength(sender) + TAG_BYTES;
}

/* A fresh epoch: boot time in ms shifted left 16 bits, with 16 random bits below. */
export function newEpoch(now = Date.now()): bigint {
  return (BigInt(Math.floor(now)) << 16n) | BigInt(randomInt(0x10000));
}

export function epochHex(epoch: bigint): string {
  return epoch.toString(16).padStart(16, '0');
}

/*
 * Key material: one key per line (or comma-separated), oldest first, the last one newest.
 * A key is 64 hex digits, optionally prefixed "<id>:" (id 1..255); without ids, keys are
 * numbered 1, 2, ... in order. A file holding exactly 32 bytes that are not such text is one
 * raw key with id 1.
 */
export function parseKeyMaterial(material: Buffer | string, source: string): KeyRing {
  const bytes = typeof material === 'string' ? Buffer.from(material, 'utf8') : material;
  const text = bytes.toString('latin1');
  if (bytes.length === KEY_BYTES && !/^[0-9a-fA-F:,\s]*$/.test(text)) {
    return { current: 1, keys: new Map([[1, Buffer.from(bytes)]]) };
  }
  const entries = text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (entries.length === 0) throw new WedgeError('WEDGE_ERR_STATE_KEY', `${source} holds no key`);
  const keys = new Map<number, Buffer>();
  let current = 0;
  entries.forEach((entry, index) => {
    const match = /^(?:(\d{1,3}):)?([0-9a-fA-F]{64})$/.exec(entry);
    if (!match) {
      throw new WedgeError(
        'WEDGE_ERR_STATE_KEY',
        `${source}: key ${index + 1} is not 64 hex digits (optionally "<id>:" before them) or 32 raw bytes`,
      );
    }
    const id = match[1] === undefined ? index + 1 : Number(match[1]);
    if (id < 1 || id > 255) throw new WedgeError('WEDGE_ERR_STATE_KEY', `${source}: key id ${id} outside 1..255`);
    if (keys.has(id)) throw new WedgeError('WEDGE_ERR_STATE_KEY', `${source}: key id ${id} appears twice`);
    keys.set(id, Buffer.from(match[2]!, 'hex'));
    current = id;
  });
  return { current, keys };
}

/* Loads the cluster key ring from `--state-key-file` or else WEDGE_STATE_KEY. */
export function loadKeyRing(options: { keyFile?: string; env?: NodeJS.ProcessEnv } = {}): KeyRing {
  if (options.keyFile !== undefined) {
    let material: Buffer;
    try {
      material = readFileSync(options.keyFile);
    } catch (err) {
      throw new WedgeError('WEDGE_ERR_STATE_KEY', `cannot read --state-key-file ${options.keyFile}`, { cause: err });
    }
    return parseKeyMaterial(material, options.keyFile);
  }
  const fromEnv = (options.env ?? process.env).WEDGE_STATE_KEY;
  if (fromEnv !== undefined && fromEnv.length > 0) return parseKeyMaterial(fromEnv, 'WEDGE_STATE_KEY');
  throw new WedgeError(
    'WEDGE_ERR_STATE_KEY',
    'no cluster key: pass --state-key-file FILE (32 raw bytes or 64 hex digits) or set WEDGE_STATE_KEY',
  );
}

function writeHeader(header: DatagramHeader, nonce: Buffer): Buffer {
  const sender = Buffer.from(header.sender, 'latin1');
  const out = Buffer.alloc(FIXED_HEADER_BYTES + sender.length);
  let at = out.writeUInt16BE(MAGIC, 0);
  at = out.writeUInt8(header.version, at);
  at = out.writeUInt8(header.keyId, at);
  at = out.writeUInt8(sender.length, at);
  at += sender.copy(out, at);
  at = out.writeBigUInt64BE(header.epoch, at);
  at = out.writeBigUInt64BE(BigInt(header.seq), at);
  nonce.copy(out, at);
  return out;
}

/* Encrypts and authenticates one datagram. */
export function sealDatagram(ring: KeyRing, from: { sender: string; epoch: bigint; seq: number }, plaintext: Uint8Array): Buffer {
  const key = ring.keys.get(ring.current);
  if (!key) throw new WedgeError('WEDGE_ERR_STATE_KEY', `current key id ${ring.current} is not in the key ring`);
  const nonce = randomBytes(NONCE_BYTES);
  const header = writeHeader({ version: WIRE_VERSION, keyId: ring.current, ...from }, nonce);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(header);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, body, cipher.getAuthTag()]);
}

export type ParsedHeader = { ok: true; header: DatagramHeader; headerBytes: number; nonce: Buffer } | { ok: false; reason: RejectReason };

/* Reads the clear-text header without any cryptographic check (for cheap early rejection). */
export function parseHeader(datagram: Uint8Array): ParsedHeader {
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (buf.length < 4) return { ok: false, reason: 'truncated' };
  if (buf.readUInt16BE(0) !== MAGIC) return { ok: false, reason: 'bad-magic' };
  const version = buf.readUInt8(2);
  if (version !== WIRE_VERSION) return { ok: false, reason: 'bad-version' };
  if (buf.length < 5) return { ok: false, reason: 'truncated' };
  const senderLength = buf.readUInt8(4);
  const headerBytes = FIXED_HEADER_BYTES + senderLength;
  if (buf.length < headerBytes + TAG_BYTES) return { ok: false, reason: 'truncated' };
  const sender = buf.toString('latin1', 5, 5 + senderLength);
  if (!isAddress(sender)) return { ok: false, reason: 'bad-sender' };
  const epoch = buf.readBigUInt64BE(5 + senderLength);
  const seq = buf.readBigUInt64BE(13 + senderLength);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: 'bad-sender' };
  const nonce = buf.subarray(21 + senderLength, headerBytes);
  return { ok: true, header: { version, keyId: buf.readUInt8(3), sender, epoch, seq: Number(seq) }, headerBytes, nonce };
}

/* Authenticates and decrypts one datagram (no replay check: see DatagramOpener). */
export function openDatagram(ring: KeyRing, datagram: Uint8Array): OpenResult {
  const parsed = parseHeader(datagram);
  if (!parsed.ok) return parsed;
  return decrypt(ring, datagram, parsed);
}

function decrypt(ring: KeyRing, datagram: Uint8Array, parsed: Extract<ParsedHeader, { ok: true }>): OpenResult {
  const key = ring.keys.get(parsed.header.keyId);
  if (!key) return { ok: false, reason: 'unknown-key' };
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, parsed.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(buf.subarray(0, parsed.headerBytes));
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    const body = decipher.update(buf.subarray(parsed.headerBytes, buf.length - TAG_BYTES));
    return { ok: true, header: parsed.header, plaintext: Buffer.concat([body, decipher.final()]) };
  } catch {
    return { ok: false, reason: 'auth-failed' };
  }
}

interface SenderWindow {
  epoch: bigint;
  highest: number;
  /* Bit i set = sequence (highest - i) seen; bit 0 is `highest` itself. */
  seen: bigint;
  lastAcceptedAt: number;
}

export interface ReplayGuardOptions {
  windowSize?: number;
  maxSenders?: number;
  forgetAfterMs?: number;
}

/* Per-sender sliding-window replay filter. check() is pure; accept() records a datagram that
 * has authenticated. */
export class ReplayGuard {
  readonly windowSize: number;
  readonly maxSenders: number;
  readonly forgetAfterMs: number;
  private readonly windows = new Map<string, SenderWindow>();

  constructor(options: ReplayGuardOptions = {}) {
    this.windowSize = options.windowSize ?? 64;
    this.maxSenders = options.maxSenders ?? 4096;
    this.forgetAfterMs = options.forgetAfterMs ?? 600_000;
  }

  check(sender: string, epoch: bigint, seq: number, now = Date.now()): 'ok' | 'replay' | 'stale' | 'stale-epoch' {
    const w = this.windows.get(sender);
    if (!w || now - w.lastAcceptedAt > this.forgetAfterMs) return 'ok';
    if (epoch > w.epoch) return 'ok';
    if (epoch < w.epoch) return 'stale-epoch';
    if (seq > w.highest) return 'ok';
    const age = w.highest - seq;
    if (age >= this.windowSize) return 'stale';
    return (w.seen >> BigInt(age)) & 1n ? 'replay' : 'ok';
  }

  /* Records an authenticated datagram; returns the check verdict (so a caller can do both). */
  accept(sender: string, epoch: bigint, seq: number, now = Date.now()): 'ok' | 'replay' | 'stale' | 'stale-epoch' {
    const verdict = this.check(sender, epoch, seq, now);
    if (verdict !== 'ok') return verdict;
    const w = this.windows.get(sender);
    const mask = (1n << BigInt(this.windowSize)) - 1n;
    if (!w || now - w.lastAcceptedAt > this.forgetAfterMs || epoch > w.epoch) {
      this.windows.delete(sender);
      while (this.windows.size >= this.maxSenders) this.windows.delete(this.windows.keys().next().value as string);
      this.windows.set(sender, { epoch, highest: seq, seen: 1n, lastAcceptedAt: now });
      return 'ok';
    }
    if (seq > w.highest) {
      const shift = seq - w.highest;
      w.seen = shift >= this.windowSize ? 1n : ((w.seen << BigInt(shift)) | 1n) & mask;
      w.highest = seq;
    } else {
      w.seen |= 1n << BigInt(w.highest - seq);
    }
    w.lastAcceptedAt = now;
    // Keep the map in least-recently-accepted order so eviction drops the quietest sender.
    this.windows.delete(sender);
    this.windows.set(sender, w);
    return 'ok';
  }

  /* The last (epoch, highest seq) accepted from a sender. */
  last(sender: string): { epoch: bigint; seq: number } | undefined {
    const w = this.windows.get(sender);
    return w && { epoch: w.epoch, seq: w.highest };
  }
}

/* Sending side: one sender id, one epoch, a sequence counter. */
export class DatagramSealer {
  readonly sender: string;
  readonly epoch: bigint;
  private seq: number;

  /* `lastSeq`: the sequence number this incarnation sealed last, when another process sealed
   * with the same epoch before (an in-place upgrade carries the sender on). */
  constructor(
    private ring: KeyRing,
    sender: string,
    epoch: bigint = newEpoch(),
    lastSeq = 0,
  ) {
    if (!isAddress(sender)) throw new WedgeError('WEDGE_ERR_CONFIG', `invalid soft-state sender id ${JSON.stringify(sender)}`);
    this.sender = sender;
    this.epoch = epoch;
    this.seq = lastSeq;
  }

  get lastSeq(): number {
    return this.seq;
  }

  setKeyRing(ring: KeyRing): void {
    this.ring = ring;
  }

  seal(plaintext: Uint8Array): Buffer {
    this.seq += 1;
    return sealDatagram(this.ring, { sender: this.sender, epoch: this.epoch, seq: this.seq }, plaintext);
  }
}

/* Receiving side: header check, cheap replay pre-check, decrypt, then commit to the window. */
export class DatagramOpener {
  readonly guard: ReplayGuard;

  constructor(
    private ring: KeyRing,
    guard: ReplayGuard = new ReplayGuard(),
  ) {
    this.guard = guard;
  }

  setKeyRing(ring: KeyRing): void {
    this.ring = ring;
  }

  open(datagram: Uint8Array, now = Date.now()): OpenResult {
    const parsed = parseHeader(datagram);
    if (!parsed.ok) return parsed;
    const { sender, epoch, seq } = parsed.header;
    const early = this.guard.check(sender, epoch, seq, now);
    if (early !== 'ok') return { ok: false, reason: early };
    const opened = decrypt(this.ring, datagram, parsed);
    if (!opened.ok) return opened;
    const verdict = this.guard.accept(sender, epoch, seq, now);
    return verdict === 'ok' ? opened : { ok: false, reason: verdict };
  }
}
