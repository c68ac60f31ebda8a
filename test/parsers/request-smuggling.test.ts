import { describe, expect, it } from 'vitest';
import { expectRejected, parseEveryWay } from './helpers.js';

const H = 'POST / HTTP/1.1\r\nHost: h\r\n';

describe('RequestParser: smuggling vectors are rejected', () => {
  it.each([
    ['CL + TE', `${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['TE: chunked + CL', `${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
    ['TE: chunked, identity', `${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`],
    ['TE: identity, chunked', `${H}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n`],
    ['TE: xchunked', `${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
    ['TE: chunked-false', `${H}Transfer-Encoding: chunked-false\r\n\r\n0\r\n\r\n`],
    ['TE: chunked;q=1', `${H}Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n`],
    ['TE: chunked, chunked', `${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`],
    ['TE: empty', `${H}Transfer-Encoding: \r\n\r\n`],
    ['TE: trailing comma', `${H}Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n`],
    ['TE: gzip only', `${H}Transfer-Encoding: gzip\r\n\r\n`],
    ['duplicate TE fields', `${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['chunked in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['CL: +5', `${H}Content-Length: +5\r\n\r\nhello`],
    ['CL: -1', `${H}Content-Length: -1\r\n\r\n`],
    ['CL: 0x5', `${H}Content-Length: 0x5\r\n\r\nhello`],
    ['CL: 5 5 (inner space)', `${H}Content-Length: 5 5\r\n\r\nhello`],
    ['CL: list of different values', `${H}Content-Length: 5, 6\r\n\r\nhello!`],
    ['CL: two fields with different values', `${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
    ['CL: identical duplicate list (decision: rejected)', `${H}Content-Length: 5, 5\r\n\r\nhello`],
    ['CL: identical duplicate fields (decision: rejected)', `${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
    ['CL: empty', `${H}Content-Length: \r\n\r\n`],
    ['CL: beyond MAX_SAFE_INTEGER', `${H}Content-Length: 9007199254740992\r\n\r\n`],
    ['CL: 30 digits', `${H}Content-Length: 100000000000000000000000000000\r\n\r\n`],
    ['CL: 1e3', `${H}Content-Length: 1e3\r\n\r\n`],
  ])('%s → WEDGE_ERR_HTTP_SMUGGLING', (_name, input) => {
    expectRejected(input, 'WEDGE_ERR_HTTP_SMUGGLING');
  });

  it.each([
    ['TE: gzip, chunked', `${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
    ['CONNECT', 'CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n'],
  ])('%s → WEDGE_ERR_HTTP_UNSUPPORTED', (_name, input) => {
    expectRejected(input, 'WEDGE_ERR_HTTP_UNSUPPORTED');
  });

  it.each([
    ['obs-fold in Content-Length', `${H}Content-Length: 5\r\n 6\r\n\r\nhello`],
    ['obs-fold with tab', `${H}X-A: a\r\n\tb\r\n\r\n`],
    ['space before colon', `${H}Content-Length : 5\r\n\r\nhello`],
    ['tab before colon', `${H}Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n`],
    ['leading space before the first header (obs-fold)', 'POST / HTTP/1.1\r\n Content-Length: 5\r\nHost: h\r\n\r\nhello'],
    ['bare LF ends a header line', `${H}Content-Length: 5\nX: y\r\n\r\nhello`],
    ['bare LF header terminator', `${H}Content-Length: 5\n\nhello`],
    ['bare LF request line', 'GET / HTTP/1.1\nHost: h\r\n\r\n'],
    ['bare CR inside a value', `${H}X-A: a\rb\r\n\r\n`],
    ['bare CR as line end', `${H}X-A: a\rContent-Length: 5\r\n\r\nhello`],
    ['NUL in a header value', `${H}X-A: a\x00b\r\n\r\n`],
    ['NUL in a header name', `${H}X-\x00A: b\r\n\r\n`],
    ['DEL in a header value', `${H}X-A: a\x7fb\r\n\r\n`],
    ['chunk size in hex with 0x prefix', `${H}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`],
    ['chunk size with a trailing space and no extension', `${H}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n`],
    ['chunk size with a leading space', `${H}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n`],
    ['negative chunk size', `${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n`],
    ['absurd chunk size (overflow)', `${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n0\r\n\r\n`],
    ['chunk size with 5000 leading zeros', `${H}Transfer-Encoding: chunked\r\n\r\n${'0'.repeat(5000)}5\r\nhello\r\n0\r\n\r\n`],
    ['chunk size just over MAX_SAFE_INTEGER', `${H}Transfer-Encoding: chunked\r\n\r\n20000000000000\r\n`],
    ['chunk data longer than its size (missing CRLF)', `${H}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n`],
    ['chunk data followed by bare LF', `${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n`],
    ['chunk size line ends with bare LF', `${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n`],
    ['last chunk missing its final CRLF (next request follows)', `${H}Transfer-Encoding: chunked\r\n\r\n0\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n`],
    ['obs-fold in trailers', `${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n`],
    ['NUL in chunk extension', `${H}Transfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n`],
  ])('%s → WEDGE_ERR_HTTP_MALFORMED', (_name, input) => {
    expectRejected(input, 'WEDGE_ERR_HTTP_MALFORMED');
  });

  it('accepts the largest chunk size that fits (and waits for its data)', () => {
    const outcome = parseEveryWay(`${H}Transfer-Encoding: chunked\r\n\r\n1fffffffffffff\r\nabc`);
    expect(outcome.error).toBeUndefined();
    expect(outcome.events.map((e) => e.type)).toEqual(['head', 'body']);
  });

  it('a chunked body missing its final CRLF waits instead of ending early', () => {
    const outcome = parseEveryWay(`${H}Transfer-Encoding: chunked\r\n\r\n0\r\n`);
    expect(outcome.events.map((e) => e.type)).toEqual(['head', 'body']);
  });

  it('accepts Transfer-Encoding: Chunked (coding names are case-insensitive)', () => {
    expect(parseEveryWay(`${H}Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n`).error).toBeUndefined();
  });

  it('accepts optional whitespace around the Content-Length value (RFC 9110 OWS)', () => {
    const outcome = parseEveryWay(`${H}Content-Length:   5 \t\r\n\r\nhello`);
    expect(outcome.error).toBeUndefined();
    expect(outcome.events[1]).toEqual({ type: 'body', data: 'hello' });
  });
});
