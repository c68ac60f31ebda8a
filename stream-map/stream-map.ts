/*
 * StreamMap: where every HTTP exchange of one client connection sits in its two byte streams,
 * so that another replica can resume the connection at any server → client offset.
 *
 * In: the relay's record calls, in stream order: beginRequest / endRequest with client → server
 * offsets, beginResponse / endResponse with server → client offsets (the response head with any
 * interim 1xx heads that preceded it). Out: locate(offset), the meaning of a server → client
 * offset (typically the client's ACK at takeover), and toJSON()/fromJSON() for soft state.
 *
 * Invariants (a violating record call throws WedgeError WEDGE_ERR_STREAM_MAP: a map that is
 * wrong must never be used to splice bytes into a stream):
 * - Requests are recorded in order and do not overlap; responses answer requests in order.
 * - Responses are contiguous and gap-free: each begins exactly where the previous ended (the
 *   first at the map's base, 0 unless trimmed), so every offset in [base, last known byte) is
 *   described. A response of known length ends exactly at responseStart + headerLength +
 *   bodyLength.
 * - `head` is the exact header bytes the client received for the exchange: interim 1xx heads
 *   followed by the final head. Offsets are plain numbers (bytes since the connection began).
 *
 * Resumable rule (`resumable`, decided when the response begins; the reason says why not):
 * - A response without body bytes (HEAD, 1xx+final without body, 204, 304, Content-Length: 0)
 *   is resumable for any method and status: the recorded head is everything.
 * - Otherwise it must be a GET answered 200, or 206 with a single Content-Range, with a
 *   Content-Length body, and a strong validator usable in If-Range (RFC 9110 §13.1.5): a strong
 *   ETag (not W/), or, when there is no ETag at all, a Last-Modified that is strong per
 *   §8.8.2.2, i.e. the response's Date is at least one second later. A weak ETag disqualifies
 *   the response even if Last-Modified is present, since If-Range may then carry neither.
 *   ifRangeValidator(exchange) returns the value to send.
 * Chunked and until-close bodies, other methods and statuses, and responses without a
 * validator are relayed normally but are not resumable past their first byte.
 *
 * locate(offset) answers:
 *   headers       offset inside the recorded head: resend head[offset..], then the body
 *   body          inside a resumable body: ask the origin for resumeRange(exchange,
 *                 bodyOffset) with If-Range: ifRangeValidator(exchange)
 *   between       at the end of `after` (undefined: nothing retained before) and before any
 *                 byte of the next response. `next` is the oldest request that has no response
 *                 begun: the adopter must answer it or abort. If `after.keepAlive` is false the
 *                 connection was finished.
 *   unresumable   inside (or at the first byte of) a response that is not resumable
 *   out-of-range  before the retained map, beyond the last byte it knows was sent, or not an
 *                 offset at all
 * trim(offset, keep) drops exchanges that end at or before offset (the client has acknowledged
 * them), keeping the latest `keep` responded exchanges (at least one, so that `between` can still
 * name it).
 */

import { WedgeError } from '../errors/codes.js';
import { RequestParser, type RequestHead } from '../parsers/http-request.js';
import { type ContentRange, isInterimResponse, type ResponseBody, type ResponseHead } from '../parsers/http-response.js';

export interface Validator {
  etag?: string;
  lastModified?: string;
}

export interface Exchange {
  index: number;
  method: string;
  target: string;
  /** Exact request head bytes, to issue the same request (same Accept-Encoding, ...) again. */
  requestHead: Buffer;
  /** The request body's wire bytes, when it has one of at most REQUEST_LOG_BYTES (the replay log). */
  requestBody?: Buffer;
  /** The body was larger than the log holds: the request cannot be sent again. */
  requestBodyTooLarge?: boolean;
  requestStart: number;
  requestEnd?: number;
  responseStart?: number;
  head?: Buffer;
  headerLength?: number;
  bodyKind?: ResponseBody['kind'];
  /** Body bytes on the wire; undefined while unknown (chunked, until-close). */
  bodyLength?: number;
  responseEnd?: number;
  status?: number;
  keepAlive?: boolean;
  contentRange?: ContentRange;
  validator: Validator;
  resumable: boolean;
  notResumableReason?: string;
}

