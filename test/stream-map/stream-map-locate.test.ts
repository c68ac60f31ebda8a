/*
 * A hand-built connection: client and server byte streams of seven exchanges, recorded the way
 * the relay records them (request offsets from RequestParser events, response offsets from
 * where the test placed each response). locate() is checked at every server → client offset
 * against the segments the test laid out, and every answer is checked against the bytes.
 */
import { describe, expect, it } from 'vitest';
import { RequestParser, type RequestHead } from '../../parsers/http-request.js';
import { parseResponseHead } from '../../parsers/http-response.js';
import { ifRangeValidator, type Position, resumeRange, StreamMap } from '../../stream-map/stream-map.js';

const DATE = 'Date: Wed, 02 Jul 2025 10:00:00 GMT\r\n';
const LM = 'Last-Modified: Tue, 01 Jul 2025 10:00:00 GMT\r\n';

interface Plan {
  request: string;
  interim?: string;
  head: string;
  body: string;
  resumable: boolean;
}

const plans: Plan[] = [
  {
    request: 'GET /a HTTP/1.1\r\nHost: h\r\n\r\n',
    head: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: "a1"\r\n\r\n',
    body: '0123456789',
    resumable: true,
  },
  {
    request: 'PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz',
    interim: 'HTTP/1.1 100 Continue\r\n\r\n',
    head: 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n',
    body: '',
    resumable: true,
  },
  {
    request: 'GET /c HTTP/1.1\r\nHost: h\r\n\r\n',
    head: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "c"\r\n\r\n',
    body: '3\r\nabc\r\n0\r\n\r\n',
    resumable: false,
  },
  {
    request: 'HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n',
    head: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n',
    body: '',
    resumable: true,
  },
  {
    request: 'GET /e HTTP/1.1\r\nHost: h\r\nRange: bytes=100-109\r\n\r\n',
    head: `HTTP/1.1 206 Partial Content\r\n${DATE}${LM}Content-Range: bytes 100-109/1000\r\nContent-Length: 10\r\n\r\n`,
    body: 'ABCDEFGHIJ',
    resumable: true,
  },
  {
    request: 'POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi',
    head: 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nETag: "f"\r\n\r\n',
    body: 'post',
    resumable: false,
  },
  {
    request: 'GET /g HTTP/1.1\r\nHost: h\r\n\r\n',
    head: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: W/"g"\r\n\r\n',
    body: 'wk!',
    resumable: false,
  },
];
const PENDING = 'GET /pending HTTP/1.1\r\nHost: h\r\n\r\n';

interface Segment {
  start: number;
  headEnd: number;
  end: number;
  plan: Plan;
}

function build(): { map: StreamMap; server: Buffer; segments: Segment[]; clientEvents: Array<{ start: number; end: number }> } {
  const map = new StreamMap();
  const client = Buffer.from(plans.map((p) => p.request).join('') + PENDING, 'latin1');
  const requests: Array<{ head: RequestHead; start: number; end: number }> = [];
  let current: { head: RequestHead; start: number } | undefined;
  // Fed one byte at a time: the offsets must not depend on how the bytes arrived.
  const parser = new RequestParser();
  for (const byte of client) {
    for (const event of parser.push(Buffer.from([byte]))) {
      if (event.type === 'head') current = { head: event.head, start: event.start };
      else if (event.type === 'end') requests.push({ ...current!, end: event.end });
    }
  }
  const pieces: Buffer[] = [];
  const segments: Segment[] = [];
  let offset = 0;
  plans.forEach((plan, n) => {
    const request = requests[n]!;
    map.beginRequest(request.start, request.head);
    map.endRequest(request.end);
    const interim = plan.interim ? [Buffer.from(plan.interim)] : [];
    const head = parseResponseHead(Buffer.from(plan.head), request.head.method)!;
    map.beginResponse(offset, head, interim);
    const headLength = (plan.interim ?? '').length + plan.head.length;
    map.endResponse(offset + headLength + plan.body.length);
    segments.push({ start: offset, headEnd: offset + headLength, end: offset + headLength + plan.body.length, plan });
    pieces.push(...interim, Buffer.from(plan.head + plan.body));
    offset += headLength + plan.body.length;
  });
  const pending = requests[plans.length]!;
  map.beginRequest(pending.start, pending.head);
  map.endRequest(pending.end);
  return { map, server: Buffer.concat(pieces), segments, clientEvents: requests };
}

/** What locate must say at `offset`, from the laid-out segments alone. */
function expected(offset: number, segments: Segment[], total: number): { kind: string; target?: string; n?: number } {
  const seg = segments.findIndex((s) => offset >= s.start && offset < s.end);
  if (seg >= 0) {
    const s = segments[seg]!;
    const target = s.plan.request.split(' ')[1];
    if (!s.plan.resumable) return { kind: 'unresumable', target };
    return offset < s.headEnd ? { kind: 'headers', target, n: offset - s.start } : { kind: 'body', target, n: offset - s.headEnd };
  }
  if (offset === total) return { kind: 'between', target: '/g' };
  return { kind: 'out-of-range' };
}

function summary(position: Position): { kind: string; target?: string; n?: number } {
  switch (position.kind) {
    case 'headers':
      return { kind: 'headers', target: position.exchange.target, n: position.offset };
    case 'body':
      return { kind: 'body', target: position.exchange.target, n: position.bodyOffset };
    case 'unresumable':
      return { kind: 'unresumable', target: position.exchange.target };
    case 'between':
      return { kind: 'between', target: position.after?.target };
    case 'out-of-range':
      return { kind: 'out-of-range' };
  }
}

