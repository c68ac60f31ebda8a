/*
 * The client's side of a connection: bytes in, requests out, strictly in order.
 *
 * In: the client's bytes (push) and its FIN (clientFinished). Out: every request into the stream
 * map as soon as it is parsed (so that a takeover replays pipelined requests instead of losing
 * them), and the queue of what to answer next (next()): parsed requests with their buffered
 * bodies, error answers for requests that failed to parse (each in its turn), and, after a
 * takeover, the resume steps and the replayed requests of the old owner. A request whose exchange
 * has started streams its remaining body straight to the origin through the sink.
 *
 * Nothing after a rejected request or a `Connection: close` request is parsed (RFC 9112 §9.6):
 * the lifecycle notes last-request. A request that fails while it arrives (a malformed chunked
 * body, the client's FIN inside its head or body, a time limit) never reaches the origin if it
 * has not yet: its error takes its place in the queue; if the origin has part of it, the sink
 * hears so. Held bytes (parsed but not yet forwarded) are bounded by maxPipelineBytes: beyond it
 * the connection stops reading the client.
 */
import { WedgeError } from '../errors/codes.js';
import type { AbortReason } from '../errors/reasons.js';
import { RequestParser, type RequestHead, type RequestParserOptions } from '../parsers/http-request.js';
import { REQUEST_LOG_BYTES, requestOf, type Exchange } from '../stream-map/stream-map.js';
import type { ResumeStep } from '../stream-map/resume-plan.js';
import type { Lifecycle } from './lifecycle.js';

export interface PendingRequest {
  kind: 'request';
  head: RequestHead;
  start: number;
  end?: number;
  bodyChunks: Buffer[];
  forwarded: boolean;
  /* Its exchange's index on the connection (the stream map's; `Wedge-Exchange` to the origin). */
  exchange: number;
  /* Replayed after a takeover: its bytes were never held here. */
  replayed?: boolean;
  /* Its body's bytes so far, for the replay log (none yet: undefined), or past REQUEST_LOG_BYTES. */
  logged?: { chunks: Buffer[]; bytes: number } | 'too-large';
}
export interface PendingReject {
  kind: 'reject';
  error: WedgeError;
}
export interface PendingResume {
  kind: 'resume';
  step: ResumeStep;
}
export type PendingItem = PendingRequest | PendingReject | PendingResume;

/* Where parsed requests go: the stream map, and the origin once their exchange has started. */
export interface RequestSink {
  /* Returns the exchange's index. */
  requestBegun(start: number, head: RequestHead): number;
  /* `body`: the request body's wire bytes (none: undefined), or 'too-large' past the replay log's bound. */
  requestEnded(end: number, body: Buffer | 'too-large' | undefined): void;
  forwardBody(data: Buffer): void;
  forwardedRequestFailed(error: WedgeError, reason: AbortReason): void;
}

export class RequestQueue {
  private readonly parser: RequestParser;
  private readonly items: PendingItem[] = [];
  private readonly maxPipelineBytes: number;
  private heldBytes = 0;
  /* The request whose bytes are arriving now. */
  private parsing: PendingRequest | undefined;

  constructor(
    /* Client-to-server offset where the parser starts (non-zero after a takeover). */
    private readonly base: number,
    limits: RequestParserOptions & { maxPipelineBytes: number },
    private readonly lifecycle: Lifecycle,
    private readonly sink: RequestSink,
    private readonly countRequest: (method: string) => void,
  ) {
    const { maxHeaderBytes, maxRequestLineBytes, maxEmptyLines } = limits;
    this.parser = new RequestParser({ maxHeaderBytes, maxRequestLineBytes, maxEmptyLines });
    this.maxPipelineBytes = limits.maxPipelineBytes;
  }

  /* More bytes are held than the pipeline allows: stop reading the client. */
  get full(): boolean {
    return this.heldBytes > this.maxPipelineBytes;
  }

  /* A request is still arriving (its body may be needed before the exchange can finish). */
  get arriving(): boolean {
    return this.parsing !== undefined;
  }

  /* The request at the origin is still arriving. */
  get streaming(): boolean {
    return this.parsing?.forwarded === true;
  }

  /* Bytes of the next request's head have arrived, not yet all of it. */
  get headPending(): boolean {
    return !this.lifecycle.has('last-request') && this.parser.headPending;
  }