export type Position =
  | { kind: 'headers'; exchange: Exchange; offset: number }
  | { kind: 'body'; exchange: Exchange; bodyOffset: number }
  | { kind: 'between'; after?: Exchange; next?: Exchange }
  | { kind: 'unresumable'; exchange: Exchange; reason: string }
  | { kind: 'out-of-range'; reason: string };

/** Serialisable form: Buffers as base64 strings, absent fields omitted. */
export interface StreamMapJSON {
  version: 1;
  base: number;
  nextIndex: number;
  exchanges: ExchangeJSON[];
}

export type ExchangeJSON = Omit<Exchange, 'requestHead' | 'head' | 'requestBody'> & { requestHead: string; head?: string; requestBody?: string };

/** The longest request body kept in the map (and so in the soft state) for a replay. */
export const REQUEST_LOG_BYTES = 4096;

/**
 * Why the request of `exchange` cannot be sent to an origin again, if so. GET and HEAD can be;
 * any other method only with `stateful` (the origin restarts from a snapshot that accounts for
 * every earlier exchange, so the request takes effect once), and only with its body in the log.
 */
export function notReplayable(exchange: Exchange, stateful: boolean): string | undefined {
  if (exchange.requestEnd === undefined) return `request ${exchange.index} was still arriving`;
  if (exchange.method !== 'GET' && exchange.method !== 'HEAD' && !stateful) return `${exchange.method} request in flight cannot be replayed without a snapshot`;
  if (exchange.requestBodyTooLarge) return `request ${exchange.index}'s body is larger than the ${REQUEST_LOG_BYTES}-byte replay log`;
  const bodyLength = exchange.requestEnd - exchange.requestStart - exchange.requestHead.length;
  if (bodyLength > 0 && !exchange.requestBody) return `request ${exchange.index}'s body was not logged`;
  return undefined;
}

const NOT_BEGUN = 'response not begun';

export type StreamMapChange = 'request-begun' | 'request-ended' | 'response-begun' | 'response-ended' | 'trimmed';

export class StreamMap {
  /** Told after every successful record call: the owner advertises the change. */
  onChange: ((change: StreamMapChange) => void) | undefined;
  /** Server → client offset where the retained map begins (0 until trimmed). */
  private base = 0;
  private nextIndex = 0;
  private readonly exchanges: Exchange[] = [];
  /** exchanges[0 .. respondedCount) have a response begun. */
  private respondedCount = 0;

  get retained(): readonly Exchange[] {
    return this.exchanges;
  }

  beginRequest(start: number, head: RequestHead): Exchange {
    const exchange = this.addRequest(start, head.method, head.target, head.rawHead);
    parsedRequests.set(exchange, head);
    this.onChange?.('request-begun');
    return exchange;
  }

  private addRequest(start: number, method: string, target: string, requestHead: Buffer): Exchange {
    checkOffset(start, 'request start');
    const previous = this.exchanges[this.exchanges.length - 1];
    if (previous && (previous.requestEnd === undefined || start < previous.requestEnd)) {
      fail(`request at ${start} begins before the previous request ended`);
    }
    const exchange: Exchange = {
      index: this.nextIndex++,
      method,
      target,
      requestHead,
      requestStart: start,
      validator: {},
      resumable: false,
      notResumableReason: NOT_BEGUN,
    };
    this.exchanges.push(exchange);
    return exchange;
  }

