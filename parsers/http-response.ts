/*
 * Response head parser for the origin → client direction.
 *
 * In: the bytes received from the origin since the end of the previous response (the caller
 * accumulates them), and the method of the request being answered.
 * Out: null while the header section is incomplete; otherwise the parsed head with its exact
 * length, so the caller knows that buf[headerLength..] is body (or the next response), and the
 * body framing per RFC 9112 §6.3:
 *   - response to HEAD, any 1xx, 204, 304          → none (even with Content-Length)
 *   - 101 Switching Protocols                        → until-close (the connection is a tunnel)
 *   - Transfer-Encoding whose final coding is chunked → chunked (use ChunkedBodyFramer)
 *   - Transfer-Encoding not ending in chunked        → until-close
 *   - Content-Length                                 → length
 *   - otherwise                                      → until-close
 *
 * Interim responses: a 1xx other than 101 is returned like any head (body none). The caller
 * relays its `headerLength` bytes and calls parseResponseHead again on the bytes after it;
 * `isInterimResponse(head)` says when to do so. The stream map records interim heads as part of
 * the exchange's header bytes (see stream-map.ts).
 *
 * The origin is trusted less than it looks: strict like the request parser (bare LF, bare CR,
 * obs-fold, invalid characters are errors) except that the reason phrase may be absent without
 * its space. Ambiguous framing is an error rather than resolved, because the wedge relays the
 * bytes verbatim and must know exactly where the response ends: both Content-Length and
 * Transfer-Encoding, or differing Content-Lengths, throw. Identical repeated Content-Lengths
 * (`5, 5`) are accepted as 5. Over-limit header sections (default 65536 bytes) throw too.
 * Every failure is WedgeError WEDGE_ERR_ORIGIN_MALFORMED.
 *
 * Stateless: each call rescans buf, which is bounded by the limit, and only parses fields once
 * the terminating CRLFCRLF is present.
 */

import { WedgeError } from '../errors/codes.js';
import {
  CR,
  firstHeader,
  type HeaderList,
  headerValues,
  LF,
  listMembers,
  parseDecimalLength,
  parseFieldLines,
  SP,
  splitList,
} from './http-common.js';

export type ResponseBody =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  | { kind: 'until-close' };

export interface ContentRange {
  start: number;
  end: number;
  total?: number;
}

export interface ResponseHead {
  status: number;
  reason: string;
  version: '1.0' | '1.1';
  headers: HeaderList;
  headerLength: number;
  rawHead: Buffer;
  body: ResponseBody;
  contentLength?: number;
  etag?: string;
  lastModified?: string;
  /** The Date header, needed to decide whether Last-Modified is a strong validator. */
  date?: string;
  acceptRanges?: string;
  contentRange?: ContentRange;
  keepAlive: boolean;
}

export interface ResponseParseOptions {
  maxHeaderBytes?: number;
}

const DEFAULT_MAX_RESPONSE_HEADER_BYTES = 65536;
const HEAD_TERMINATOR = Buffer.from('\r\n\r\n', 'latin1');
const BARE_LF_PAIR = Buffer.from('\n\n', 'latin1');
const STATUS_LINE_PREFIX = Buffer.from('HTTP/1.', 'latin1');
const CONTENT_RANGE = /^bytes ([0-9]{1,16})-([0-9]{1,16})\/([0-9]{1,16}|\*)$/;

function malformed(detail: string): never {
  throw new WedgeError('WEDGE_ERR_ORIGIN_MALFORMED', detail);
}

