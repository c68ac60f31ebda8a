import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  decodeItem,
  encodeDeathNotice,
  encodeHeartbeat,
  encodeItem,
  packAdverts,
  Reassembler,
  type AdvertItem,
  type Frame,
} from '../../softstate/codec.js';
import { parseConnectionRecord } from '../../softstate/records.js';
import { sampleRecord } from './sample.js';

const ids = () => {
  let n = 0;
  return () => ++n;
};

function decodeAll(frames: Buffer[]): AdvertItem[] {
  const reassembler = new Reassembler();
  const items: AdvertItem[] = [];
  for (const bytes of frames) {
    const decoded = decodeFrame(bytes);
    if (!decoded.ok) throw new Error('frame did not decode');
    const frame = decoded.value;
    if (frame.kind === 'advert') items.push(...frame.items);
    else if (frame.kind === 'fragment') {
      const r = reassembler.add('s', frame);
      if (r.status === 'complete') {
        const item = decodeItem(r.bytes);
        if (!item.ok) throw new Error('item did not decode');
        items.push(item.value);
      }
    }
  }
  return items;
}

describe('codec', () => {
  it('round-trips a record, Buffers and opaque stream map included', () => {
    const record = sampleRecord(1);
    const frames = packAdverts([encodeItem({ kind: 'record', record })], { maxPayload: 1300, maxFragments: 8, nextMessageId: ids() });
    expect(frames.frames).toHaveLength(1);
    expect(decodeAll(frames.frames)).toEqual([{ kind: 'record', record }]);
  });

  it('round-trips a record without Migrate secrets, and a withdrawal', () => {
    const { migrate: _omit, ...record } = sampleRecord(2);
    const withdrawal = { id: record.id, owner: record.owner, migration: 3 };
    const frames = packAdverts(
      [encodeItem({ kind: 'record', record }), encodeItem({ kind: 'withdrawal', withdrawal })],
      { maxPayload: 1300, maxFragments: 8, nextMessageId: ids() },
    );
    expect(decodeAll(frames.frames)).toEqual([
      { kind: 'record', record },
      { kind: 'withdrawal', withdrawal },
    ]);
  });

  it('round-trips heartbeats and death notices', () => {
    const heartbeat = { sender: '10.99.0.2', epoch: '0123456789abcdef', load: { connections: 5, bytesPerSec: 1e6, cpu: 0.25 }, services: [{ address: '10.99.1.2', generation: 0 }, { address: '10.99.1.7', generation: 3 }] };
    expect(decodeFrame(encodeHeartbeat(heartbeat))).toEqual({ ok: true, value: { kind: 'heartbeat', heartbeat } });
    const notice = { declarer: '10.99.0.2', peer: '10.99.0.3', reason: 'operator', peerEpoch: '0123456789abcdef', peerSeq: 42, at: 5 };
    expect(decodeFrame(encodeDeathNotice(notice))).toEqual({ ok: true, value: { kind: 'death', notice } });
    const bare = { declarer: '10.99.0.2', peer: '10.99.0.3', reason: '', at: 5 };
    expect(decodeFrame(encodeDeathNotice(bare))).toEqual({ ok: true, value: { kind: 'death', notice: bare } });
  });

  it("reads a later version's heartbeat, ignoring the fields it adds at the end", () => {
    const heartbeat = { sender: '10.99.0.2', epoch: '0123456789abcdef', load: { connections: 1, bytesPerSec: 0 }, services: [] };
    const later = pack([...(unpack(encodeHeartbeat(heartbeat)) as unknown[]), 1796590000000]);
    expect(decodeFrame(later)).toMatchObject({ ok: true, value: { kind: 'heartbeat', heartbeat: { sender: '10.99.0.2', load: { connections: 1 } } } });
    expect(decodeFrame(pack((unpack(encodeHeartbeat(heartbeat)) as unknown[]).slice(0, 7)))).toEqual({ ok: false, reason: 'garbled' });
  });

  it('batches 1,000 records into frames that all fit the budget, losing none', () => {
    const records = Array.from({ length: 1000 }, (_, i) => sampleRecord(i));
    const maxPayload = 1400 - 58;
    const packed = packAdverts(records.map((record) => encodeItem({ kind: 'record', record })), {
      maxPayload,
      maxFragments: 8,
      nextMessageId: ids(),
    });
    expect(packed.refused).toEqual([]);
    expect(packed.fragments).toBe(0);
    for (const f of packed.frames) expect(f.length).toBeLessThanOrEqual(maxPayload);
    // Batching: several records per datagram.
    expect(packed.frames.length).toBeLessThan(records.length / 3);
    const items = decodeAll(packed.frames);
    expect(items.map((i) => (i.kind === 'record' ? i.record : undefined))).toEqual(records);
  });

  it('fragments a record larger than one frame and reassembles it exactly', () => {
    const big = sampleRecord(7, {}, 9000);
    const small = sampleRecord(8);
    const maxPayload = 1342;
    const packed = packAdverts(
      [encodeItem({ kind: 'record', record: small }), encodeItem({ kind: 'record', record: big })],
      { maxPayload, maxFragments: 16, nextMessageId: ids() },
    );
    expect(packed.fragments).toBe(7);
    for (const f of packed.frames) expect(f.length).toBeLessThanOrEqual(maxPayload);
    // Reassembly works in any order.
    const frames = [...packed.frames].reverse();
    expect(decodeAll(frames)).toEqual(
      expect.arrayContaining([
        { kind: 'record', record: small },
        { kind: 'record', record: big },
      ]),
    );
  });

  it('refuses (never truncates) a record needing more than maxFragments', () => {
    const huge = sampleRecord(9, {}, 50_000);
    const packed = packAdverts(
      [encodeItem({ kind: 'record', record: sampleRecord(1) }), encodeItem({ kind: 'record', record: huge })],
      { maxPayload: 1342, maxFragments: 8, nextMessageId: ids() },
    );
    expect(packed.refused).toEqual([1]);
    expect(decodeAll(packed.frames)).toHaveLength(1);
  });

  it('rejects structurally wrong frames as garbled', () => {
    const bad = [Buffer.from([]), Buffer.from([0xc1]), encodeItem({ kind: 'record', record: sampleRecord(1) })];
    for (const b of bad) expect(decodeFrame(b)).toEqual({ ok: false, reason: 'garbled' });
    // A record whose id disagrees with its endpoints is refused.
    expect(parseConnectionRecord({ ...sampleRecord(1), id: 'forged' })).toBeUndefined();
  });
});