  /** `body`: the request body's wire bytes (checked against the request's length), or
   * 'too-large' when they did not fit the log; undefined: not logged. */
  endRequest(end: number, body?: Buffer | 'too-large'): void {
    checkOffset(end, 'request end');
    const exchange = this.exchanges[this.exchanges.length - 1];
    if (!exchange || exchange.requestEnd !== undefined) fail('endRequest without an open request');
    if (end < exchange.requestStart + exchange.requestHead.length) fail(`request end ${end} inside its head`);
    const bodyLength = end - exchange.requestStart - exchange.requestHead.length;
    if (body === 'too-large') exchange.requestBodyTooLarge = true;
    else if (body !== undefined) {
      if (body.length !== bodyLength || body.length > REQUEST_LOG_BYTES) fail(`request body of ${body.length} bytes logged for ${bodyLength} on the wire`);
      if (body.length > 0) exchange.requestBody = body;
    }
    exchange.requestEnd = end;
    this.onChange?.('request-ended');
  }

  /**
   * Records the final response head of the oldest unanswered request. `responseStart` is the
   * offset of the first byte of `interimHeads` (the raw 1xx heads relayed before the final one,
   * oldest first) or, without interim heads, of `head` itself.
   */
  beginResponse(responseStart: number, head: ResponseHead, interimHeads: readonly Buffer[] = []): Exchange {
    checkOffset(responseStart, 'response start');
    if (isInterimResponse(head)) fail('an interim 1xx head is recorded with the final head, not alone');
    const exchange = this.exchanges[this.respondedCount];
    if (!exchange) fail('response without an outstanding request');
    const previous = this.exchanges[this.respondedCount - 1];
    const expectedStart = previous ? knownEnd(previous) : this.base;
    if (expectedStart === undefined) fail('response begins before the previous response ended');
    // A response of known length has ended where its length says, recorded or not (a map
    // adopted from soft state may predate its end).
    if (previous) previous.responseEnd = expectedStart;
    if (responseStart !== expectedStart) fail(`response begins at ${responseStart}, expected ${expectedStart}`);

    const bytes = interimHeads.length === 0 ? head.rawHead : Buffer.concat([...interimHeads, head.rawHead]);
    exchange.responseStart = responseStart;
    exchange.head = bytes;
    exchange.headerLength = bytes.length;
    exchange.bodyKind = head.body.kind;
    exchange.status = head.status;
    exchange.keepAlive = head.keepAlive;
    if (head.body.kind === 'none') exchange.bodyLength = 0;
    else if (head.body.kind === 'length') exchange.bodyLength = head.body.length;
    if (head.contentRange) exchange.contentRange = head.contentRange;
    exchange.validator = {};
    if (head.etag !== undefined) exchange.validator.etag = head.etag;
    if (head.lastModified !== undefined) exchange.validator.lastModified = head.lastModified;
    const reason = whyNotResumable(exchange, head);
    exchange.resumable = reason === undefined;
    if (reason === undefined) delete exchange.notResumableReason;
    else exchange.notResumableReason = reason;
    this.respondedCount++;
    this.onChange?.('response-begun');
    return exchange;
  }

  endResponse(responseEnd: number): void {
    checkOffset(responseEnd, 'response end');
    const exchange = this.exchanges[this.respondedCount - 1];
    if (!exchange || exchange.responseEnd !== undefined) fail('endResponse without an open response');
    const headEnd = exchange.responseStart! + exchange.headerLength!;
    if (exchange.bodyLength !== undefined && responseEnd !== headEnd + exchange.bodyLength) {
      fail(`response ends at ${responseEnd}, its head and body say ${headEnd + exchange.bodyLength}`);
    }
    if (responseEnd < headEnd) fail(`response end ${responseEnd} inside its head`);
    exchange.responseEnd = responseEnd;
    this.onChange?.('response-ended');
  }

