import { describe, expect, it } from 'vitest';
import { parseEveryWay } from './helpers.js';

describe('RequestParser: pipelined requests', () => {
  it('parses several requests of every body kind from one byte stream with exact offsets', () => {
    const r1 = 'GET /a HTTP/1.1\r\nHost: h\r\n\r\n';
    const r2 = 'POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody';
    const r3 = 'PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const r4 = 'HEAD /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n';
    const input = r1 + r2 + r3 + '\r\n' + r4;
    const { events, error } = parseEveryWay(input);
    expect(error).toBeUndefined();
    const shape = events.map((e) =>
      e.type === 'head' ? `head@${e.start}:${e.head['target'] as string}` : e.type === 'end' ? `end@${e.end}` : `body:${e.data}`,
    );
    const o2 = r1.length;
    const o3 = o2 + r2.length;
    const o4 = o3 + r3.length + 2;
    expect(shape).toEqual([
      'head@0:/a',
      `end@${o2}`,
      `head@${o2}:/b`,
      'body:body',
      `end@${o3}`,
      `head@${o3}:/c`,
      'body:3\r\nabc\r\n0\r\n\r\n',
      `end@${o3 + r3.length}`,
      `head@${o4}:/d`,
      `end@${input.length}`,
    ]);
  });

  it('forty pipelined GETs in one push', () => {
    const one = (n: number) => `GET /item/${n} HTTP/1.1\r\nHost: h\r\n\r\n`;
    let input = '';
    for (let n = 0; n < 40; n++) input += one(n);
    const { events } = parseEveryWay(input);
    expect(events.filter((e) => e.type === 'head')).toHaveLength(40);
    expect(events[events.length - 1]).toEqual({ type: 'end', end: input.length });
  });

  it('a valid request followed by a malformed one: the error surfaces after the first', () => {
    const outcome = parseEveryWay('GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\nHost: h\r\n\r\n');
    expect(outcome.error).toBe('WEDGE_ERR_HTTP_MALFORMED');
  });
});
