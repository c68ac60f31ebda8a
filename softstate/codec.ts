/*
 * Wire encoding of soft state (the plaintext inside each encrypted datagram).
 *
 * A frame is one msgpack array whose first element says what it is:
 *
 *   [ADVERT, item, item, ...]          a batch of records and withdrawals
 *   [HEARTBEAT, sender, epoch, connections, bytesPerSec, cpu|null]
 *   [DEATH, declarer, peer, reason, peerEpoch|null, peerSeq|null, at]
 *   [FRAGMENT, msgId, index, count, bytes]   one piece of an item too large for one frame
 *
 * Items are positional tuples (no map keys on the wire: a record with a small stream map is
 * ~200 bytes). Each item is encoded once, then frames are filled greedily up to the payload
 * budget the caller gives (the path MTU less the crypto overhead), so every frame is known to
 * fit before it is sent; the advert frame's array header is written by hand for that reason.
 * An item larger than a whole frame is cut into at most `maxFragments` fragments; one that
 * would need more is refused and reported to the caller, never truncated.
 *
 * Decoding is total: every function that reads bytes returns a typed result and never throws.
 * The reassembler holds a bounded number of partial items, for a bounded time.
 */
import { Packr, Unpackr } from 'msgpackr';
import {
  parseConnectionRecord,
  parseDeathNotice,
  parseHeartbeat,
  parseWithdrawal,
  type ConnectionRecord,
  type DeathNotice,
  type Heartbeat,
  type Withdrawal,
} from './records.js';

export const FRAME_ADVERT = 1;
export const FRAME_HEARTBEAT = 2;
export const FRAME_DEATH = 3;
export const FRAME_FRAGMENT = 4;

const ITEM_RECORD = 0;
const ITEM_WITHDRAWAL = 1;

/* array16 header (3 bytes) + the kind (1 byte). */
const ADVERT_FRAME_OVERHEAD = 4;
/* fixarray(1) + kind(1) + uint32 msgId(5) + index(1) + count(1) + bin16 header(3), rounded up. */
const FRAGMENT_FRAME_OVERHEAD = 16;
/* Fragment index and count must stay one-byte positive fixints for the overhead above. */
export const MAX_FRAGMENTS_LIMIT = 127;
const MAX_ITEMS_PER_FRAME = 0xfffe;

export type AdvertItem = { kind: 'record'; record: ConnectionRecord } | { kind: 'withdrawal'; withdrawal: Withdrawal };

export type Frame =
  | { kind: 'advert'; items: AdvertItem[] }
  | { kind: 'heartbeat'; heartbeat: Heartbeat }
  | { kind: 'death'; notice: DeathNotice }
  | { kind: 'fragment'; msgId: number; index: number; count: number; chunk: Buffer };

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: 'garbled' };

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/* msgpackr returns views into a shared, reused buffer: copy what is kept. */
function pack(value: unknown): Buffer {
  return Buffer.from(packr.pack(value));
}

function recordToWire(r: ConnectionRecord): unknown[] {
  const t = r.transport;
  return [
    ITEM_RECORD,
    r.client.address,
    r.client.port,
    r.service.address,
    r.service.port,
    r.owner,
    r.migration,
    r.updatedAt,
    [t.sendSeq, t.recvSeq, t.mss, t.sndWscale, t.rcvWscale, t.sack, t.timestamps, t.tsClock, t.tsReadAt, t.sndWnd, t.rcvWnd],
    r.migrate ? [r.migrate.token, r.migrate.key, r.migrate.original.address, r.migrate.original.port] : null,
    r.streamMap ?? null,
    r.handoff === true,
  ];
}

function recordFromWire(w: unknown[]): ConnectionRecord | undefined {
  if (w.length !== 12 || !Array.isArray(w[8]) || w[8].length !== 11) return undefined;
  const t = w[8] as unknown[];
  const m = w[9];
  if (m !== null && (!Array.isArray(m) || m.length !== 4)) return undefined;
  return parseConnectionRecord({
    client: { address: w[1], port: w[2] },
    service: { address: w[3], port: w[4] },
    owner: w[5],
    migration: w[6],
    updatedAt: w[7],
    transport: {
      sendSeq: t[0],
      recvSeq: t[1],
      mss: t[2],
      sndWscale: t[3],
      rcvWscale: t[4],
      sack: t[5],
      timestamps: t[6],
      tsClock: t[7],
      tsReadAt: t[8],
      sndWnd: t[9],
      rcvWnd: t[10],
    },
    migrate: m ? { token: m[0], key: m[1], original: { address: m[2], port: m[3] } } : undefined,
    streamMap: w[10],
    handoff: w[11],
  });
}

/* Encodes one advert item; the result is what batching and fragmentation work on. */
export function encodeItem(item: AdvertItem): Buffer {
  if (item.kind === 'record') return pack(recordToWire(item.record));
  const w = item.withdrawal;
  return pack([ITEM_WITHDRAWAL, w.id, w.owner, w.migration]);
}