  locate(offset: number): Position {
    if (!Number.isSafeInteger(offset) || offset < 0) return { kind: 'out-of-range', reason: `not a stream offset: ${offset}` };
    if (offset < this.base) return { kind: 'out-of-range', reason: `offset ${offset} precedes the retained map (${this.base})` };
    const k = this.lastRespondedAtOrBefore(offset);
    if (k < 0) {
      if (offset === this.base) return this.between(undefined, this.exchanges[this.respondedCount]);
      return { kind: 'out-of-range', reason: `offset ${offset} is beyond what the map knows was sent` };
    }
    const exchange = this.exchanges[k]!;
    const start = exchange.responseStart!;
    const headEnd = start + exchange.headerLength!;
    const end = knownEnd(exchange);
    if (end !== undefined && offset >= end) {
      if (offset === end) return this.between(exchange, this.exchanges[k + 1]);
      return { kind: 'out-of-range', reason: `offset ${offset} is beyond what the map knows was sent (${end})` };
    }
    if (!exchange.resumable) return { kind: 'unresumable', exchange, reason: exchange.notResumableReason! };
    if (offset < headEnd) return { kind: 'headers', exchange, offset: offset - start };
    return { kind: 'body', exchange, bodyOffset: offset - headEnd };
  }

  /** Drops exchanges whose response ended at or before `offset`, keeping the latest `keep`
   * responded ones (at least one). */
  trim(offset: number, keep = 1): number {
    const drop = this.droppable(offset, keep);
    if (drop > 0) {
      this.base = this.exchanges[drop - 1]!.responseEnd!;
      this.exchanges.splice(0, drop);
      this.respondedCount -= drop;
      this.onChange?.('trimmed');
    }
    return drop;
  }

  /** How many exchanges from the front trim(offset, keep) would drop. */
  private droppable(offset: number, keep: number): number {
    let drop = 0;
    while (drop < this.respondedCount - Math.max(1, keep)) {
      const end = this.exchanges[drop]!.responseEnd;
      if (end === undefined || end > offset) break;
      drop++;
    }
    return drop;
  }

  /** The map as data; with `acknowledged`, as trim(acknowledged) would leave it (what a resume
   * can still need), without changing the map itself. */
  toJSON(acknowledged?: number): StreamMapJSON {
    const drop = acknowledged === undefined ? 0 : this.droppable(acknowledged, 1);
    return {
      version: 1,
      base: drop > 0 ? this.exchanges[drop - 1]!.responseEnd! : this.base,
      nextIndex: this.nextIndex,
      exchanges: this.exchanges.slice(drop).map((exchange) => {
        const { requestHead, head, validator, contentRange, requestBody, ...rest } = exchange;
        const json: ExchangeJSON = { ...rest, validator: { ...validator }, requestHead: requestHead.toString('base64') };
        if (requestBody) json.requestBody = requestBody.toString('base64');
        if (contentRange) json.contentRange = { ...contentRange };
        if (head) json.head = head.toString('base64');
        return json;
      }),
    };
  }

  /** Rebuilds a map from toJSON() output (possibly after a JSON or msgpack round trip), checking every invariant. */
  static fromJSON(data: unknown): StreamMap {
    const json = data as Partial<StreamMapJSON> | null;
    if (!json || typeof json !== 'object' || json.version !== 1 || !Array.isArray(json.exchanges)) {
      fail('not a serialised stream map');
    }
    checkOffset(json.base as number, 'base');
    checkOffset(json.nextIndex as number, 'nextIndex');
    const map = new StreamMap();
    map.base = json.base!;
    let index = -1;
    for (const raw of json.exchanges) {
      const e = decodeExchange(raw);
      if (e.index <= index || e.index >= json.nextIndex!) fail('exchange indices out of order');
      index = e.index;
      map.nextIndex = e.index;
      // The record calls re-check request ordering; the decoded exchange then replaces the
      // placeholder they created.
      map.addRequest(e.requestStart, e.method, e.target, e.requestHead);
      if (e.requestEnd !== undefined) map.endRequest(e.requestEnd, e.requestBodyTooLarge ? 'too-large' : e.requestBody);
      map.exchanges[map.exchanges.length - 1] = e;
      if (e.responseStart !== undefined) {
        if (map.respondedCount !== map.exchanges.length - 1) fail('response recorded for a later request first');
        const expectedStart = map.respondedCount === 0 ? map.base : map.exchanges[map.respondedCount - 1]!.responseEnd;
        if (e.responseStart !== expectedStart) fail('responses are not contiguous');
        map.respondedCount++;
      }
    }
    map.nextIndex = json.nextIndex!;
    return map;
  }

