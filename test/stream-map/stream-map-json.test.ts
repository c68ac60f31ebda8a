import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { StreamMap } from '../../stream-map/stream-map.js';
import { GET, OK, requestHead, responseHead } from './stream-map-fixtures.js';

function sample(): { map: StreamMap; end: number } {
  const map = new StreamMap();
  let requestOffset = 0;
  let responseOffset = 0;
  const responses = [
    OK(10),
    responseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'),
    responseHead('HTTP/1.1 206 P\r\nContent-Range: bytes 5-9/10\r\nContent-Length: 5\r\nETag: "q"\r\n\r\n'),
  ];
  const bodies = [10, 17, 5];
  responses.forEach((head, n) => {
    const request = GET(`/${n}`);
    map.beginRequest(requestOffset, request);
    requestOffset += request.rawHead.length;
    map.endRequest(requestOffset);
    const interim = n === 0 ? [Buffer.from('HTTP/1.1 103 Early Hints\r\n\r\n')] : [];
    map.beginResponse(responseOffset, head, interim);
    responseOffset += (interim[0]?.length ?? 0) + head.headerLength + bodies[n]!;
    map.endResponse(responseOffset);
  });
  map.beginRequest(requestOffset, requestHead('GET /pending HTTP/1.1\r\nHost: h\r\n\r\n'));
  return { map, end: responseOffset };
}

function sameAnswers(a: StreamMap, b: StreamMap, end: number): void {
  for (let offset = 0; offset <= end + 2; offset++) {
    expect(b.locate(offset), `offset ${offset}`).toEqual(a.locate(offset));
  }
}

describe('StreamMap toJSON / fromJSON', () => {
  it('round-trips through JSON text: same exchanges, same answer at every offset', () => {
    const { map, end } = sample();
    const json = JSON.parse(JSON.stringify(map.toJSON())) as unknown;
    const restored = StreamMap.fromJSON(json);
    expect(restored.toJSON()).toEqual(map.toJSON());
    expect(restored.retained[0]!.head!.equals(map.retained[0]!.head!)).toBe(true);
    sameAnswers(map, restored, end);
  });

  it('round-trips through msgpack (as soft state carries it)', () => {
    const { map, end } = sample();
    const restored = StreamMap.fromJSON(unpack(pack(map.toJSON())));
    expect(restored.toJSON()).toEqual(map.toJSON());
    sameAnswers(map, restored, end);
  });

  it('a restored map keeps recording where the original left off', () => {
    const { map, end } = sample();
    map.trim(end);
    const restored = StreamMap.fromJSON(JSON.parse(JSON.stringify(map.toJSON())));
    restored.endRequest(10_000);
    const head = OK(3);
    const exchange = restored.beginResponse(end, head);
    expect(exchange.index).toBe(3);
    expect(restored.locate(end + head.headerLength + 1)).toMatchObject({ kind: 'body', bodyOffset: 1 });
    expect(restored.retained.map((e) => e.index)).toEqual([2, 3]);
    expect(restored.locate(restored.retained[0]!.responseStart! - 1).kind).toBe('out-of-range');
  });

  it.each([
    ['null', () => null],
    ['wrong version', (j: Record<string, unknown>) => ({ ...j, version: 2 })],
    ['negative base', (j: Record<string, unknown>) => ({ ...j, base: -1 })],
    ['fractional offset', (j: Record<string, unknown>) => mutateExchange(j, 0, { requestEnd: 10.5 })],
    ['head length mismatch', (j: Record<string, unknown>) => mutateExchange(j, 0, { headerLength: 3 })],
    ['response gap', (j: Record<string, unknown>) => mutateExchange(j, 1, { responseStart: 1 })],
    ['end disagreeing with body length', (j: Record<string, unknown>) => mutateExchange(j, 0, { bodyLength: 11 })],
    ['resumable without reason mismatch', (j: Record<string, unknown>) => mutateExchange(j, 1, { resumable: true })],
    ['indices out of order', (j: Record<string, unknown>) => mutateExchange(j, 1, { index: 0 })],
    ['head not bytes', (j: Record<string, unknown>) => mutateExchange(j, 0, { head: 42 })],
  ])('rejects a tampered map: %s', (_name, tamper) => {
    const json = JSON.parse(JSON.stringify(sample().map.toJSON())) as Record<string, unknown>;
    expect(() => StreamMap.fromJSON(tamper(json))).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_STREAM_MAP' }));
  });
});

function mutateExchange(json: Record<string, unknown>, n: number, patch: Record<string, unknown>): Record<string, unknown> {
  const exchanges = (json['exchanges'] as Array<Record<string, unknown>>).map((e, k) => (k === n ? { ...e, ...patch } : e));
  return { ...json, exchanges };
}
