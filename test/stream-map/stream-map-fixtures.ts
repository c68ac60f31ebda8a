/* Small builders for stream map tests: request and response heads from text. */
import { RequestParser, type RequestHead } from '../../parsers/http-request.js';
import { parseResponseHead, type ResponseHead } from '../../parsers/http-response.js';

export function requestHead(text: string): RequestHead {
  const event = new RequestParser().push(Buffer.from(text, 'latin1'))[0];
  if (event?.type !== 'head') throw new Error('not a request head');
  return event.head;
}

export function responseHead(text: string, method = 'GET'): ResponseHead {
  const head = parseResponseHead(Buffer.from(text, 'latin1'), method);
  if (!head) throw new Error('incomplete response head');
  return head;
}

export const GET = (target = '/') => requestHead(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`);
export const OK = (length: number, tag = '"v1"') =>
  responseHead(`HTTP/1.1 200 OK\r\nContent-Length: ${length}\r\nETag: ${tag}\r\n\r\n`);
