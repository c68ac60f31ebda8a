import { describe, expect, it } from 'vitest';
import { RequestParser } from '../../parsers/http-request.js';
import { WedgeError } from '../../errors/codes.js';
import { expectRejected } from './helpers.js';

describe('RequestParser: malformed request lines and heads', () => {
  it.each([
    ['missing Host in 1.1', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
    ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['Host with a space inside', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n'],
    ['Host with a slash', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n'],
    ['empty method', ' / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['method with a non-token character', 'GE(T / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['tab instead of space', 'GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['target with a control character', 'GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['target with obs-text', 'GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['relative target', 'GET a/b HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['asterisk outside OPTIONS', 'GET * HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['HTTP/0.9 request line', 'GET /\r\n\r\n'],
    ['lower-case version', 'GET / http/1.1\r\nHost: h\r\n\r\n'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: h\r\n\r\n'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: h\r\n\r\n'],
    ['trailing space after version', 'GET / HTTP/1.1 \r\nHost: h\r\n\r\n'],
    ['extra token after version', 'GET / HTTP/1.1 x\r\nHost: h\r\n\r\n'],
    ['bare CR in the request line', 'GET /\r HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['empty header name', 'GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n'],
    ['header line without colon', 'GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n'],
    ['non-token character in a name', 'GET / HTTP/1.1\r\nHost: h\r\nX(A): v\r\n\r\n'],
    ['leading bare LF', '\nGET / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['binary garbage', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
  ])('%s → WEDGE_ERR_HTTP_MALFORMED', (_name, input) => {
    expectRejected(input, 'WEDGE_ERR_HTTP_MALFORMED');
  });

  it.each([
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n', 'obs-fold'],
    ['space before colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n', 'whitespace between header name and colon'],
    ['bare CR', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n', 'bare CR'],
    ['NUL', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n', 'control character'],
  ])('the error message names the fault: %s', (_name, input, words) => {
    const events = new RequestParser().push(Buffer.from(input, 'latin1'));
    const last = events.at(-1);
    expect(last?.type).toBe('error');
    expect(last?.type === 'error' && last.error.message).toContain(words);
  });

  it('a failed parser stays dead: every later push returns the same error', () => {
    const parser = new RequestParser();
    const first = parser.push(Buffer.from('GET / HTTP/1.1\nHost: h\r\n\r\n')).at(-1);
    expect(first?.type === 'error' && first.error).toBeInstanceOf(WedgeError);
    expect(parser.push(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\n\r\n'))).toEqual([first]);
    expect(parser.push(Buffer.alloc(0))).toEqual([first]);
  });

  it('requests completed before the violation in the same push are still delivered', () => {
    const events = new RequestParser().push(Buffer.from('GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\nHost: h\n\n'));
    expect(events.map((e) => e.type)).toEqual(['head', 'end', 'error']);
  });
});
