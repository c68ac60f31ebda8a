import { describe, expect, it } from 'vitest';
import { RequestParser } from '../../parsers/http-request.js';
import { parseEveryWay } from './helpers.js';

const GET = 'GET /video/big.mp4?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n';

describe('RequestParser: single requests', () => {
  it('parses a GET head: fields, raw bytes, offsets', () => {
    const { events, error } = parseEveryWay(GET);
    expect(error).toBeUndefined();
    expect(events).toEqual([
      {
        type: 'head',
        start: 0,
        head: {
          method: 'GET',
          target: '/video/big.mp4?x=1',
          version: '1.1',
          headers: [
            ['host', 'example.com'],
            ['user-agent', 'curl/8.0'],
            ['accept', '*/*'],
          ],
          rawHead: GET,
          keepAlive: true,
          body: { kind: 'none' },
          expectContinue: false,
          upgrade: false,
        },
      },
      { type: 'end', end: GET.length },
    ]);
  });

  it('trims optional whitespace around values, keeps inner whitespace, lower-cases names', () => {
    const { events } = parseEveryWay('GET / HTTP/1.1\r\nHOST:\t h \r\nX-A:  a  b \t\r\nX-Empty:\r\n\r\n');
    const head = events[0]!.type === 'head' ? events[0].head : undefined;
    expect(head?.headers).toEqual([
      ['host', 'h'],
      ['x-a', 'a  b'],
      ['x-empty', ''],
    ]);
  });

  it('keeps obs-text bytes in values as latin1', () => {
    const { events, error } = parseEveryWay(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\nX-N: caf\xe9\r\n\r\n', 'latin1'));
    expect(error).toBeUndefined();
    expect(events[0]!.type === 'head' && (events[0].head['headers'] as string[][])[1]).toEqual(['x-n', 'caf\xe9']);
  });

  it('Content-Length body: body bytes then end at the exact offset', () => {
    const input = 'POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world';
    const { events } = parseEveryWay(input);
    expect(events.map((e) => e.type)).toEqual(['head', 'body', 'end']);
    expect(events[1]).toEqual({ type: 'body', data: 'hello world' });
    expect(events[2]).toEqual({ type: 'end', end: input.length });
    expect(events[0]!.type === 'head' && events[0].head.body).toEqual({ kind: 'length', length: 11 });
  });

  it('Content-Length: 0 ends with the head', () => {
    const input = 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n';
    const { events } = parseEveryWay(input);
    expect(events.map((e) => e.type)).toEqual(['head', 'end']);
    expect(events[1]).toEqual({ type: 'end', end: input.length });
  });

  it('accepts Content-Length up to Number.MAX_SAFE_INTEGER and waits for the body', () => {
    const parser = new RequestParser();
    const events = parser.push(Buffer.from(`PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: ${Number.MAX_SAFE_INTEGER}\r\n\r\nabc`));
    expect(events[0]!.type === 'head' && events[0].head.body).toEqual({ kind: 'length', length: Number.MAX_SAFE_INTEGER });
    expect(events.map((e) => e.type)).toEqual(['head', 'body']);
  });

  it('chunked body: raw framing is forwarded verbatim, end after the trailers', () => {
    const body = '5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n';
    const input = `POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n${body}`;
    const { events } = parseEveryWay(input);
    expect(events.map((e) => e.type)).toEqual(['head', 'body', 'end']);
    expect(events[1]).toEqual({ type: 'body', data: body });
    expect(events[2]).toEqual({ type: 'end', end: input.length });
  });

  it('keep-alive: 1.1 default on, Connection: close off; 1.0 default off, keep-alive on', () => {
    const keepAlive = (text: string) => {
      const { events } = parseEveryWay(text);
      return events[0]!.type === 'head' && events[0].head.keepAlive;
    };
    expect(keepAlive('GET / HTTP/1.1\r\nHost: h\r\n\r\n')).toBe(true);
    expect(keepAlive('GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n')).toBe(false);
    expect(keepAlive('GET / HTTP/1.0\r\n\r\n')).toBe(false);
    expect(keepAlive('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')).toBe(true);
  });

  it('Expect: 100-continue is reported for 1.1 only; Upgrade needs Connection: upgrade', () => {
    const head = (text: string) => {
      const { events } = parseEveryWay(text);
      return events[0]!.type === 'head' ? events[0].head : undefined;
    };
    expect(head('PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx')?.expectContinue).toBe(true);
    expect(head('PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx')?.expectContinue).toBe(false);
    expect(head('GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')?.upgrade).toBe(true);
    expect(head('GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n')?.upgrade).toBe(false);
  });

  it('accepts absolute-form and OPTIONS *; HTTP/1.0 without Host', () => {
    expect(parseEveryWay('GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n').error).toBeUndefined();
    expect(parseEveryWay('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n').error).toBeUndefined();
    expect(parseEveryWay('GET / HTTP/1.0\r\n\r\n').error).toBeUndefined();
  });

  it('skips empty lines before a request line; start points at the request line', () => {
    const input = '\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n';
    const { events } = parseEveryWay(input);
    expect(events[0]).toMatchObject({ type: 'head', start: 4 });
    expect(events[1]).toEqual({ type: 'end', end: input.length });
  });

  it('body events are views of the pushed chunk, not copies', () => {
    const parser = new RequestParser();
    const chunk = Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc');
    const body = parser.push(chunk).find((e) => e.type === 'body');
    expect(body?.type === 'body' && body.data.buffer).toBe(chunk.buffer);
  });
});
