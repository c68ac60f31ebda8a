import { describe, expect, it } from 'vitest';
import { RequestParser } from '../../parsers/http-request.js';
import { parseEveryWay } from './helpers.js';

function headOfSize(size: number): string {
  const prefix = 'GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ';
  const suffix = '\r\n\r\n';
  return prefix + 'a'.repeat(size - prefix.length - suffix.length) + suffix;
}

/** Pushes `input` one byte at a time; returns how many bytes were accepted before the error. */
function bytesAcceptedBeforeError(input: Buffer, maxHeaderBytes: number): { accepted: number; code?: string } {
  const parser = new RequestParser({ maxHeaderBytes });
  for (let i = 0; i < input.length; i++) {
    const last = parser.push(input.subarray(i, i + 1)).at(-1);
    if (last?.type === 'error') return { accepted: i, code: last.error.code };
  }
  return { accepted: input.length };
}

describe('RequestParser: header section size limit', () => {
  it('accepts a head of exactly the limit, rejects one byte more', () => {
    expect(parseEveryWay(headOfSize(300), { maxHeaderBytes: 300 }).error).toBeUndefined();
    expect(parseEveryWay(headOfSize(301), { maxHeaderBytes: 300 }).error).toBe('WEDGE_ERR_HTTP_HEADER_TOO_LARGE');
  });

  it('default limit is 16384 bytes', () => {
    expect(parseEveryWay(headOfSize(16384)).error).toBeUndefined();
    expect(parseEveryWay(headOfSize(16385)).error).toBe('WEDGE_ERR_HTTP_HEADER_TOO_LARGE');
  });

  it('an endless header line is rejected as soon as it passes the limit, one byte at a time', () => {
    const endless = Buffer.from('GET / HTTP/1.1\r\nX-Pad: ' + 'a'.repeat(5000));
    expect(bytesAcceptedBeforeError(endless, 1024)).toEqual({ accepted: 1024, code: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE' });
  });

  it('endless short header lines are rejected at the limit too', () => {
    const endless = Buffer.from('GET / HTTP/1.1\r\n' + 'X: y\r\n'.repeat(1000));
    expect(bytesAcceptedBeforeError(endless, 1024)).toEqual({ accepted: 1024, code: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE' });
  });

  it('endless empty lines before a request line count towards the limit', () => {
    const endless = Buffer.from('\r\n'.repeat(2000));
    expect(bytesAcceptedBeforeError(endless, 1024).code).toBe('WEDGE_ERR_HTTP_HEADER_TOO_LARGE');
  });

  it('a single huge push is rejected without looking for the end of the head', () => {
    const parser = new RequestParser({ maxHeaderBytes: 1024 });
    const huge = Buffer.from('GET / HTTP/1.1\r\nX: ' + 'a'.repeat(1 << 20) + '\r\n\r\n');
    expect(parser.push(huge)).toEqual([{ type: 'error', error: expect.objectContaining({ code: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE' }) }]);
  });

  it('the limit applies to each request of a pipeline separately', () => {
    const input = headOfSize(300).repeat(5);
    const outcome = parseEveryWay(input, { maxHeaderBytes: 300 });
    expect(outcome.error).toBeUndefined();
    expect(outcome.events.filter((e) => e.type === 'head')).toHaveLength(5);
  });

  it('a large head assembled across pushes, then small ones, all parse', () => {
    const input = headOfSize(5000) + headOfSize(200) + headOfSize(3000);
    const outcome = parseEveryWay(input);
    expect(outcome.error).toBeUndefined();
    expect(outcome.events.filter((e) => e.type === 'end').map((e) => e.type === 'end' && e.end)).toEqual([5000, 5200, 8200]);
  });

  it('an oversized chunk trailer section is rejected with 431 as well', () => {
    const input = `POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'a'.repeat(400)}\r\n\r\n`;
    expect(parseEveryWay(input, { maxHeaderBytes: 256 }).error).toBe('WEDGE_ERR_HTTP_HEADER_TOO_LARGE');
  });
});
