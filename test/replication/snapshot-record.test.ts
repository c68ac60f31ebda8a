/*
 * A connection's snapshot rides in its soft-state record: through the wire codec and back it is
 * the same bytes at the same position; a largest snapshot (4 KiB) still fits a record the
 * member can send (fragmented); a malformed or oversized one makes the record unusable, never
 * a guess.
 */
import { describe, expect, it } from 'vitest';
import { MAX_SNAPSHOT_BYTES } from '../../relay/state-slots.js';
import { parseReplicatedStream } from '../../replication/records.js';
import { DEFAULT_MAX_FRAGMENTS, DEFAULT_MTU } from '../../softstate/channel.js';
import { decodeItem, encodeItem, maxItemBytes } from '../../softstate/codec.js';
import { datagramOverhead } from '../../softstate/crypto.js';
import { StreamMap } from '../../stream-map/stream-map.js';
import { sampleRecord } from '../softstate/sample.js';

function recordWith(snapshot: unknown) {
  const stream = { map: new StreamMap().toJSON(), sent: 0, received: 0, snapshot };
  return sampleRecord(1, { streamMap: stream });
}

function roundTrip(snapshot: unknown) {
  const encoded = encodeItem({ kind: 'record', record: recordWith(snapshot) });
  const decoded = decodeItem(encoded);
  if (!decoded.ok || decoded.value.kind !== 'record') throw new Error('record did not decode');
  return { encoded, stream: parseReplicatedStream(decoded.value.record.streamMap) };
}

describe('snapshots in the record', () => {
  it('carries a 4 KiB snapshot exactly, within what a record may be', () => {
    const data = Buffer.alloc(MAX_SNAPSHOT_BYTES, 0xa5);
    const { encoded, stream } = roundTrip({ exchange: 3, offset: 12345, data });
    expect(stream?.snapshot).toEqual({ exchange: 3, offset: 12345, data });
    // What the member sends with its default MTU and fragment count (a longest sender name).
    expect(encoded.length).toBeLessThan(maxItemBytes(DEFAULT_MTU - datagramOverhead('255.255.255.255'), DEFAULT_MAX_FRAGMENTS));
  });

  it('rejects a record whose snapshot is malformed or too large', () => {
    expect(roundTrip({ exchange: -1, offset: 0, data: Buffer.from('x') }).stream).toBeUndefined();
    expect(roundTrip({ exchange: 0, offset: 0, data: 'text' }).stream).toBeUndefined();
    expect(roundTrip({ exchange: 0, offset: 0, data: Buffer.alloc(MAX_SNAPSHOT_BYTES + 1) }).stream).toBeUndefined();
  });

  it('leaves a record without a snapshot as it was', () => {
    expect(roundTrip(undefined).stream?.snapshot).toBeUndefined();
  });
});
