import { describe, expect, it } from 'vitest';
import { isInterimResponse, parseContentRange, parseResponseHead, type ResponseHead } from '../../parsers/http-response.js';
import { WedgeError } from '../../errors/codes.js';

function parse(text: string, method = 'GET'): ResponseHead | null {
  return parseResponseHead(Buffer.from(text, 'latin1'), method);
}

/** Parses `text` from every prefix: null until the full head is there, then the same head. */
function parseEveryPrefix(text: string, method = 'GET'): ResponseHead {
  const bytes = Buffer.from(text, 'latin1');
  const full = parseResponseHead(bytes, method);
  if (!full) throw new Error('incomplete');
  for (let n = 0; n < full.headerLength; n++) expect(parseResponseHead(bytes.subarray(0, n), method), `prefix ${n}`).toBeNull();
  for (let n = full.headerLength; n <= bytes.length; n++) expect(parseResponseHead(bytes.subarray(0, n), method)).toEqual(full);
  return full;
}

function rejectCode(text: string, method = 'GET'): string | undefined {
  try {
    parse(text, method);
  } catch (error) {
    return (error as WedgeError).code;
  }
  return undefined;
}

const OK =
  'HTTP/1.1 200 OK\r\nDate: Tue, 01 Jul 2025 10:00:00 GMT\r\nContent-Length: 1000\r\nETag: "abc"\r\n' +
  'Last-Modified: Mon, 30 Jun 2025 09:00:00 GMT\r\nAccept-Ranges: bytes\r\n\r\n';

