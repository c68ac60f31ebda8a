/* Decoding is total: thousands of random and mutated byte strings, through the codec alone
 * and through the whole receive path, never throw, and every datagram is accounted for. */
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Inbox, Outbox } from '../../softstate/channel.js';
import { decodeFrame, decodeItem, encodeDeathNotice, encodeHeartbeat, encodeItem, packAdverts } from '../../softstate/codec.js';
import { sealDatagram, type KeyRing } from '../../softstate/crypto.js';
import { sampleRecord } from './sample.js';

/* Deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = rng(20240601);
const int = (n: number) => Math.floor(random() * n);
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

function mutate(input: Buffer): Buffer {
  const b = Buffer.from(input);
  switch (int(6)) {
    case 0: // flip bits
      for (let i = 0, n = 1 + int(4); i < n && b.length > 0; i++) b[int(b.length)]! ^= 1 << int(8);
      return b;
    case 1: // truncate
      return b.subarray(0, int(b.length + 1));
    case 2: // extend with garbage
      return Buffer.concat([b, bytes(1 + int(16))]);
    case 3: // insert a byte
    {
      const at = int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), bytes(1), b.subarray(at)]);
    }
    case 4: // overwrite a byte with an interesting msgpack marker
      if (b.length > 0) b[int(b.length)] = [0xc0, 0xc1, 0xc4, 0xd4, 0xdc, 0xdd, 0xde, 0xdf, 0xff, 0x7f, 0x90][int(11)]!;
      return b;
    default: // splice two halves
      return Buffer.concat([b.subarray(int(b.length + 1)), b.subarray(0, int(b.length + 1))]);
  }
}

function randomValue(depth = 0): unknown {
  switch (int(depth > 3 ? 6 : 9)) {
    case 0: return int(2 ** 31) - 2 ** 30;
    case 1: return random() * 1e12;
    case 2: return bytes(int(20)).toString('latin1');
    case 3: return bytes(int(40));
    case 4: return random() < 0.5;
    case 5: return null;
    case 6: return Array.from({ length: int(14) }, () => randomValue(depth + 1));
    case 7: return Object.fromEntries(Array.from({ length: int(6) }, () => [String(int(1000)), randomValue(depth + 1)]));
    default: return [int(6), ...Array.from({ length: int(13) }, () => randomValue(depth + 1))];
  }
}

const ring: KeyRing = { current: 1, keys: new Map([[1, Buffer.alloc(32, 3)]]) };
const out = new Outbox({ ring, self: '10.99.0.1' });
const seeds: Buffer[] = [
  encodeHeartbeat({ sender: '10.99.0.1', epoch: out.epochHex, load: { connections: 3, bytesPerSec: 10, cpu: 0.5 } }),
  encodeDeathNotice({ declarer: '10.99.0.1', peer: '10.99.0.9', reason: 'x', peerEpoch: '00000000000000aa', peerSeq: 4, at: 1 }),
  ...packAdverts(
    [sampleRecord(1), sampleRecord(2, {}, 3000), sampleRecord(3)].map((record) => encodeItem({ kind: 'record', record })),
    { maxPayload: 1300, maxFragments: 8, nextMessageId: () => 1 },
  ).frames,
  encodeItem({ kind: 'withdrawal', withdrawal: { id: 'a', owner: '10.99.0.1', migration: 1 } }),
];

describe('decoding is total', () => {
  it('codec: 20,000 random, mutated and structured inputs never throw', () => {
    const packr = new Packr({ useRecords: false });
    let n = 0;
    for (let i = 0; i < 20_000; i++) {
      const kind = i % 4;
      const input =
        kind === 0 ? bytes(int(300)) : kind === 3 ? Buffer.from(packr.pack(randomValue())) : mutate(seeds[int(seeds.length)]!);
      const frame = decodeFrame(input);
      const item = decodeItem(input);
      expect(typeof frame.ok).toBe('boolean');
      expect(typeof item.ok).toBe('boolean');
      if (!frame.ok) n++;
    }
    expect(n).toBeGreaterThan(10_000);
  });

  it('receive path: 20,000 random, mutated and authentic-but-garbage datagrams never throw and are all counted', () => {
    const inbox = new Inbox({ ring, self: '10.99.0.2' });
    const valid = [out.heartbeat({ connections: 1, bytesPerSec: 0 }), ...out.adverts(seeds.slice(-1)).datagrams];
    let seq = 1000;
    const total = 20_000;
    for (let i = 0; i < total; i++) {
      let input: Buffer;
      switch (i % 4) {
        case 0: input = bytes(int(1500)); break;
        case 1: input = mutate(valid[int(valid.length)]!); break;
        // Authentic datagrams whose plaintext is mutated: exercises everything after GCM.
        case 2: input = sealDatagram(ring, { sender: '10.99.0.3', epoch: 7n, seq: seq++ }, mutate(seeds[int(seeds.length)]!)); break;
        default: input = sealDatagram(ring, { sender: '10.99.0.4', epoch: 7n, seq: seq++ }, bytes(int(200))); break;
      }
      expect(() => inbox.receive(input)).not.toThrow();
    }
    const rejected = Object.values(inbox.rejected).reduce((a, b) => a + (b ?? 0), 0);
    expect(rejected + inbox.accepted + inbox.fragmentsPending).toBe(total);
    expect(inbox.rejected.garbled).toBeGreaterThan(1000);
    expect(inbox.reassembler.size).toBeLessThanOrEqual(inbox.reassembler.maxPending);
  });
});
