/*
 * Carrying out a resume step against the local origin (the plan is stream-map/resume-plan.ts):
 * the original request again, asking for the rest of the body of the same representation, and
 * the check that the origin's answer is exactly that.
 */
import { forwardedHead, strippedBy } from '../parsers/forwarded-head.js';
import type { HeaderList } from '../parsers/http-common.js';
import type { ResponseHead } from '../parsers/http-response.js';
import type { PeerOrigin } from './origin-recovery.js';
import { ifRangeValidator, requestOf, resumeRange, type Exchange } from '../stream-map/stream-map.js';

/* Request validators that would change what the origin answers; replaced by Range/If-Range. */
const DROPPED_ON_RESUME = new Set(['range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']);

/* The original request again, asking for the rest of the body of the same representation, with
 * the wedge's own `fields` (the client's address); for a peer's origin (`via`), with the header
 * lines that authorise it there. */
export function rangeRequest(exchange: Exchange, bodyOffset: number, fields: HeaderList, via?: PeerOrigin): Buffer {
  const head = requestOf(exchange);
  const lines = [`GET ${head.target} HTTP/1.1`];
  const stripped = strippedBy(fields);
  for (const [name, value] of head.headers) if (!DROPPED_ON_RESUME.has(name) && !stripped(name)) lines.push(`${name}: ${value}`);
  for (const [name, value] of fields) lines.push(`${name}: ${value}`);
  lines.push(`range: ${resumeRange(exchange, bodyOffset)}`);
  lines.push(`if-range: ${ifRangeValidator(exchange)}`);
  const request = Buffer.from(lines.join('\r\n') + '\r\n', 'latin1');
  return Buffer.concat([request, via ? via.authorize(request) : Buffer.alloc(0), Buffer.from('\r\n')]);
}

/* The request of a generated response again, restarting the origin from the snapshot at body byte
 * `offset` (the state contract); `fields` are the adopter's own Wedge-Exchange and Wedge-State. */
export function stateRequest(exchange: Exchange, offset: number, snapshot: Buffer, fields: HeaderList): Buffer {
  const head = requestOf(exchange);
  const resumed = forwardedHead(head.rawHead, head.headers, [...fields, ['Wedge-Resume', snapshot.toString('base64')], ['Wedge-Resume-Offset', String(offset)]]);
  // A request with a body (a POST of the session) goes again whole, from the replay log.
  return exchange.requestBody ? Buffer.concat([resumed, exchange.requestBody]) : resumed;
}

/* Why the origin's answer to stateRequest() is not the restart it asked for, if so. */
export function stateResumeMismatch(exchange: Exchange, offset: number, head: ResponseHead): string | undefined {
  const resumed = head.headers.find(([name]) => name === 'wedge-resumed')?.[1];
  if (resumed !== String(offset)) return resumed === undefined ? 'no Wedge-Resumed in the answer (the origin ignored Wedge-Resume)' : `Wedge-Resumed: ${resumed}, expected ${offset}`;
  if (head.status !== exchange.status) return `origin answered ${head.status}, the original response was ${exchange.status}`;
  if (head.body.kind === 'chunked' || head.body.kind === 'none') return `a resumed body must have a Content-Length or end at close, not ${head.body.kind}`;
  return undefined;
}

/* Why the origin's answer to rangeRequest() is not the rest of the same representation, if so. */
export function resumeMismatch(exchange: Exchange, bodyOffset: number, head: ResponseHead): string | undefined {
  if (head.status !== 206) return `origin answered ${head.status}, not 206 (representation changed or ranges unsupported)`;
  const range = head.contentRange;
  if (!range) return '206 without a single Content-Range';
  const bodyLength = exchange.bodyLength!;
  const start = exchange.status === 206 ? exchange.contentRange!.start + bodyOffset : bodyOffset;
  const end = exchange.status === 206 ? exchange.contentRange!.end : bodyLength - 1;
  const total = exchange.status === 206 ? exchange.contentRange!.total : bodyLength;
  if (range.start !== start || range.end !== end) return `Content-Range ${range.start}-${range.end}, expected ${start}-${end}`;
  if (total !== undefined && range.total !== total) return `representation length ${range.total}, expected ${total}`;
  const { etag, lastModified } = exchange.validator;
  if (etag !== undefined ? head.etag !== etag : head.lastModified !== lastModified) return 'validator differs';
  if (head.body.kind !== 'length' || head.body.length !== end - start + 1) return 'body length does not match the range';
  return undefined;
}
