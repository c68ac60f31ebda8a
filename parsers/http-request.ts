/*
 * RequestParser: incremental, strict HTTP/1.1 request parser (RFC 9112) for the client → origin
 * direction of one connection.
 *
 * In: the client's bytes, in order, in chunks split anywhere (push(chunk)).
 * Out: for every request, in stream order, `head` (parsed head, exact raw bytes, stream offset
 * of its first byte), zero or more `body` events (raw body bytes as on the wire, chunk framing
 * included, so a relay can forward them verbatim) and `end` (stream offset just after the last
 * byte). Pipelined requests in one chunk yield several such sequences; chunk boundaries never
 * change the events other than how body bytes are sliced.
 *
 * Invariants:
 * - Offsets count every byte pushed since construction (plain numbers, never wrapped).
 *   Empty lines (CRLF) before a request line are skipped (RFC 9112 §2.2), at most
 *   `maxEmptyLines` of them; `start` is the offset of the request line, so skipped bytes sit
 *   between one request's `end` and the next `start`.
 * - The request line is checked as soon as its CRLF arrives, so a line without a version
 *   (HTTP/0.9, whose client waits for an answer without sending a header section) is refused at
 *   once; a request line longer than `maxRequestLineBytes` is refused while it arrives.
 * - At most `maxHeaderBytes` bytes of a head (counted from the end of the previous message,
 *   skipped empty lines included) are ever buffered; the 431 error is raised as soon as the
 *   head would exceed the limit.
 * - `body` events' data are views into the pushed chunks (no copy); `rawHead` is a copy.
 * - `upgrade` and `expectContinue` are only reported: the parser keeps reading HTTP after the
 *   message, so a relay that lets the origin switch protocols (101) must stop pushing bytes.
 *
 * Failure: every protocol violation is a WedgeError (see docs/errors.md):
 *   WEDGE_ERR_HTTP_MALFORMED        bad request line (HTTP/0.9 included) / too many empty lines
 *                                   before it / characters / bare CR or LF / obs-fold /
 *                                   missing or repeated Host in 1.1 / bad chunk framing
 *   WEDGE_ERR_HTTP_HEADER_TOO_LARGE header section (or chunk trailer section) over the limit
 *   WEDGE_ERR_HTTP_URI_TOO_LONG     request line over its limit
 *   WEDGE_ERR_HTTP_SMUGGLING        ambiguous framing: CL with TE, any repeated or invalid CL,
 *                                   TE not ending in a single exactly-understood `chunked`,
 *                                   TE in HTTP/1.0, repeated TE fields
 *   WEDGE_ERR_HTTP_UNSUPPORTED      CONNECT, or a transfer coding other than chunked (gzip, ...)
 * The violation is reported as a final `error` event, after the events of the same push that
 * preceded it (a good request pipelined before a bad one is still delivered whole): the relay
 * answers the good ones, then the error's status, and closes. Once failed, the parser stays
 * dead and every later push returns the same error event.
 *
 * Decision: any repeated Content-Length, even identical (`5, 5` or two `5` fields), is rejected
 * as smuggling. RFC 9110 §8.6 allows either; the wedge forwards the head verbatim to an origin
 * whose handling of duplicates it does not know, so it only accepts a single unambiguous value.
 */

import { WedgeError } from '../errors/codes.js';
import { ChunkedBodyFramer } from './chunked.js';
import {
  CR,
  firstHeader,
  type HeaderList,
  IS_TARGET_CHAR,
  IS_TCHAR,
  LF,
  listMembers,
  parseDecimalLength,
  parseFieldLines,
  SP,
  splitList,
} from './http-common.js';

export type RequestBody = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  headers: HeaderList;
  rawHead: Buffer;
  keepAlive: boolean;
  body: RequestBody;
  expectContinue: boolean;
  upgrade: boolean;
}

