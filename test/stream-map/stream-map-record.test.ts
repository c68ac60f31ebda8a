import { describe, expect, it } from 'vitest';
import { StreamMap } from '../../stream-map/stream-map.js';
import { GET, OK, responseHead } from './stream-map-fixtures.js';

const MAP_ERROR = expect.objectContaining({ code: 'WEDGE_ERR_STREAM_MAP' });

function oneExchange(): { map: StreamMap; headLength: number } {
  const map = new StreamMap();
  const request = GET();
  map.beginRequest(0, request);
  map.endRequest(request.rawHead.length);
  const head = OK(10);
  map.beginResponse(0, head);
  map.endResponse(head.headerLength + 10);
  return { map, headLength: head.headerLength };
}

describe('StreamMap record calls enforce the invariants', () => {
  it('a response needs an outstanding request', () => {
    expect(() => new StreamMap().beginResponse(0, OK(1))).toThrow(MAP_ERROR);
    const { map } = oneExchange();
    expect(() => map.beginResponse(0, OK(1))).toThrow(MAP_ERROR);
  });

  it('responses must be contiguous: no gap, no overlap', () => {
    const { map, headLength } = oneExchange();
    map.beginRequest(100, GET('/2'));
    map.endRequest(130);
    expect(() => map.beginResponse(headLength + 11, OK(1))).toThrow(MAP_ERROR);
    expect(() => map.beginResponse(headLength + 9, OK(1))).toThrow(MAP_ERROR);
    map.beginResponse(headLength + 10, OK(1));
  });

  it('the next response begins where a known-length response ends, its end recorded or not', () => {
    // As a map adopted from soft state advertised before the response's end was recorded.
    const map = new StreamMap();
    map.beginRequest(0, GET());
    map.endRequest(30);
    const head = OK(10);
    map.beginResponse(0, head);
    const adopted = StreamMap.fromJSON(JSON.parse(JSON.stringify(map.toJSON())));
    adopted.beginRequest(30, GET('/2'));
    adopted.endRequest(60);
    expect(() => adopted.beginResponse(head.headerLength + 9, OK(1))).toThrow(MAP_ERROR);
    adopted.beginResponse(head.headerLength + 10, OK(1));
    expect(adopted.retained[0]!.responseEnd).toBe(head.headerLength + 10);
  });

  it('a response of known length must end exactly where its length says', () => {
    const map = new StreamMap();
    map.beginRequest(0, GET());
    map.endRequest(30);
    const head = OK(10);
    map.beginResponse(0, head);
    expect(() => map.endResponse(head.headerLength + 9)).toThrow(MAP_ERROR);
    expect(() => map.endResponse(head.headerLength + 11)).toThrow(MAP_ERROR);
    map.endResponse(head.headerLength + 10);
    expect(() => map.endResponse(head.headerLength + 10)).toThrow(MAP_ERROR);
  });

  it('interim heads are recorded with the final head, not alone', () => {
    const map = new StreamMap();
    map.beginRequest(0, GET());
    expect(() => map.beginResponse(0, responseHead('HTTP/1.1 100 Continue\r\n\r\n'))).toThrow(MAP_ERROR);
  });

  it('a new request cannot begin before the previous one ended', () => {
    const map = new StreamMap();
    map.beginRequest(0, GET());
    expect(() => map.beginRequest(40, GET('/2'))).toThrow(MAP_ERROR);
    map.endRequest(30);
    expect(() => map.beginRequest(29, GET('/2'))).toThrow(MAP_ERROR);
    expect(() => map.endRequest(5)).toThrow(MAP_ERROR);
    map.beginRequest(30, GET('/2'));
  });

  it('pipelined requests are answered in order', () => {
    const map = new StreamMap();
    const a = GET('/a');
    const b = GET('/b');
    map.beginRequest(0, a);
    map.endRequest(a.rawHead.length);
    map.beginRequest(a.rawHead.length, b);
    map.endRequest(a.rawHead.length + b.rawHead.length);
    const first = OK(1);
    expect(map.beginResponse(0, first).target).toBe('/a');
    expect(map.locate(first.headerLength + 1)).toMatchObject({ kind: 'between', next: { target: '/b' } });
    map.endResponse(first.headerLength + 1);
    expect(map.beginResponse(first.headerLength + 1, OK(2)).target).toBe('/b');
  });
});