describe('parseResponseHead', () => {
  it('parses a 200 with length, validators and exact header length; body bytes are not part of it', () => {
    const head = parseEveryPrefix(OK + 'body bytes');
    expect(head).toMatchObject({
      status: 200,
      reason: 'OK',
      version: '1.1',
      headerLength: OK.length,
      body: { kind: 'length', length: 1000 },
      contentLength: 1000,
      etag: '"abc"',
      lastModified: 'Mon, 30 Jun 2025 09:00:00 GMT',
      date: 'Tue, 01 Jul 2025 10:00:00 GMT',
      acceptRanges: 'bytes',
      keepAlive: true,
    });
    expect(head.rawHead.toString('latin1')).toBe(OK);
    expect(head.contentRange).toBeUndefined();
  });

  it('chunked', () => {
    const head = parseEveryPrefix('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    expect(head.body).toEqual({ kind: 'chunked' });
    expect(head.keepAlive).toBe(true);
  });

  it('gzip, chunked is chunked framing; gzip alone is until-close', () => {
    expect(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n')?.body).toEqual({ kind: 'chunked' });
    const head = parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n');
    expect(head?.body).toEqual({ kind: 'until-close' });
    expect(head?.keepAlive).toBe(false);
  });

  it('until-close when neither length nor chunked; 1.0 keep-alive needs the token', () => {
    const head = parse('HTTP/1.0 200 OK\r\nServer: x\r\n\r\n');
    expect(head?.body).toEqual({ kind: 'until-close' });
    expect(head?.keepAlive).toBe(false);
    const kept = parse('HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n');
    expect(kept?.keepAlive).toBe(true);
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n')?.keepAlive).toBe(false);
  });

  it.each([
    ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n', 'HEAD'],
    ['204', 'HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n', 'GET'],
    ['304', 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 1000\r\n\r\n', 'GET'],
    ['100', 'HTTP/1.1 100 Continue\r\n\r\n', 'POST'],
    ['103', 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n', 'GET'],
  ])('%s → body none (Content-Length still reported)', (_name, text, method) => {
    const head = parseEveryPrefix(text, method);
    expect(head.body).toEqual({ kind: 'none' });
    expect(head.keepAlive).toBe(true);
  });

  it('HEAD response keeps the announced Content-Length for the record', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n', 'HEAD')?.contentLength).toBe(1000);
  });

  it('interim responses: the caller parses again after headerLength', () => {
    const bytes = Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok');
    const interim = parseResponseHead(bytes, 'PUT')!;
    expect(isInterimResponse(interim)).toBe(true);
    const final = parseResponseHead(bytes.subarray(interim.headerLength), 'PUT')!;
    expect(isInterimResponse(final)).toBe(false);
    expect(final).toMatchObject({ status: 201, body: { kind: 'length', length: 2 } });
    expect(interim.headerLength + final.headerLength).toBe(bytes.length - 2);
  });

  it('101 Switching Protocols is final: the rest is a tunnel until close', () => {
    const head = parse('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')!;
    expect(isInterimResponse(head)).toBe(false);
    expect(head.body).toEqual({ kind: 'until-close' });
    expect(head.keepAlive).toBe(false);
  });

  it('206 with Content-Range', () => {
    const head = parse('HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/1000\r\nContent-Length: 100\r\n\r\n');
    expect(head?.contentRange).toEqual({ start: 100, end: 199, total: 1000 });
    expect(parseContentRange('bytes 0-9/*')).toEqual({ start: 0, end: 9 });
    expect(parseContentRange('bytes */1000')).toBeUndefined();
    expect(parseContentRange('bytes 9-0/10')).toBeUndefined();
    expect(parseContentRange('bytes 0-10/10')).toBeUndefined();
    expect(parseContentRange('bytes=0-9/10')).toBeUndefined();
  });

  it('missing reason phrase is tolerated; empty reason too', () => {
    expect(parse('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')?.reason).toBe('');
    expect(parse('HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n')?.status).toBe(404);
  });

  it('identical repeated Content-Length is accepted', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n')?.body).toEqual({ kind: 'length', length: 5 });
  });

  it.each([
    ['garbage', 'SSH-2.0-OpenSSH\r\n\r\n'],
    ['garbage before the terminator arrives', 'SSH-2.0'],
    ['HTTP/2', 'HTTP/2 200 OK\r\n\r\n'],
    ['HTTP/1.2', 'HTTP/1.2 200 OK\r\n\r\n'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['status 099', 'HTTP/1.1 099 X\r\n\r\n'],
    ['letters in status', 'HTTP/1.1 2x0 OK\r\n\r\n'],
    ['no space after status', 'HTTP/1.1 200OK\r\n\r\n'],
    ['control char in reason', 'HTTP/1.1 200 O\x00K\r\n\r\n'],
    ['bare LF in headers', 'HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n'],
    ['LF-only head (never completes)', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n'],
    ['space before colon', 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n'],
    ['CL and TE', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['conflicting CL', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n'],
    ['invalid CL', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n'],
    ['chunked not last', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ])('%s → WEDGE_ERR_ORIGIN_MALFORMED', (_name, text) => {
    expect(rejectCode(text)).toBe('WEDGE_ERR_ORIGIN_MALFORMED');
  });

  it('over-limit header section: rejected once limit bytes are buffered without a terminator', () => {
    const big = 'HTTP/1.1 200 OK\r\nX: ' + 'a'.repeat(200);
    expect(parseResponseHead(Buffer.from(big.slice(0, 99)), 'GET', { maxHeaderBytes: 100 })).toBeNull();
    expect(() => parseResponseHead(Buffer.from(big.slice(0, 100)), 'GET', { maxHeaderBytes: 100 })).toThrow(
      expect.objectContaining({ code: 'WEDGE_ERR_ORIGIN_MALFORMED' }),
    );
    const exact = 'HTTP/1.1 200 OK\r\nX: ' + 'a'.repeat(100 - 24) + '\r\n\r\n';
    expect(exact.length).toBe(100);
    expect(parseResponseHead(Buffer.from(exact), 'GET', { maxHeaderBytes: 100 })?.headerLength).toBe(100);
    expect(() => parseResponseHead(Buffer.from(exact + 'more'), 'GET', { maxHeaderBytes: 99 })).toThrow(WedgeError);
  });
});