export function parseResponseHead(
  buf: Buffer,
  requestMethod: string,
  options: ResponseParseOptions = {},
): ResponseHead | null {
  const limit = options.maxHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES;
  const terminator = buf.indexOf(HEAD_TERMINATOR);
  if (terminator === -1 || terminator + 4 > limit) {
    if (buf.length >= limit) malformed(`response header section over ${limit} bytes`);
    // A run of LF-only lines would never produce CRLFCRLF: fail now rather than at the limit.
    if (buf.indexOf(BARE_LF_PAIR) !== -1) malformed('bare LF in response header section');
    checkStatusLinePrefix(buf);
    return null;
  }
  const headerLength = terminator + 4;

  const lf = buf.indexOf(LF);
  const lineEnd = lf - 1;
  if (lineEnd < 0 || buf[lineEnd] !== CR) malformed('bare LF in status line');
  checkStatusLinePrefix(buf);
  if (lineEnd < 12) malformed('status line too short');
  const minor = buf[7];
  if ((minor !== 0x30 && minor !== 0x31) || buf[8] !== SP) malformed('unsupported HTTP version');
  const version = minor === 0x31 ? '1.1' : '1.0';
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const digit = buf[i]! - 0x30;
    if (digit < 0 || digit > 9) malformed('status code is not three digits');
    status = status * 10 + digit;
  }
  if (status < 100) malformed('status code below 100');
  let reason = '';
  if (lineEnd > 12) {
    if (buf[12] !== SP) malformed('no space after status code');
    for (let i = 13; i < lineEnd; i++) {
      const c = buf[i]!;
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) malformed('control character in reason phrase');
    }
    reason = buf.toString('latin1', 13, lineEnd);
  }

  const headers = parseFieldLines(buf, lf + 1, terminator + 2, 'WEDGE_ERR_ORIGIN_MALFORMED');
  const head: ResponseHead = {
    status,
    reason,
    version,
    headers,
    headerLength,
    rawHead: Buffer.from(buf.subarray(0, headerLength)),
    body: { kind: 'none' },
    keepAlive: false,
  };
  describeRepresentation(head, headers);
  head.body = responseBody(head, headers, requestMethod);
  head.keepAlive =
    head.body.kind !== 'until-close' &&
    (version === '1.1'
      ? !listMembers(headers, 'connection').includes('close')
      : listMembers(headers, 'connection').includes('keep-alive'));
  return head;
}

/** True for 1xx responses after which the final response follows (all but 101). */
export function isInterimResponse(head: ResponseHead): boolean {
  return head.status >= 100 && head.status < 200 && head.status !== 101;
}

/** Rejects, as early as possible, bytes that cannot begin "HTTP/1.x ". */
function checkStatusLinePrefix(buf: Buffer): void {
  const n = Math.min(buf.length, STATUS_LINE_PREFIX.length);
  if (buf.compare(STATUS_LINE_PREFIX, 0, n, 0, n) !== 0) malformed('response does not start with HTTP/1.');
}

function describeRepresentation(head: ResponseHead, headers: HeaderList): void {
  const lengths = headerValues(headers, 'content-length');
  if (lengths.length > 0) {
    let length: number | undefined;
    for (const value of lengths) {
      for (const member of splitList(value)) {
        const parsed = parseDecimalLength(member);
        if (parsed === undefined) malformed(`invalid Content-Length: ${value}`);
        if (length !== undefined && parsed !== length) malformed('conflicting Content-Length values');
        length = parsed;
      }
    }
    head.contentLength = length!;
  }
  const etag = firstHeader(headers, 'etag');
  if (etag !== undefined) head.etag = etag;
  const lastModified = firstHeader(headers, 'last-modified');
  if (lastModified !== undefined) head.lastModified = lastModified;
  const date = firstHeader(headers, 'date');
  if (date !== undefined) head.date = date;
  const acceptRanges = firstHeader(headers, 'accept-ranges');
  if (acceptRanges !== undefined) head.acceptRanges = acceptRanges;
  const contentRange = firstHeader(headers, 'content-range');
  if (contentRange !== undefined) {
    const range = parseContentRange(contentRange);
    if (range) head.contentRange = range;
  }
}

/** `bytes first-last/total` or `bytes first-last/*`; anything else (incl. `bytes * /n`) is undefined. */
export function parseContentRange(value: string): ContentRange | undefined {
  const match = CONTENT_RANGE.exec(value);
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) return undefined;
  if (match[3] === '*') return { start, end };
  const total = Number(match[3]);
  if (end >= total) return undefined;
  return { start, end, total };
}

function responseBody(head: ResponseHead, headers: HeaderList, requestMethod: string): ResponseBody {
  const status = head.status;
  if (status === 101) return { kind: 'until-close' };
  if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304) return { kind: 'none' };
  if (requestMethod === 'CONNECT' && status < 300) return { kind: 'until-close' };

  const transferEncodings = headerValues(headers, 'transfer-encoding');
  if (transferEncodings.length > 0) {
    if (head.contentLength !== undefined) malformed('both Content-Length and Transfer-Encoding');
    const codings = transferEncodings.flatMap(splitList).map((coding) => coding.toLowerCase());
    if (codings.some((coding) => coding === '')) malformed('empty transfer coding');
    const chunkedCount = codings.filter((coding) => coding === 'chunked').length;
    if (codings[codings.length - 1] === 'chunked' && chunkedCount === 1) return { kind: 'chunked' };
    if (chunkedCount > 0) malformed('chunked is not the single final transfer coding');
    return { kind: 'until-close' };
  }
  if (head.contentLength !== undefined) return { kind: 'length', length: head.contentLength };
  return { kind: 'until-close' };
}