  push(chunk: Buffer): void {
    if (this.lifecycle.has('last-request')) return;
    for (const event of this.parser.push(chunk)) {
      if (event.type === 'head') this.onHead(event.head, this.base + event.start);
      else if (event.type === 'body') this.onBody(event.data);
      else if (event.type === 'end') this.onEnd(this.base + event.end);
      else this.reject(event.error);
      if (this.lifecycle.has('last-request')) break;
    }
  }

  clientFinished(): void {
    const inside = (this.parsing !== undefined || this.parser.headPending) && !this.lifecycle.has('last-request');
    this.lifecycle.note('client-finished');
    if (inside) this.reject(new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'connection closed inside a request'), true);
  }

  /* A time limit ran out on the request arriving now: it fails with `error` (`reason`: the abort
   * reason if the origin already has part of it). */
  expire(error: WedgeError, reason: AbortReason): void {
    if (!this.lifecycle.has('last-request')) this.reject(error, false, reason);
  }

  /* Work planned by a takeover: the rest of the responses in flight, then the requests to replay. */
  adopt(steps: readonly ResumeStep[], replay: readonly Exchange[]): void {
    for (const step of steps) this.items.push({ kind: 'resume', step });
    for (const exchange of replay) this.items.push(recordedRequest(exchange));
  }

  next(): PendingItem | undefined {
    return this.items.shift();
  }

  /* The request's exchange starts: its buffered bytes leave the queue; the rest of its body will
   * stream through the sink. */
  forward(request: PendingRequest): Buffer[] {
    request.forwarded = true;
    const chunks = [request.head.rawHead, ...request.bodyChunks];
    request.bodyChunks = [];
    if (!request.replayed) for (const chunk of chunks) this.heldBytes -= chunk.length;
    return chunks;
  }

  /* Queue an error answer in its turn; nothing after it is parsed. */
  private reject(error: WedgeError, alreadyLast = false, reason: AbortReason = 'client-request-malformed'): void {
    if (!alreadyLast) this.lifecycle.note('last-request');
    const failed = this.parsing;
    this.parsing = undefined;
    // The origin already has part of this request and waits for the rest, which will never come.
    if (failed?.forwarded) {
      this.sink.forwardedRequestFailed(error, reason);
      return;
    }
    // Not sent yet: it never will be (the origin would wait for the rest); its error answers it.
    if (failed) {
      this.items.splice(this.items.indexOf(failed), 1);
      for (const chunk of [failed.head.rawHead, ...failed.bodyChunks]) this.heldBytes -= chunk.length;
    }
    this.items.push({ kind: 'reject', error });
  }

  private onHead(head: RequestHead, start: number): void {
    if (head.upgrade) {
      this.reject(new WedgeError('WEDGE_ERR_HTTP_UNSUPPORTED', `protocol upgrade (${head.method} ${head.target})`));
      return;
    }
    const exchange = this.sink.requestBegun(start, head);
    const request: PendingRequest = { kind: 'request', head, start, bodyChunks: [], forwarded: false, exchange };
    this.parsing = request;
    this.items.push(request);
    this.heldBytes += head.rawHead.length;
    this.countRequest(head.method);
  }

  private onBody(data: Buffer): void {
    const request = this.parsing;
    if (!request) return;
    if (request.logged !== 'too-large') {
      const logged = request.logged ?? { chunks: [], bytes: 0 };
      request.logged = logged;
      logged.bytes += data.length;
      if (logged.bytes <= REQUEST_LOG_BYTES) logged.chunks.push(data);
      else request.logged = 'too-large';
    }
    if (request.forwarded) this.sink.forwardBody(data);
    else {
      request.bodyChunks.push(data);
      this.heldBytes += data.length;
    }
  }

  private onEnd(end: number): void {
    const request = this.parsing;
    if (!request) return;
    request.end = end;
    this.parsing = undefined;
    // A request without a body (most) logs nothing.
    const logged = request.logged;
    this.sink.requestEnded(end, logged === 'too-large' || logged === undefined ? logged : Buffer.concat(logged.chunks, logged.bytes));
    delete request.logged;
    // After a request that closes the connection, further bytes are not requests (RFC 9112 §9.6).
    if (!request.head.keepAlive) this.lifecycle.note('last-request');
  }
}

/* A request from the stream map, to send to the origin again (already recorded there). */
function recordedRequest(exchange: Exchange): PendingRequest {
  const bodyChunks = exchange.requestBody ? [exchange.requestBody] : [];
  return { kind: 'request', head: requestOf(exchange), start: exchange.requestStart, end: exchange.requestEnd!, bodyChunks, forwarded: false, exchange: exchange.index, replayed: true };
}