function itemFromValue(value: unknown): AdvertItem | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  if (value[0] === ITEM_RECORD) {
    const record = recordFromWire(value);
    return record && { kind: 'record', record };
  }
  if (value[0] === ITEM_WITHDRAWAL && value.length === 4) {
    const withdrawal = parseWithdrawal({ id: value[1], owner: value[2], migration: value[3] });
    return withdrawal && { kind: 'withdrawal', withdrawal };
  }
  return undefined;
}

/* Decodes an item reassembled from fragments. */
export function decodeItem(bytes: Uint8Array): DecodeResult<AdvertItem> {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    return { ok: false, reason: 'garbled' };
  }
  const item = itemFromValue(value);
  return item ? { ok: true, value: item } : { ok: false, reason: 'garbled' };
}

export function encodeHeartbeat(h: Heartbeat): Buffer {
  const claims = h.services ?? [];
  return pack([FRAME_HEARTBEAT, h.sender, h.epoch, h.load.connections, h.load.bytesPerSec, h.load.cpu ?? null, claims.map((c) => c.address), claims.map((c) => c.generation)]);
}

export function encodeDeathNotice(n: DeathNotice): Buffer {
  return pack([FRAME_DEATH, n.declarer, n.peer, n.reason, n.peerEpoch ?? null, n.peerSeq ?? null, n.at]);
}

/* The largest encoded item `packAdverts` can carry with these limits. */
export function maxItemBytes(maxPayload: number, maxFragments: number): number {
  return Math.max(maxPayload - ADVERT_FRAME_OVERHEAD, maxFragments * (maxPayload - FRAGMENT_FRAME_OVERHEAD));
}

export interface PackOptions {
  /* Plaintext bytes available in one datagram. */
  maxPayload: number;
  maxFragments: number;
  /* Supplies message ids for fragmented items (unique per sender and epoch, wrapping u32). */
  nextMessageId: () => number;
}

export interface PackResult {
  frames: Buffer[];
  /* Indexes (into the input) of items too large even for `maxFragments` fragments. */
  refused: number[];
  /* How many of the frames are fragments. */
  fragments: number;
}

function advertFrame(items: Buffer[]): Buffer {
  const header = Buffer.from([0xdc, 0, 0, FRAME_ADVERT]);
  header.writeUInt16BE(items.length + 1, 1);
  return Buffer.concat([header, ...items]);
}

/* Batches encoded items into frames of at most `maxPayload` bytes, fragmenting large ones. */
export function packAdverts(encoded: readonly Buffer[], options: PackOptions): PackResult {
  const { maxPayload, nextMessageId } = options;
  const maxFragments = Math.min(options.maxFragments, MAX_FRAGMENTS_LIMIT);
  if (maxPayload <= FRAGMENT_FRAME_OVERHEAD) throw new RangeError(`payload budget ${maxPayload} too small`);
  const frames: Buffer[] = [];
  const refused: number[] = [];
  let fragments = 0;
  let batch: Buffer[] = [];
  let batchBytes = ADVERT_FRAME_OVERHEAD;
  const flush = (): void => {
    if (batch.length > 0) frames.push(advertFrame(batch));
    batch = [];
    batchBytes = ADVERT_FRAME_OVERHEAD;
  };
  const chunkBytes = maxPayload - FRAGMENT_FRAME_OVERHEAD;
  encoded.forEach((item, index) => {
    if (item.length + ADVERT_FRAME_OVERHEAD <= maxPayload) {
      if (batchBytes + item.length > maxPayload || batch.length >= MAX_ITEMS_PER_FRAME) flush();
      batch.push(item);
      batchBytes += item.length;
      return;
    }
    const count = Math.ceil(item.length / chunkBytes);
    if (count > maxFragments) {
      refused.push(index);
      return;
    }
    const msgId = nextMessageId() >>> 0;
    for (let i = 0; i < count; i++) {
      frames.push(pack([FRAME_FRAGMENT, msgId, i, count, item.subarray(i * chunkBytes, (i + 1) * chunkBytes)]));
    }
    fragments += count;
  });
  flush();
  return { frames, refused, fragments };
}

function isUint(value: unknown, max: number): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= max;
}