describe('fragment reassembly', () => {
  const fragment = (msgId: number, index: number, count: number, size = 100): Extract<Frame, { kind: 'fragment' }> => ({
    kind: 'fragment',
    msgId,
    index,
    count,
    chunk: Buffer.alloc(size, index),
  });

  it('holds a bounded number of partial items, evicting the oldest', () => {
    const r = new Reassembler({ maxPending: 4, maxBytes: 1 << 20, timeoutMs: 10_000 });
    for (let m = 0; m < 10; m++) r.add('s', fragment(m, 0, 2), 0);
    expect(r.size).toBe(4);
    expect(r.evicted).toBe(6);
    expect(r.add('s', fragment(9, 1, 2), 0).status).toBe('complete');
    expect(r.add('s', fragment(0, 1, 2), 0).status).toBe('pending');
  });

  it('holds a bounded number of bytes', () => {
    const r = new Reassembler({ maxPending: 100, maxBytes: 1000, timeoutMs: 10_000 });
    for (let m = 0; m < 30; m++) r.add('s', fragment(m, 0, 3, 300), 0);
    expect(r.bytes).toBeLessThanOrEqual(1000);
    expect(r.evicted).toBeGreaterThan(0);
  });

  it('drops partial items after the timeout', () => {
    const r = new Reassembler({ timeoutMs: 100 });
    r.add('s', fragment(1, 0, 2), 0);
    expect(r.add('s', fragment(1, 1, 2), 150).status).toBe('pending');
    expect(r.timedOut).toBe(1);
  });

  it('rejects duplicates and inconsistent counts', () => {
    const r = new Reassembler();
    r.add('s', fragment(1, 0, 3), 0);
    expect(r.add('s', fragment(1, 0, 3), 0)).toEqual({ status: 'rejected', reason: 'duplicate' });
    expect(r.add('s', fragment(1, 1, 4), 0)).toEqual({ status: 'rejected', reason: 'garbled' });
    // Same msgId from another source is another item.
    expect(r.add('t', fragment(1, 0, 2), 0).status).toBe('pending');
  });
});