describe('StreamMap.locate on a hand-built multi-exchange stream', () => {
  const { map, server, segments, clientEvents } = build();

  it('records request offsets in the client stream exactly', () => {
    let offset = 0;
    for (const [n, exchange] of map.retained.entries()) {
      const request = n < plans.length ? plans[n]!.request : PENDING;
      expect(exchange.requestStart).toBe(offset);
      expect(exchange.requestEnd).toBe(offset + request.length);
      expect(clientEvents[n]).toMatchObject({ start: offset, end: offset + request.length });
      offset += request.length;
    }
  });

  it('records resumability and reasons', () => {
    const states = map.retained.map((e) => [e.target, e.resumable, e.notResumableReason]);
    expect(states).toEqual([
      ['/a', true, undefined],
      ['/up', true, undefined],
      ['/c', false, 'chunked body: wire bytes depend on the origin'],
      ['/d', true, undefined],
      ['/e', true, undefined],
      ['/f', false, 'POST response body cannot be fetched again'],
      ['/g', false, 'weak ETag cannot be used in If-Range'],
      ['/pending', false, 'response not begun'],
    ]);
    expect(ifRangeValidator(map.retained[0]!)).toBe('"a1"');
    expect(ifRangeValidator(map.retained[4]!)).toBe('Tue, 01 Jul 2025 10:00:00 GMT');
    expect(map.retained[4]!.contentRange).toEqual({ start: 100, end: 109, total: 1000 });
    expect(resumeRange(map.retained[0]!, 3)).toBe('bytes=3-');
    expect(resumeRange(map.retained[4]!, 3)).toBe('bytes=103-109');
    expect(resumeRange(map.retained[4]!, 9)).toBe('bytes=109-109');
    expect(() => resumeRange(map.retained[4]!, 10)).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_STREAM_MAP' }));
    expect(() => resumeRange(map.retained[2]!, 0)).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_STREAM_MAP' }));
    expect(map.retained[1]!.head!.toString()).toBe(plans[1]!.interim! + plans[1]!.head);
  });

  it('every offset from 0 to past the end has the right kind and numbers, checked against the bytes', () => {
    for (let offset = 0; offset <= server.length + 3; offset++) {
      const position = map.locate(offset);
      expect(summary(position), `offset ${offset}`).toEqual(expected(offset, segments, server.length));
      if (position.kind === 'headers') {
        const exchange = position.exchange;
        const seg = segments.find((s) => s.plan.request.split(' ')[1] === exchange.target)!;
        expect(exchange.head!.subarray(position.offset).equals(server.subarray(offset, seg.headEnd))).toBe(true);
      } else if (position.kind === 'body') {
        const body = Buffer.from(segments.find((s) => s.plan.request.split(' ')[1] === position.exchange.target)!.plan.body);
        expect(body[position.bodyOffset]).toBe(server[offset]);
      }
    }
  });

  it('between at the end names the pending request as next', () => {
    const position = map.locate(server.length);
    expect(position.kind === 'between' && position.next?.target).toBe('/pending');
    expect(position.kind === 'between' && position.after?.keepAlive).toBe(true);
  });

  it('rejects offsets that are not byte offsets', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(map.locate(bad).kind).toBe('out-of-range');
    }
  });
});

describe('StreamMap.locate on an empty or in-progress map', () => {
  it('an empty map: 0 is between (nothing before), anything else out of range', () => {
    const map = new StreamMap();
    expect(map.locate(0)).toEqual({ kind: 'between' });
    expect(map.locate(1).kind).toBe('out-of-range');
  });

  it('a response in progress with known length is located up to its declared end', () => {
    const map = new StreamMap();
    const head = new RequestParser().push(Buffer.from('GET /big HTTP/1.1\r\nHost: h\r\n\r\n'))[0]!;
    if (head.type !== 'head') throw new Error('no head');
    map.beginRequest(head.start, head.head);
    map.endRequest(head.head.rawHead.length);
    const response = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\nETag: "x"\r\n\r\n'), 'GET')!;
    const start = 2 ** 33;
    expect(() => map.beginResponse(start, response)).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_STREAM_MAP' }));
    map.beginResponse(0, response);
    const headLength = response.headerLength;
    expect(map.locate(headLength + 4_999_999_999)).toMatchObject({ kind: 'body', bodyOffset: 4_999_999_999 });
    expect(map.locate(headLength + 5_000_000_000)).toMatchObject({ kind: 'between' });
    expect(map.locate(headLength + 5_000_000_001).kind).toBe('out-of-range');
  });

  it('a chunked response in progress: every body offset is unresumable, never out of range', () => {
    const map = new StreamMap();
    const [event] = new RequestParser().push(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\n\r\n'));
    if (event?.type !== 'head') throw new Error('no head');
    map.beginRequest(0, event.head);
    map.endRequest(event.head.rawHead.length);
    const head = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), 'GET')!;
    map.beginResponse(0, head);
    expect(map.locate(0)).toMatchObject({ kind: 'unresumable' });
    expect(map.locate(10 ** 12)).toMatchObject({ kind: 'unresumable', reason: 'chunked body: wire bytes depend on the origin' });
    map.endResponse(head.headerLength + 20);
    expect(map.locate(head.headerLength + 20)).toMatchObject({ kind: 'between' });
    expect(map.locate(head.headerLength + 21).kind).toBe('out-of-range');
  });
});