  private between(after: Exchange | undefined, candidate: Exchange | undefined): Position {
    const position: { kind: 'between'; after?: Exchange; next?: Exchange } = { kind: 'between' };
    if (after) position.after = after;
    if (candidate && candidate.responseStart === undefined) position.next = candidate;
    return position;
  }

  /** Binary search over the responded prefix: last exchange whose response starts at or before offset. */
  private lastRespondedAtOrBefore(offset: number): number {
    let low = 0;
    let high = this.respondedCount - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.exchanges[mid]!.responseStart! <= offset) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    return found;
  }
}

/* Request heads parsed once: when recorded, or on first use for a map heard from soft state. */
const parsedRequests = new WeakMap<Exchange, RequestHead>();

/** The parsed head of an exchange's request (it parsed when recorded, so it parses again). */
export function requestOf(exchange: Exchange): RequestHead {
  let head = parsedRequests.get(exchange);
  if (!head) {
    const event = new RequestParser().push(exchange.requestHead).find((e) => e.type === 'head');
    if (event?.type !== 'head') fail(`recorded request ${exchange.index} does not parse`);
    head = event.head;
    parsedRequests.set(exchange, head);
  }
  return head;
}

/** The value to send in If-Range when resuming `exchange`, per the resumable rule above. */
export function ifRangeValidator(exchange: Exchange): string | undefined {
  if (!exchange.resumable) return undefined;
  return exchange.validator.etag ?? exchange.validator.lastModified;
}

/**
 * The Range header value that fetches the rest of `exchange`'s body from `bodyOffset` on: an
 * open range for a 200, the rest of the original range for a 206.
 */
export function resumeRange(exchange: Exchange, bodyOffset: number): string {
  if (!exchange.resumable || exchange.bodyLength === undefined || bodyOffset < 0 || bodyOffset >= exchange.bodyLength) {
    fail(`no body byte ${bodyOffset} to resume in exchange ${exchange.index}`);
  }
  if (exchange.status === 206) {
    const range = exchange.contentRange!;
    return `bytes=${range.start + bodyOffset}-${range.end}`;
  }
  return `bytes=${bodyOffset}-`;
}

function whyNotResumable(exchange: Exchange, head: ResponseHead): string | undefined {
  if (head.status === 101) return 'protocol switched (101)';
  if (exchange.bodyLength === 0) return undefined;
  if (exchange.method !== 'GET') return `${exchange.method} response body cannot be fetched again`;
  if (head.status !== 200 && head.status !== 206) return `status ${head.status} is not a rangeable representation`;
  if (head.status === 206 && !head.contentRange) return '206 without a single-range Content-Range';
  if (head.body.kind === 'chunked') return 'chunked body: wire bytes depend on the origin';
  if (head.body.kind === 'until-close') return 'body delimited by connection close: length unknown';
  if (head.etag !== undefined) {
    if (head.etag.startsWith('W/')) return 'weak ETag cannot be used in If-Range';
    if (!/^"[\x21\x23-\x7e\x80-\xff]*"$/.test(head.etag)) return 'malformed ETag';
    return undefined;
  }
  if (head.lastModified === undefined) return 'no validator (ETag or Last-Modified)';
  const modified = Date.parse(head.lastModified);
  const date = head.date === undefined ? NaN : Date.parse(head.date);
  if (Number.isNaN(modified)) return 'unparseable Last-Modified';
  if (Number.isNaN(date)) return 'Last-Modified without a Date is not a strong validator';
  if (date - modified < 1000) return 'Last-Modified less than 1 s before Date is not a strong validator';
  return undefined;
}

/* Where a begun response ends: recorded, or given by its length. */
function knownEnd(exchange: Exchange): number | undefined {
  if (exchange.responseEnd !== undefined) return exchange.responseEnd;
  return exchange.bodyLength === undefined ? undefined : exchange.responseStart! + exchange.headerLength! + exchange.bodyLength;
}