export type RequestEvent =
  | { type: 'head'; head: RequestHead; start: number }
  | { type: 'body'; data: Buffer }
  | { type: 'end'; end: number }
  | { type: 'error'; error: WedgeError };

export interface RequestParserOptions {
  maxHeaderBytes?: number;
  /** Longest request line (without its CRLF); by default only maxHeaderBytes bounds it. */
  maxRequestLineBytes?: number;
  /** Empty lines allowed before a request line; by default only maxHeaderBytes bounds them. */
  maxEmptyLines?: number;
}

interface RequestLine {
  method: string;
  target: string;
  version: '1.0' | '1.1';
}

const enum Phase {
  Head,
  LengthBody,
  ChunkedBody,
}

/** Registered codings that may precede chunked: valid, but the wedge does not relay them. */
const KNOWN_CODINGS = new Set(['gzip', 'x-gzip', 'deflate', 'compress', 'x-compress', 'br', 'zstd']);
const HTTP_1_PREFIX = Buffer.from('HTTP/1.', 'latin1');
const RETAINED_STORE_BYTES = 4096;
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const HOST_VALUE = /^[A-Za-z0-9\-._~!$&'()*+,;=%:[\]]*$/;

export class RequestParser {
  private readonly maxHeaderBytes: number;
  private readonly maxRequestLineBytes: number;
  private readonly maxEmptyLines: number;
  private failure: WedgeError | undefined;
  private phase = Phase.Head;
  /** Stream offset of the first byte of the current push. */
  private chunkOffset = 0;
  /** Stream offset where the current message (including skipped empty lines) begins. */
  private boundaryOffset = 0;

  // Head search state, as byte counts from the message boundary, so it survives moving the
  // partial head from the caller's chunk into `store`.
  private store: Buffer | undefined;
  private storeLength = 0;
  private scannedBytes = 0;
  private lineStart = 0;
  private requestLineStart = 0;
  private emptyLines = 0;
  private requestLine: RequestLine | undefined;

  private bodyRemaining = 0;
  private framer: ChunkedBodyFramer | undefined;

  constructor(options: RequestParserOptions = {}) {
    this.maxHeaderBytes = options.maxHeaderBytes ?? 16384;
    if (!Number.isSafeInteger(this.maxHeaderBytes) || this.maxHeaderBytes < 16) {
      throw new WedgeError('WEDGE_ERR_CONFIG', 'maxHeaderBytes must be an integer >= 16');
    }
    this.maxRequestLineBytes = options.maxRequestLineBytes ?? this.maxHeaderBytes;
    this.maxEmptyLines = options.maxEmptyLines ?? Infinity;
  }

  /** Bytes of a request head have arrived (beyond skipped empty lines), but not its end. */
  get headPending(): boolean {
    return this.phase === Phase.Head && !this.failure && this.chunkOffset - this.boundaryOffset > this.requestLineStart;
  }

  push(chunk: Buffer): RequestEvent[] {
    if (this.failure) return [{ type: 'error', error: this.failure }];
    const events: RequestEvent[] = [];
    try {
      this.consume(chunk, events);
    } catch (error) {
      this.failure =
        error instanceof WedgeError ? error : new WedgeError('WEDGE_ERR_HTTP_MALFORMED', String(error), { cause: error });
      events.push({ type: 'error', error: this.failure });
    }
    return events;
  }

  private consume(chunk: Buffer, events: RequestEvent[]): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.phase === Phase.Head) {
        pos = this.consumeHead(chunk, pos, events);
      } else if (this.phase === Phase.LengthBody) {
        const take = Math.min(this.bodyRemaining, chunk.length - pos);
        events.push({ type: 'body', data: chunk.subarray(pos, pos + take) });
        pos += take;
        this.bodyRemaining -= take;
        if (this.bodyRemaining === 0) this.finishMessage(pos, events);
      } else {
        const progress = this.framer!.push(pos === 0 ? chunk : chunk.subarray(pos));
        if (progress.consumed > 0) events.push({ type: 'body', data: chunk.subarray(pos, pos + progress.consumed) });
        pos += progress.consumed;
        if (progress.done) this.finishMessage(pos, events);
      }
    }
    this.chunkOffset += chunk.length;
  }

  private finishMessage(pos: number, events: RequestEvent[]): void {
    const end = this.chunkOffset + pos;
    events.push({ type: 'end', end });
    this.boundaryOffset = end;
    this.phase = Phase.Head;
    this.framer = undefined;
  }

  /** Consumes head bytes from chunk[pos..]; returns the new position. */
  private consumeHead(chunk: Buffer, pos: number, events: RequestEvent[]): number {
    if (this.storeLength === 0) {
      // Fast path: the head starts in this chunk; search it in place.
      const headEnd = this.scanForHeadEnd(chunk, pos, chunk.length);
      if (headEnd >= 0) {
        this.emitHead(chunk, pos, headEnd, events);
        return headEnd;
      }
      this.appendToStore(chunk, pos, chunk.length);
      return chunk.length;
    }
    const room = this.maxHeaderBytes - this.storeLength;
    if (room === 0) throw new WedgeError('WEDGE_ERR_HTTP_HEADER_TOO_LARGE', `over ${this.maxHeaderBytes} bytes`);
    const take = Math.min(room, chunk.length - pos);
    const previousLength = this.storeLength;
    this.appendToStore(chunk, pos, pos + take);
    const store = this.store!;
    const headEnd = this.scanForHeadEnd(store, 0, this.storeLength);
    if (headEnd < 0) return pos + take;
    this.emitHead(store, 0, headEnd, events);
    this.storeLength = 0;
    // An idle keep-alive connection should not pin a large buffer left by one big head.
    if (store.length > RETAINED_STORE_BYTES) this.store = undefined;
    return pos + (headEnd - previousLength);
  }

  private appendToStore(chunk: Buffer, from: number, to: number): void {
    const needed = this.storeLength + (to - from);
    if (!this.store || this.store.length < needed) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxHeaderBytes, Math.max(needed, 2 * (this.store?.length ?? 256))));
      if (this.store) this.store.copy(grown, 0, 0, this.storeLength);
      this.store = grown;
    }
    chunk.copy(this.store, this.storeLength, from, to);
    this.storeLength = needed;
  }

  /**
   * Looks for the empty line ending the head in view[boundary + scannedBytes, to), where
   * `boundary` is the view index of the message boundary. Returns the view index just after the
   * final CRLF, or -1 if not there yet. Rejects bare LF at once (it could otherwise be read as
   * a line end by another parser) and enforces the size limit.
   */
  private scanForHeadEnd(view: Buffer, boundary: number, to: number): number {
    let searchFrom = boundary + this.scannedBytes;
    for (;;) {
      let lf = view.indexOf(LF, searchFrom);
      if (lf >= to) lf = -1;
      const lineStart = boundary + this.lineStart;
      if (lf === -1) {
        this.scannedBytes = to - boundary;
        if (this.scannedBytes > this.maxHeaderBytes) {
          throw new WedgeError('WEDGE_ERR_HTTP_HEADER_TOO_LARGE', `over ${this.maxHeaderBytes} bytes`);
        }
        // The CR of a line's end may be the last byte here: it is not part of the line.
        if (!this.requestLine && to - lineStart - 1 > this.maxRequestLineBytes) this.requestLineTooLong();
        return -1;
      }
      if (lf === lineStart || view[lf - 1] !== CR) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'bare LF');
      const next = lf + 1;
      if (next - boundary > this.maxHeaderBytes) {
        throw new WedgeError('WEDGE_ERR_HTTP_HEADER_TOO_LARGE', `over ${this.maxHeaderBytes} bytes`);
      }
      if (lf - 1 === lineStart) {
        if (this.requestLine) {
          this.resetHeadSearch();
          return next;
        }
        if (++this.emptyLines > this.maxEmptyLines) {
          throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', `more than ${this.maxEmptyLines} empty lines before a request line`);
        }
        this.requestLineStart = next - boundary;
      } else if (!this.requestLine) {
        if (lf - 1 - lineStart > this.maxRequestLineBytes) this.requestLineTooLong();
        this.requestLine = parseRequestLine(view, lineStart, lf - 1);
      }
      this.lineStart = next - boundary;
      searchFrom = next;
    }
  }

  private requestLineTooLong(): never {
    throw new WedgeError('WEDGE_ERR_HTTP_URI_TOO_LONG', `request line over ${this.maxRequestLineBytes} bytes`);
  }

  private resetHeadSearch(): void {
    this.scannedBytes = 0;
    this.lineStart = 0;
    this.emptyLines = 0;
  }

  private emitHead(view: Buffer, boundary: number, headEnd: number, events: RequestEvent[]): void {
    const headStart = boundary + this.requestLineStart;
    const start = this.boundaryOffset + this.requestLineStart;
    this.requestLineStart = 0;
    const head = parseRequestHead(this.requestLine!, view, headStart, headEnd);
    this.requestLine = undefined;
    events.push({ type: 'head', head, start });
    if (head.body.kind === 'chunked') {
      this.phase = Phase.ChunkedBody;
      this.framer = new ChunkedBodyFramer({
        malformedCode: 'WEDGE_ERR_HTTP_MALFORMED',
        tooLargeCode: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE',
        maxTrailerBytes: this.maxHeaderBytes,
      });
    } else if (head.body.kind === 'length' && head.body.length > 0) {
      this.phase = Phase.LengthBody;
      this.bodyRemaining = head.body.length;
    } else {
      // Offset of the end = offset of the head's end; computed from the stream offset of the
      // message boundary because the head may have been assembled across pushes.
      const end = start + (headEnd - headStart);
      events.push({ type: 'end', end });
      this.boundaryOffset = end;
    }
  }
}

