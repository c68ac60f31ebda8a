/*
 * The request-line limits a front-end needs against clients that never send a complete head:
 * HTTP/0.9 refused as soon as its line ends, a bounded number of empty lines before a request
 * line, a bounded request line (refused while it still arrives), and headPending, which says when
 * a head has begun (what the relay's header timeout measures).
 */
import { describe, expect, it } from 'vitest';
import { RequestParser } from '../../parsers/http-request.js';
import { parseEveryWay } from './helpers.js';

const limits = { maxRequestLineBytes: 64, maxEmptyLines: 2 };

describe('RequestParser: request-line limits', () => {
  it('refuses an HTTP/0.9 request line at its CRLF, without waiting for a header section', () => {
    const parser = new RequestParser();
    const events = parser.push(Buffer.from('GET /index.html\r\n'));
    expect(events).toEqual([{ type: 'error', error: expect.objectContaining({ code: 'WEDGE_ERR_HTTP_MALFORMED', message: expect.stringContaining('HTTP/0.9') }) }]);
    expect(parseEveryWay('GET /index.html\r\n').error).toBe('WEDGE_ERR_HTTP_MALFORMED');
  });

  it('any bad request line fails at its CRLF', () => {
    expect(new RequestParser().push(Buffer.from('GET / HTTP/2.0\r\n')).at(-1)).toMatchObject({ type: 'error' });
  });

  it('skips up to maxEmptyLines empty lines before a request line, refuses one more with 400', () => {
    expect(parseEveryWay('\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', limits).error).toBeUndefined();
    expect(parseEveryWay('\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', limits).error).toBe('WEDGE_ERR_HTTP_MALFORMED');
  });

  it('counts empty lines per request: two before each of two pipelined requests parse', () => {
    const one = '\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n';
    const outcome = parseEveryWay(one + one, limits);
    expect(outcome.error).toBeUndefined();
    expect(outcome.events.filter((e) => e.type === 'head')).toHaveLength(2);
  });

  it('accepts a request line of exactly maxRequestLineBytes, refuses one byte more with 414', () => {
    const line = (length: number) => `GET /${'a'.repeat(length - 'GET / HTTP/1.1'.length)} HTTP/1.1`;
    expect(line(64)).toHaveLength(64);
    expect(parseEveryWay(`${line(64)}\r\nHost: h\r\n\r\n`, limits).error).toBeUndefined();
    expect(parseEveryWay(`${line(65)}\r\nHost: h\r\n\r\n`, limits).error).toBe('WEDGE_ERR_HTTP_URI_TOO_LONG');
  });

  it('refuses an endless request line once it passes the limit, before any CRLF', () => {
    const parser = new RequestParser(limits);
    expect(parser.push(Buffer.from('GET /' + 'a'.repeat(59))).at(-1)?.type).not.toBe('error');
    expect(parser.push(Buffer.from('aa')).at(-1)).toMatchObject({ type: 'error', error: { code: 'WEDGE_ERR_HTTP_URI_TOO_LONG' } });
  });

  it('headPending: after the first byte of a head and until its end; not for empty lines or a body', () => {
    const parser = new RequestParser();
    expect(parser.headPending).toBe(false);
    parser.push(Buffer.from('\r\n'));
    expect(parser.headPending).toBe(false);
    parser.push(Buffer.from('P'));
    expect(parser.headPending).toBe(true);
    parser.push(Buffer.from('OST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n'));
    expect(parser.headPending).toBe(false);
    parser.push(Buffer.from('ab'));
    expect(parser.headPending).toBe(false);
    parser.push(Buffer.from('GET / HTTP/1.1\r\n'));
    expect(parser.headPending).toBe(true);
  });
});