function fail(detail: string): never {
  throw new WedgeError('WEDGE_ERR_STREAM_MAP', detail);
}

function checkOffset(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) fail(`${what} is not a stream offset: ${String(value)}`);
}

const EXCHANGE_NUMBERS = ['index', 'requestStart', 'requestEnd', 'responseStart', 'headerLength', 'bodyLength', 'responseEnd', 'status'] as const;

function decodeBytes(value: unknown, what: string): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  if (value instanceof Uint8Array) return Buffer.from(value);
  fail(`${what} is not bytes`);
}

/** Type-checks one serialised exchange; ordering and offsets are re-checked by the record calls. */
function decodeExchange(raw: unknown): Exchange {
  if (!raw || typeof raw !== 'object') fail('exchange is not an object');
  const r = raw as Record<string, unknown>;
  for (const key of EXCHANGE_NUMBERS) {
    if (r[key] !== undefined && r[key] !== null) checkOffset(r[key] as number, key);
  }
  if (typeof r['method'] !== 'string' || typeof r['target'] !== 'string' || typeof r['resumable'] !== 'boolean') {
    fail('exchange lacks method, target or resumable');
  }
  const exchange: Exchange = {
    index: r['index'] as number,
    method: r['method'],
    target: r['target'],
    requestHead: decodeBytes(r['requestHead'], 'requestHead'),
    requestStart: r['requestStart'] as number,
    validator: {},
    resumable: r['resumable'],
  };
  for (const key of ['requestEnd', 'responseStart', 'headerLength', 'bodyLength', 'responseEnd', 'status'] as const) {
    if (typeof r[key] === 'number') exchange[key] = r[key];
  }
  const validator = (r['validator'] ?? {}) as Record<string, unknown>;
  if (typeof validator['etag'] === 'string') exchange.validator.etag = validator['etag'];
  if (typeof validator['lastModified'] === 'string') exchange.validator.lastModified = validator['lastModified'];
  if (typeof r['notResumableReason'] === 'string') exchange.notResumableReason = r['notResumableReason'];
  if (r['requestBody'] !== undefined) exchange.requestBody = decodeBytes(r['requestBody'], 'requestBody');
  if (r['requestBodyTooLarge'] === true) exchange.requestBodyTooLarge = true;
  if (typeof r['keepAlive'] === 'boolean') exchange.keepAlive = r['keepAlive'];
  if (['none', 'length', 'chunked', 'until-close'].includes(r['bodyKind'] as string)) {
    exchange.bodyKind = r['bodyKind'] as ResponseBody['kind'];
  }
  const range = r['contentRange'] as Record<string, unknown> | undefined;
  if (range && typeof range === 'object') {
    checkOffset(range['start'] as number, 'contentRange.start');
    checkOffset(range['end'] as number, 'contentRange.end');
    exchange.contentRange = { start: range['start'] as number, end: range['end'] as number };
    if (range['total'] !== undefined) {
      checkOffset(range['total'] as number, 'contentRange.total');
      exchange.contentRange.total = range['total'] as number;
    }
  }
  if (r['head'] !== undefined && r['head'] !== null) exchange.head = decodeBytes(r['head'], 'head');

  if (exchange.responseStart !== undefined) {
    if (!exchange.head || exchange.headerLength !== exchange.head.length || exchange.bodyKind === undefined) {
      fail('responded exchange lacks its head');
    }
    const headEnd = exchange.responseStart + exchange.headerLength;
    if (exchange.responseEnd !== undefined) {
      if (exchange.responseEnd < headEnd) fail('response ends inside its head');
      if (exchange.bodyLength !== undefined && exchange.responseEnd !== headEnd + exchange.bodyLength) {
        fail('response end disagrees with its body length');
      }
    }
  }
  if (exchange.resumable === (exchange.notResumableReason !== undefined)) fail('resumable flag and reason disagree');
  return exchange;
}