/** Parses the request line in buf[from, lineEnd) (lineEnd is its CR). */
function parseRequestLine(buf: Buffer, from: number, lineEnd: number): RequestLine {
  let i = from;
  while (i < lineEnd && IS_TCHAR[buf[i]!]) i++;
  if (i === from || buf[i] !== SP) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'invalid method');
  const method = buf.toString('latin1', from, i);

  const targetStart = i + 1;
  i = targetStart;
  while (i < lineEnd && IS_TARGET_CHAR[buf[i]!]) i++;
  // RFC 9112 §2.3: an HTTP/0.9 request (no version) may be refused; it is, like any other
  // request line that is not HTTP/1.x.
  if (i === lineEnd && i > targetStart) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'HTTP/0.9 request (no HTTP version)');
  if (i === targetStart || buf[i] !== SP) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'invalid request target');
  const target = buf.toString('latin1', targetStart, i);

  const versionStart = i + 1;
  if (lineEnd - versionStart !== 8 || buf.compare(HTTP_1_PREFIX, 0, 7, versionStart, versionStart + 7) !== 0) {
    throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'invalid HTTP version');
  }
  const minor = buf[versionStart + 7];
  if (minor !== 0x30 && minor !== 0x31) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'unsupported HTTP version');
  const version = minor === 0x31 ? '1.1' : '1.0';

  if (method === 'CONNECT') throw new WedgeError('WEDGE_ERR_HTTP_UNSUPPORTED', 'CONNECT');
  if (target === '*') {
    if (method !== 'OPTIONS') throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'asterisk-form target outside OPTIONS');
  } else if (target.charCodeAt(0) !== 0x2f /* / */ && !ABSOLUTE_FORM.test(target)) {
    throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'request target is neither origin-form nor absolute-form');
  }
  return { method, target, version };
}