function frameFromValue(value: unknown): Frame | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  switch (value[0]) {
    case FRAME_ADVERT: {
      const items: AdvertItem[] = [];
      for (let i = 1; i < value.length; i++) {
        const item = itemFromValue(value[i]);
        if (!item) return undefined;
        items.push(item);
      }
      return items.length > 0 ? { kind: 'advert', items } : undefined;
    }
    case FRAME_HEARTBEAT: {
      const [, sender, epoch, connections, bytesPerSec, cpu, addresses, generations] = value;
      // Fields after these are a later version's (a clock, say): ignored, so that a cluster
      // upgraded one replica at a time keeps hearing every heartbeat.
      if (value.length < 8 || !Array.isArray(addresses) || !Array.isArray(generations) || addresses.length !== generations.length) return undefined;
      const heartbeat = parseHeartbeat({
        sender,
        epoch,
        load: { connections, bytesPerSec, cpu },
        services: addresses.map((address: unknown, i) => ({ address, generation: generations[i] })),
      });
      return heartbeat && { kind: 'heartbeat', heartbeat };
    }
    case FRAME_DEATH: {
      if (value.length !== 7) return undefined;
      const notice = parseDeathNotice({
        declarer: value[1],
        peer: value[2],
        reason: value[3],
        peerEpoch: value[4],
        peerSeq: value[5],
        at: value[6],
      });
      return notice && { kind: 'death', notice };
    }
    case FRAME_FRAGMENT: {
      const [, msgId, index, count, chunk] = value as unknown[];
      if (value.length !== 5 || !isUint(msgId, 0xffff_ffff) || !isUint(count, MAX_FRAGMENTS_LIMIT)) return undefined;
      if (count < 2 || !isUint(index, count - 1) || !(chunk instanceof Uint8Array) || chunk.length === 0) return undefined;
      return { kind: 'fragment', msgId, index, count, chunk: Buffer.from(chunk) };
    }
    default:
      return undefined;
  }
}

/* Decodes one frame; never throws. */
export function decodeFrame(bytes: Uint8Array): DecodeResult<Frame> {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    return { ok: false, reason: 'garbled' };
  }
  const frame = frameFromValue(value);
  return frame ? { ok: true, value: frame } : { ok: false, reason: 'garbled' };
}

export interface ReassemblerOptions {
  /* Partial items held at once (oldest evicted first). */
  maxPending?: number;
  /* Bytes held across all partial items (oldest evicted first). */
  maxBytes?: number;
  /* A partial item not completed within this time is dropped. */
  timeoutMs?: number;
}

export type ReassemblyResult =
  | { status: 'complete'; bytes: Buffer }
  | { status: 'pending' }
  | { status: 'rejected'; reason: 'garbled' | 'duplicate' };

interface Partial {
  count: number;
  parts: (Buffer | undefined)[];
  received: number;
  bytes: number;
  startedAt: number;
}

/* Collects fragments per (source, msgId). Memory is bounded by maxPending and maxBytes. */
export class Reassembler {
  readonly maxPending: number;
  readonly maxBytes: number;
  readonly timeoutMs: number;
  /* Partial items dropped for lack of room / time; read by the member's metrics. */
  evicted = 0;
  timedOut = 0;
  private readonly pending = new Map<string, Partial>();
  private heldBytes = 0;

  constructor(options: ReassemblerOptions = {}) {
    this.maxPending = options.maxPending ?? 64;
    this.maxBytes = options.maxBytes ?? 1 << 20;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  get size(): number {
    return this.pending.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  add(source: string, fragment: Extract<Frame, { kind: 'fragment' }>, now = Date.now()): ReassemblyResult {
    this.expire(now);
    const key = `${source}/${fragment.msgId}`;
    let partial = this.pending.get(key);
    if (partial && partial.count !== fragment.count) return { status: 'rejected', reason: 'garbled' };
    if (partial?.parts[fragment.index]) return { status: 'rejected', reason: 'duplicate' };
    if (!partial) {
      partial = { count: fragment.count, parts: new Array(fragment.count), received: 0, bytes: 0, startedAt: now };
      while (this.pending.size >= this.maxPending) this.evictOldest();
      this.pending.set(key, partial);
    }
    while (this.heldBytes + fragment.chunk.length > this.maxBytes && this.pending.size > 1) {
      const oldest = this.pending.keys().next().value as string;
      if (oldest === key) break;
      this.evictOldest();
    }
    if (this.heldBytes + fragment.chunk.length > this.maxBytes) {
      this.drop(key);
      this.evicted++;
      return { status: 'pending' };
    }
    partial.parts[fragment.index] = fragment.chunk;
    partial.received++;
    partial.bytes += fragment.chunk.length;
    this.heldBytes += fragment.chunk.length;
    if (partial.received < partial.count) return { status: 'pending' };
    this.drop(key);
    return { status: 'complete', bytes: Buffer.concat(partial.parts as Buffer[]) };
  }

  /* Drops partial items older than the timeout. Map order is insertion order = age order. */
  expire(now = Date.now()): void {
    for (const [key, partial] of this.pending) {
      if (now - partial.startedAt < this.timeoutMs) break;
      this.drop(key);
      this.timedOut++;
    }
  }

  private evictOldest(): void {
    const oldest = this.pending.keys().next().value;
    if (oldest === undefined) return;
    this.drop(oldest);
    this.evicted++;
  }

  private drop(key: string): void {
    const partial = this.pending.get(key);
    if (!partial) return;
    this.heldBytes -= partial.bytes;
    this.pending.delete(key);
  }
}
