import { describe, expect, it } from 'vitest';
import { StreamMap } from '../../stream-map/stream-map.js';
import { requestHead, responseHead } from './stream-map-fixtures.js';

const DATE = 'Wed, 02 Jul 2025 10:00:00 GMT';

function verdict(method: string, response: string): string | true {
  const map = new StreamMap();
  const request = requestHead(`${method} / HTTP/1.1\r\nHost: h\r\n${method === 'POST' ? 'Content-Length: 0\r\n' : ''}\r\n`);
  map.beginRequest(0, request);
  map.endRequest(request.rawHead.length);
  const exchange = map.beginResponse(0, responseHead(response, method));
  return exchange.resumable ? true : exchange.notResumableReason!;
}

describe('StreamMap resumable rule', () => {
  it.each([
    ['GET 200 strong ETag', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: "x"\r\n\r\n', true],
    ['GET 200 empty strong ETag', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: ""\r\n\r\n', true],
    ['GET 200 weak ETag', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: W/"x"\r\n\r\n', 'weak ETag cannot be used in If-Range'],
    [
      'GET 200 weak ETag with an old Last-Modified',
      'GET',
      `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 9\r\nETag: W/"x"\r\n\r\n`,
      'weak ETag cannot be used in If-Range',
    ],
    ['GET 200 unquoted ETag', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: x\r\n\r\n', 'malformed ETag'],
    [
      'GET 200 Last-Modified one second before Date',
      'GET',
      `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nLast-Modified: Wed, 02 Jul 2025 09:59:59 GMT\r\nContent-Length: 9\r\n\r\n`,
      true,
    ],
    [
      'GET 200 Last-Modified equal to Date',
      'GET',
      `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nLast-Modified: ${DATE}\r\nContent-Length: 9\r\n\r\n`,
      'Last-Modified less than 1 s before Date is not a strong validator',
    ],
    [
      'GET 200 Last-Modified without Date',
      'GET',
      'HTTP/1.1 200 OK\r\nLast-Modified: Wed, 02 Jul 2025 09:00:00 GMT\r\nContent-Length: 9\r\n\r\n',
      'Last-Modified without a Date is not a strong validator',
    ],
    ['GET 200 no validator', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n', 'no validator (ETag or Last-Modified)'],
    ['GET 200 chunked', 'GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "x"\r\n\r\n', 'chunked body: wire bytes depend on the origin'],
    ['GET 200 until close', 'GET', 'HTTP/1.1 200 OK\r\nETag: "x"\r\n\r\n', 'body delimited by connection close: length unknown'],
    ['GET 206 single range', 'GET', 'HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-8/20\r\nContent-Length: 9\r\nETag: "x"\r\n\r\n', true],
    [
      'GET 206 multipart',
      'GET',
      'HTTP/1.1 206 Partial\r\nContent-Type: multipart/byteranges; boundary=b\r\nContent-Length: 90\r\nETag: "x"\r\n\r\n',
      '206 without a single-range Content-Range',
    ],
    ['GET 404 with body', 'GET', 'HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nETag: "x"\r\n\r\n', 'status 404 is not a rangeable representation'],
    ['POST 200 with body', 'POST', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: "x"\r\n\r\n', 'POST response body cannot be fetched again'],
    ['POST 204 (no body)', 'POST', 'HTTP/1.1 204 No Content\r\n\r\n', true],
    ['HEAD 200 (headers only)', 'HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n', true],
    ['GET 304 (no body)', 'GET', 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', true],
    ['GET 404 Content-Length: 0', 'GET', 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', true],
    ['GET 101', 'GET', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n', 'protocol switched (101)'],
  ])('%s', (_name, method, response, expectation) => {
    expect(verdict(method, response)).toBe(expectation);
  });
});