/** Parses a complete head in buf[from, to) (to is just after CRLFCRLF) whose request line is `line`. */
function parseRequestHead(line: RequestLine, buf: Buffer, from: number, to: number): RequestHead {
  const { method, target, version } = line;
  const lineEnd = buf.indexOf(LF, from) - 1;
  const headers = parseFieldLines(buf, lineEnd + 2, to - 2, 'WEDGE_ERR_HTTP_MALFORMED');
  const framing = interpretHeaders(headers, version);

  return {
    method,
    target,
    version,
    headers,
    rawHead: Buffer.from(buf.subarray(from, to)),
    keepAlive: framing.keepAlive,
    body: framing.body,
    expectContinue: framing.expectContinue,
    upgrade: framing.upgrade,
  };
}

interface HeaderMeaning {
  body: RequestBody;
  keepAlive: boolean;
  expectContinue: boolean;
  upgrade: boolean;
}

function interpretHeaders(headers: HeaderList, version: '1.0' | '1.1'): HeaderMeaning {
  let hostCount = 0;
  let hostValue = '';
  let contentLength: string | undefined;
  let contentLengthCount = 0;
  let transferEncoding: string | undefined;
  let transferEncodingCount = 0;
  for (const [name, value] of headers) {
    if (name === 'host') {
      hostCount++;
      hostValue = value;
    } else if (name === 'content-length') {
      contentLengthCount++;
      contentLength = value;
    } else if (name === 'transfer-encoding') {
      transferEncodingCount++;
      transferEncoding = value;
    }
  }

  if (version === '1.1' && hostCount === 0) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'missing Host');
  if (hostCount > 1) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'more than one Host');
  if (hostCount === 1 && !HOST_VALUE.test(hostValue)) throw new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'invalid Host');

  let body: RequestBody = { kind: 'none' };
  if (transferEncoding !== undefined) {
    if (contentLength !== undefined) {
      throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', 'both Content-Length and Transfer-Encoding');
    }
    if (version === '1.0') throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', 'Transfer-Encoding in HTTP/1.0');
    if (transferEncodingCount > 1) throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', 'repeated Transfer-Encoding');
    checkTransferEncoding(transferEncoding);
    body = { kind: 'chunked' };
  } else if (contentLength !== undefined) {
    if (contentLengthCount > 1) throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', 'repeated Content-Length');
    const length = parseDecimalLength(contentLength);
    if (length === undefined) throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', 'invalid Content-Length');
    body = { kind: 'length', length };
  }

  const connection = listMembers(headers, 'connection');
  const keepAlive = version === '1.1' ? !connection.includes('close') : connection.includes('keep-alive');
  // RFC 9110 §10.1.1: a server ignores 100-continue from an HTTP/1.0 client.
  const expect = firstHeader(headers, 'expect');
  const expectContinue = version === '1.1' && expect !== undefined && expect.toLowerCase() === '100-continue';
  const upgrade = connection.includes('upgrade') && firstHeader(headers, 'upgrade') !== undefined;
  return { body, keepAlive, expectContinue, upgrade };
}

/** Accepts exactly one coding, `chunked` (any case, no parameters). */
function checkTransferEncoding(value: string): void {
  const codings = splitList(value).map((coding) => coding.toLowerCase());
  const last = codings[codings.length - 1];
  if (last !== 'chunked') throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', `Transfer-Encoding does not end in chunked: ${value}`);
  for (let k = 0; k < codings.length - 1; k++) {
    const coding = codings[k]!;
    if (!KNOWN_CODINGS.has(coding)) {
      throw new WedgeError('WEDGE_ERR_HTTP_SMUGGLING', `Transfer-Encoding not understood: ${value}`);
    }
  }
  if (codings.length > 1) throw new WedgeError('WEDGE_ERR_HTTP_UNSUPPORTED', `transfer coding other than chunked: ${value}`);
}