describe('StreamMap.trim', () => {
  function threeExchanges(): { map: StreamMap; ends: number[] } {
    const map = new StreamMap();
    const ends: number[] = [];
    let requestOffset = 0;
    let responseOffset = 0;
    for (const length of [5, 6, 7]) {
      const request = GET(`/${length}`);
      map.beginRequest(requestOffset, request);
      requestOffset += request.rawHead.length;
      map.endRequest(requestOffset);
      const head = OK(length);
      map.beginResponse(responseOffset, head);
      responseOffset += head.headerLength + length;
      map.endResponse(responseOffset);
      ends.push(responseOffset);
    }
    return { map, ends };
  }

  it('drops exchanges ending at or before the offset, keeps the latest, and keeps indices', () => {
    const { map, ends } = threeExchanges();
    expect(map.trim(ends[0]! - 1)).toBe(0);
    expect(map.trim(ends[0]!)).toBe(1);
    expect(map.retained.map((e) => e.index)).toEqual([1, 2]);
    expect(map.locate(ends[0]! - 1).kind).toBe('out-of-range');
    expect(map.locate(ends[0]!)).toMatchObject({ kind: 'headers', offset: 0, exchange: { index: 1 } });
    expect(map.trim(ends[2]! + 1000)).toBe(1);
    expect(map.retained.map((e) => e.index)).toEqual([2]);
    expect(map.locate(ends[2]!)).toMatchObject({ kind: 'between', after: { index: 2 } });
    map.beginRequest(10_000, GET('/next'));
    expect(map.retained.map((e) => e.index)).toEqual([2, 3]);
  });

  it('keeps the latest `keep` responded exchanges however far the offset goes', () => {
    const { map, ends } = threeExchanges();
    expect(map.trim(ends[2]! + 1000, 2)).toBe(1);
    expect(map.retained.map((e) => e.index)).toEqual([1, 2]);
  });

  it('serialises as trimmed at the acknowledged offset without trimming itself', () => {
    const { map, ends } = threeExchanges();
    const json = map.toJSON(ends[1]!);
    expect(json.exchanges.map((e) => e.index)).toEqual([2]);
    expect(json.base).toBe(ends[1]);
    expect(map.retained).toHaveLength(3);
    const rebuilt = StreamMap.fromJSON(json);
    expect(rebuilt.locate(ends[1]!)).toMatchObject({ kind: 'headers', offset: 0, exchange: { index: 2 } });
    expect(rebuilt.locate(ends[1]! - 1).kind).toBe('out-of-range');
    expect(map.toJSON(ends[0]! - 1)).toEqual(map.toJSON());
  });

  it('a long keep-alive connection stays bounded when trimmed as it goes', () => {
    const map = new StreamMap();
    let requestOffset = 0;
    let responseOffset = 0;
    for (let n = 0; n < 10_000; n++) {
      const request = GET();
      map.beginRequest(requestOffset, request);
      requestOffset += request.rawHead.length;
      map.endRequest(requestOffset);
      const head = OK(100);
      map.beginResponse(responseOffset, head);
      responseOffset += head.headerLength + 100;
      map.endResponse(responseOffset);
      map.trim(responseOffset);
    }
    expect(map.retained).toHaveLength(1);
    expect(map.retained[0]!.index).toBe(9_999);
    expect(map.locate(responseOffset)).toMatchObject({ kind: 'between', after: { index: 9_999 } });
  });
});
