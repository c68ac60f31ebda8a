/*
 * Theory of operation: one client connection through the wedge.
 *
 * In:  bytes from the client (requests), bytes from the local origin (responses).
 * Out: the same bytes, unchanged and in order, to the other side; plus an exact stream map
 *      (stream-map/stream-map.ts) saying where every request and response sits in the two byte
 *      streams, which is what another replica needs to resume the connection.
 *
 * Requests are parsed strictly (parsers/http-request.ts) and forwarded one exchange at a time:
 * a pipelined request waits, parsed and buffered, until the previous response has been relayed
 * completely, so responses can never interleave. A request that fails to parse is answered with
 * its error status in its turn and the connection is closed after it.
 *
 * Responses: the header section is parsed to learn its exact length and framing; the body is
 * then counted to its end. A body of known length is moved by the kernel (splice, via the
 * native helper) when one is available: JavaScript only sees the header bytes. Chunked and
 * read-until-close bodies go through JavaScript with exact framing.
 *
 * Invariants: bytesToClient is the offset, in the server-to-client stream, of the next byte the
 * wedge hands to the client socket; bytesFromClient likewise for the other direction. Nothing is
 * written to the client while a splice owns its fd. A response that cannot be completed (origin
 * gone mid-body) ends in a reset, never in a silently short or mixed stream.
 *
 * Events: 'progress' when an exchange begins or its response head is recorded (the stream map
 * changed: time to advertise it), 'close' once.
 *
 * Lifecycle (one place changes it, setState):
 *   idle -> forwarding -> relaying-body -> idle ... -> closing -> closed
 *   any -> closed (reset, error, peer gone)
 */
import { EventEmitter } from 'node:events';
import net, { type Socket } from 'node:net';
import type { Logger } from 'pino';
import { WedgeError, type WedgeErrorCode } from '../errors/codes.js';
import { RequestParser, type RequestHead } from '../parsers/http-request.js';
import { parseResponseHead, type ResponseHead } from '../parsers/http-response.js';
import { ChunkedBodyFramer } from '../parsers/chunked.js';
import { StreamMap, type Exchange as MapExchange } from '../stream-map/stream-map.js';
import { rangeRequest, requestKeepsAlive, resumeMismatch, type ResumeStep } from './resume.js';
import { socketFd, startReading, stopReading } from './socket-handle.js';

export type ConnectionState = 'idle' | 'forwarding' | 'relaying-body' | 'closing' | 'closed';

const LEGAL_TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  idle: ['forwarding', 'closing', 'closed'],
  forwarding: ['relaying-body', 'idle', 'closing', 'closed'],
  'relaying-body': ['idle', 'closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

/* Moves `length` bytes from one socket fd to another inside the kernel. */
export interface Splicer {
  splice(fromFd: number, toFd: number, length: number): SpliceJob;
}
export interface SpliceJob {
  readonly done: Promise<{ bytes: number; eof: boolean }>;
  cancel(): void;
}

/* What the daemon counts; kept as an interface so the relay knows nothing of Prometheus. */
export interface RelayObserver {
  request(method: string): void;
  reject(code: WedgeErrorCode): void;
  bytes(direction: 'client-to-origin' | 'origin-to-client', count: number): void;
  abort(reason: string): void;
  spliced(count: number): void;
}

export interface RelayOptions {
  origin: { host: string; port: number };
  logger: Logger;
  observer: RelayObserver;
  splicer?: Splicer;
  maxHeaderBytes?: number;
  /* Parsed-but-unanswered request bytes held before the wedge stops reading the client. */
  maxPipelineBytes?: number;
  /* Bodies shorter than this stay in JavaScript: a splice costs a few syscalls to set up. */
  spliceThreshold?: number;
  /* A connection taken over from another server, to continue where its client stands. */
  adopted?: AdoptedStream;
  /* The connection's name when its socket's addresses no longer say it: after a TCP Migrate the
   * socket is bound to this server's address, the client's still to the original server's. */
  id?: string;
}

/* The state of a taken-over connection at the point the client has reached (relay/resume.ts). */
export interface AdoptedStream {
  streamMap: StreamMap;
  bytesFromClient: number;
  bytesToClient: number;
  steps: ResumeStep[];
  replay: MapExchange[];
  /* The client had already sent its FIN: serve what is planned, then close. */
  clientFinished: boolean;
}

interface PendingRequest {
  kind: 'request';
  head: RequestHead;
  start: number;
  end?: number;
  bodyChunks: Buffer[];
  forwarded: boolean;
  /* Already in the stream map (replayed after a takeover). */
  recorded?: boolean;
}
interface PendingReject {
  kind: 'reject';
  error: WedgeError;
}
interface PendingResume {
  kind: 'resume';
  step: ResumeStep;
}
type PendingItem = PendingRequest | PendingReject | PendingResume;

type ResponsePhase =
  | { kind: 'head'; buffered: Buffer; interim: Buffer[] }
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; framer: ChunkedBodyFramer }
  | { kind: 'until-close' }
  | { kind: 'splicing'; job: SpliceJob };

interface Exchange {
  request: PendingRequest;
  /* Set when this exchange re-fetches the rest of a recorded response after a takeover. */
  resume?: ResumeStep;
  phase: ResponsePhase;
  response?: ResponseHead;
  keepAlive: boolean;
}

export class RelayConnection extends EventEmitter {
  readonly id: string;
  readonly client: Socket;
  readonly streamMap: StreamMap;
  readonly openedAt = Date.now();
  state: ConnectionState = 'idle';
  bytesFromClient = 0;
  bytesToClient = 0;
  requests = 0;

  private readonly options: Required<Omit<RelayOptions, 'splicer' | 'adopted' | 'id'>> & { splicer?: Splicer };
  private readonly log: Logger;
  private readonly parser: RequestParser;
  /* Client-to-server offset where this relay's parser started (non-zero after a takeover). */
  private readonly parserBase: number;
  private readonly pending: PendingItem[] = [];
  private pendingBytes = 0;
  private parsing: PendingRequest | undefined;
  private exchange: Exchange | undefined;
  private origin: Socket | undefined;
  private clientEnded = false;
  private stopParsing = false;
  private handedOff = false;

  constructor(client: Socket, options: RelayOptions) {
    super();
    this.client = client;
    this.options = { maxHeaderBytes: 16384, maxPipelineBytes: 1 << 20, spliceThreshold: 64 * 1024, ...options };
    this.id = options.id ?? `${client.remoteAddress}:${client.remotePort}>${client.localAddress}:${client.localPort}`;
    this.log = options.logger.child({ conn: this.id });
    this.parser = new RequestParser({ maxHeaderBytes: this.options.maxHeaderBytes });
    const adopted = options.adopted;
    this.streamMap = adopted?.streamMap ?? new StreamMap();
    this.bytesFromClient = this.parserBase = adopted?.bytesFromClient ?? 0;
    this.bytesToClient = adopted?.bytesToClient ?? 0;
    if (adopted) {
      for (const step of adopted.steps) this.pending.push({ kind: 'resume', step });
      for (const exchange of adopted.replay) this.pending.push(recordedRequest(exchange));
      this.clientEnded = this.stopParsing = adopted.clientFinished;
    }
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.guarded(() => this.onClientData(chunk)));
    client.on('end', () => this.onClientEnd());
    client.on('error', (err) => this.clientFailed('client-error', err));
    client.on('close', () => this.teardown());
    // An adopted connection has work before the client says anything; start it once the owner
    // has registered its listeners.
    if (adopted) process.nextTick(() => this.pump());
  }

  /* ---- lifecycle ---- */

  private setState(next: ConnectionState): void {
    if (next === this.state) return;
    if (!LEGAL_TRANSITIONS[this.state].includes(next)) {
      throw new Error(`illegal connection transition ${this.state} -> ${next}`);
    }
    this.log.debug({ from: this.state, to: next }, 'state');
    this.state = next;
  }

  /* Reset the client: used when the stream cannot be completed exactly. */
  private fail(reason: string, err?: unknown): void {
    if (this.state === 'closed') return;
    this.options.observer.abort(reason);
    this.log.warn({ reason, err: err instanceof Error ? err.message : err }, 'connection aborted');
    this.client.resetAndDestroy();
    this.teardown();
  }

  /*
   * Another server has taken this connection over: stop without a byte to the client.
   * `closeSilently` closes the client socket so that the kernel sends nothing (repair mode).
   */
  /*
   * The connection is being handed to another server (TCP Migrate): once the client's agent
   * has rewritten it, it answers our segments with RST. That reset ends the connection here
   * quietly; it is no failure.
   */
  handOff(): void {
    this.handedOff = true;
  }

  /* A stream map that cannot record what happened must not be used, nor kill the daemon. */
  private guarded(handle: () => void): void {
    try {
      handle();
    } catch (err) {
      this.fail('stream-map-error', err);
    }
  }

  /* The client side failed (a reset, usually): a failure, unless the connection was handed off. */
  private clientFailed(reason: string, err: unknown): void {
    if (this.handedOff) this.relinquish(() => undefined);
    else this.fail(reason, err);
  }

  relinquish(closeSilently: (socket: Socket) => void): void {
    if (this.state === 'closed') return;
    this.log.info('connection taken over elsewhere; closing silently');
    if (this.exchange?.phase.kind === 'splicing') this.exchange.phase.job.cancel();
    closeSilently(this.client);
    this.teardown();
  }

  private teardown(): void {
    if (this.state === 'closed') return;
    if (this.exchange?.phase.kind === 'splicing') this.exchange.phase.job.cancel();
    this.origin?.destroy();
    this.origin = undefined;
    if (!this.client.destroyed) this.client.destroy();
    this.setState('closed');
    this.emit('close');
  }

  /* ---- client side ---- */

  private onClientData(chunk: Buffer): void {
    this.bytesFromClient += chunk.length;
    this.options.observer.bytes('client-to-origin', chunk.length);
    if (this.stopParsing) return;
    for (const event of this.parser.push(chunk)) {
      if (event.type === 'head') this.onRequestHead(event.head, this.parserBase + event.start);
      else if (event.type === 'body') this.onRequestBody(event.data);
      else if (event.type === 'end') this.onRequestEnd(this.parserBase + event.end);
      else this.reject(event.error);
      if (this.stopParsing) break;
    }
    if (this.pendingBytes > this.options.maxPipelineBytes) this.client.pause();
    this.pump();
  }

  /* Queue an error answer in its turn; nothing after it on this connection is parsed. */
  private reject(error: WedgeError): void {
    this.stopParsing = true;
    const inFlight = this.parsing?.forwarded ? this.exchange : undefined;
    this.parsing = undefined;
    if (inFlight) {
      // The origin already has part of this request and waits for the rest, which will never come.
      this.originFailed(inFlight, 'client-request-malformed', error);
      return;
    }
    this.pending.push({ kind: 'reject', error });
  }

  private onRequestHead(head: RequestHead, start: number): void {
    if (head.upgrade) {
      this.reject(new WedgeError('WEDGE_ERR_HTTP_UNSUPPORTED', `protocol upgrade (${head.method} ${head.target})`));
      return;
    }
    const request: PendingRequest = { kind: 'request', head, start, bodyChunks: [], forwarded: false };
    this.parsing = request;
    this.pending.push(request);
    this.pendingBytes += head.rawHead.length;
    this.options.observer.request(head.method);
  }

  private onRequestBody(data: Buffer): void {
    const request = this.parsing;
    if (!request) return;
    if (request.forwarded) this.writeToOrigin(data);
    else {
      request.bodyChunks.push(data);
      this.pendingBytes += data.length;
    }
  }

  private onRequestEnd(end: number): void {
    const request = this.parsing;
    if (!request) return;
    request.end = end;
    if (request.forwarded) this.streamMap.endRequest(end);
    this.parsing = undefined;
    // After a request that closes the connection, further bytes are not requests (RFC 9112 §9.6).
    if (!request.head.keepAlive) this.stopParsing = true;
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.parsing && !this.stopParsing) {
      this.reject(new WedgeError('WEDGE_ERR_HTTP_MALFORMED', 'connection closed inside a request'));
    }
    this.pump();
  }

  /* ---- exchanges, strictly one at a time ---- */

  private pump(): void {
    if (this.exchange || this.state === 'closed' || this.state === 'closing') return;
    const item = this.pending.shift();
    if (!item) {
      if (this.clientEnded) this.closeGracefully();
      return;
    }
    if (item.kind === 'reject') this.sendReject(item.error);
    else if (item.kind === 'resume') this.startResume(item.step);
    else this.startExchange(item);
  }

  /* Send the rest of a recorded response: its remaining head bytes, then its body from the origin. */
  private startResume(step: ResumeStep): void {
    const recorded = step.exchange;
    this.setState('forwarding');
    this.writeToClient(step.headRest);
    const exchange: Exchange = {
      request: recordedRequest(recorded),
      resume: step,
      phase: { kind: 'head', buffered: Buffer.alloc(0), interim: [] },
      keepAlive: recorded.keepAlive === true && requestKeepsAlive(recorded),
    };
    this.exchange = exchange;
    if (recorded.bodyLength === step.bodyOffset) {
      this.finishExchange(false);
      return;
    }
    this.originSocket();
    this.writeToOrigin(rangeRequest(recorded, step.bodyOffset));
  }

  private startExchange(request: PendingRequest): void {
    this.setState('forwarding');
    this.requests++;
    this.exchange = {
      request,
      phase: { kind: 'head', buffered: Buffer.alloc(0), interim: [] },
      keepAlive: request.head.keepAlive,
    };
    if (!request.recorded) {
      this.streamMap.beginRequest(request.start, request.head);
      if (request.end !== undefined) this.streamMap.endRequest(request.end);
      this.emit('progress');
    }
    this.originSocket();
    request.forwarded = true;
    let held = request.head.rawHead.length;
    this.writeToOrigin(request.head.rawHead);
    for (const chunk of request.bodyChunks) {
      held += chunk.length;
      this.writeToOrigin(chunk);
    }
    request.bodyChunks = [];
    this.pendingBytes -= held;
    if (this.pendingBytes <= this.options.maxPipelineBytes && !this.stopParsing) this.client.resume();
  }

  private originSocket(): Socket {
    if (this.origin && !this.origin.destroyed) return this.origin;
    const origin = net.connect({ host: this.options.origin.host, port: this.options.origin.port });
    origin.setNoDelay(true);
    origin.on('data', (chunk: Buffer) => this.guarded(() => this.onOriginData(origin, chunk)));
    origin.on('end', () => this.onOriginEnd(origin));
    origin.on('error', (err) => this.onOriginError(origin, err));
    this.origin = origin;
    return origin;
  }

  private writeToOrigin(data: Buffer): void {
    const origin = this.origin;
    if (!origin) return;
    if (!origin.write(data)) {
      this.client.pause();
      origin.once('drain', () => {
        if (!this.stopParsing || this.parsing) this.client.resume();
      });
    }
  }

  private writeToClient(data: Buffer): void {
    if (data.length === 0) return;
    this.bytesToClient += data.length;
    this.options.observer.bytes('origin-to-client', data.length);
    if (!this.client.write(data) && this.origin) {
      const origin = this.origin;
      origin.pause();
      this.client.once('drain', () => origin.resume());
    }
  }

  /* ---- origin side ---- */

  private onOriginData(origin: Socket, chunk: Buffer): void {
    const exchange = this.exchange;
    if (origin !== this.origin) return;
    if (!exchange) {
      // Bytes from the origin with no request outstanding: it is broken; never relay them.
      this.log.warn({ bytes: chunk.length }, 'unsolicited bytes from origin');
      this.dropOrigin();
      return;
    }
    const phase = exchange.phase;
    switch (phase.kind) {
      case 'head':
        this.onResponseHeadBytes(exchange, Buffer.concat([phase.buffered, chunk]));
        return;
      case 'length':
        this.relayLengthBody(exchange, chunk);
        return;
      case 'chunked': {
        let progress: { consumed: number; done: boolean };
        try {
          progress = phase.framer.push(chunk);
        } catch (err) {
          this.fail('origin-malformed-chunks', err);
          return;
        }
        this.writeToClient(chunk.subarray(0, progress.consumed));
        if (progress.done) this.finishExchange(progress.consumed < chunk.length);
        return;
      }
      case 'until-close':
        this.writeToClient(chunk);
        return;
      case 'splicing':
        this.fail('origin-data-during-splice');
        return;
    }
  }

  private onResponseHeadBytes(exchange: Exchange, buffered: Buffer): void {
    const phase = exchange.phase as Extract<ResponsePhase, { kind: 'head' }>;
    let head: ResponseHead | null;
    try {
      head = parseResponseHead(buffered, exchange.request.head.method);
    } catch (err) {
      this.originFailed(exchange, 'origin-malformed', err);
      return;
    }
    if (!head) {
      phase.buffered = buffered;
      return;
    }
    const rest = buffered.subarray(head.headerLength);
    if (exchange.resume) {
      this.onResumeHead(exchange, exchange.resume, head, rest);
      return;
    }
    if (head.status >= 100 && head.status < 200) {
      if (head.status === 101) {
        this.originFailed(exchange, 'origin-switched-protocols');
        return;
      }
      // Interim response (100 Continue): relay it and wait for the final one.
      phase.interim.push(head.rawHead);
      this.writeToClient(head.rawHead);
      this.onResponseHeadBytes(exchange, rest);
      return;
    }
    exchange.response = head;
    exchange.keepAlive = exchange.keepAlive && head.keepAlive;
    const interimLength = phase.interim.reduce((sum, b) => sum + b.length, 0);
    this.streamMap.beginResponse(this.bytesToClient - interimLength, head, phase.interim);
    this.emit('progress');
    this.writeToClient(head.rawHead);
    this.setState('relaying-body');
    switch (head.body.kind) {
      case 'none':
        this.finishExchange(rest.length > 0);
        return;
      case 'length':
        exchange.phase = { kind: 'length', remaining: head.body.length };
        this.relayLengthBody(exchange, rest);
        return;
      case 'chunked': {
        exchange.phase = { kind: 'chunked', framer: new ChunkedBodyFramer({ malformedCode: 'WEDGE_ERR_ORIGIN_MALFORMED' }) };
        if (rest.length > 0) this.onOriginData(this.origin!, rest);
        return;
      }
      case 'until-close':
        exchange.keepAlive = false;
        exchange.phase = { kind: 'until-close' };
        this.writeToClient(rest);
        return;
    }
  }

  /* The origin's answer to a resume range request: checked, never forwarded; only its body is. */
  private onResumeHead(exchange: Exchange, step: ResumeStep, head: ResponseHead, rest: Buffer): void {
    if (head.status >= 100 && head.status < 200 && head.status !== 101) {
      this.onResponseHeadBytes(exchange, rest);
      return;
    }
    const mismatch = resumeMismatch(step.exchange, step.bodyOffset, head);
    if (mismatch) {
      this.fail('representation-changed', mismatch);
      return;
    }
    exchange.response = head;
    this.setState('relaying-body');
    exchange.phase = { kind: 'length', remaining: step.exchange.bodyLength! - step.bodyOffset };
    this.relayLengthBody(exchange, rest);
  }

  private relayLengthBody(exchange: Exchange, chunk: Buffer): void {
    const phase = exchange.phase as Extract<ResponsePhase, { kind: 'length' }>;
    const take = Math.min(chunk.length, phase.remaining);
    this.writeToClient(chunk.subarray(0, take));
    phase.remaining -= take;
    if (phase.remaining === 0) {
      this.finishExchange(take < chunk.length);
      return;
    }
    const splicer = this.options.splicer;
    if (splicer && phase.remaining >= this.options.spliceThreshold && this.origin) {
      this.spliceRest(exchange, splicer, this.origin, phase.remaining);
    }
  }

  /* Hand the rest of the body to the kernel once our own writes to the client have drained. */
  private spliceRest(exchange: Exchange, splicer: Splicer, origin: Socket, length: number): void {
    stopReading(origin);
    const start = () => {
      if (this.exchange !== exchange || this.state === 'closed') return;
      const job = splicer.splice(socketFd(origin), socketFd(this.client), length);
      exchange.phase = { kind: 'splicing', job };
      job.done.then(
        ({ bytes }) => this.onSpliceDone(exchange, origin, length, bytes),
        (err) => this.clientFailed('splice-error', err),
      );
    };
    if (this.client.writableLength === 0) start();
    else this.client.write(Buffer.alloc(0), start);
  }

  private onSpliceDone(exchange: Exchange, origin: Socket, expected: number, moved: number): void {
    if (this.exchange !== exchange || this.state === 'closed') return;
    this.bytesToClient += moved;
    this.options.observer.bytes('origin-to-client', moved);
    this.options.observer.spliced(moved);
    if (moved < expected) {
      this.fail('origin-closed-mid-body');
      return;
    }
    startReading(origin);
    this.finishExchange(false);
  }

  private finishExchange(originSentExtra: boolean): void {
    const exchange = this.exchange;
    if (!exchange) return;
    // A resumed response the old owner had finished writing is already complete in the map.
    if (exchange.resume?.exchange.responseEnd === undefined) this.streamMap.endResponse(this.bytesToClient);
    this.exchange = undefined;
    // The group must know the response ended: a takeover after it starts the next one there.
    this.emit('progress');
    if (originSentExtra) {
      this.log.warn('origin sent bytes beyond the response; dropping the origin connection');
      this.dropOrigin();
    }
    if (!exchange.keepAlive) {
      this.closeGracefully();
      return;
    }
    this.setState('idle');
    this.pump();
  }

  private onOriginEnd(origin: Socket): void {
    if (origin !== this.origin) return;
    const exchange = this.exchange;
    this.origin = undefined;
    origin.destroy();
    if (!exchange) return;
    if (exchange.phase.kind === 'until-close') {
      this.finishExchange(false);
      return;
    }
    if (exchange.phase.kind === 'splicing') return; // the splice reports the short count
    this.originFailed(exchange, 'origin-closed-early');
  }

  private onOriginError(origin: Socket, err: Error): void {
    if (origin !== this.origin) return;
    this.origin = undefined;
    const exchange = this.exchange;
    if (exchange) this.originFailed(exchange, 'origin-error', err);
  }

  /* Before any response byte reached the client a clear 502 is possible; after, only a reset. */
  private originFailed(exchange: Exchange, reason: string, err?: unknown): void {
    if (!exchange.resume && !exchange.response && exchange.phase.kind === 'head' && exchange.phase.interim.length === 0) {
      this.log.warn({ reason, err: err instanceof Error ? err.message : err }, 'origin failed before responding');
      this.options.observer.abort(reason);
      const error =
        err instanceof WedgeError
          ? err
          : new WedgeError(reason === 'origin-malformed' ? 'WEDGE_ERR_ORIGIN_MALFORMED' : 'WEDGE_ERR_ORIGIN_UNREACHABLE', err instanceof Error ? err.message : reason);
      this.exchange = undefined;
      this.dropOrigin();
      this.sendReject(error);
      return;
    }
    this.fail(reason, err);
  }

  private dropOrigin(): void {
    this.origin?.destroy();
    this.origin = undefined;
  }

  /* ---- endings ---- */

  private sendReject(error: WedgeError): void {
    this.options.observer.reject(error.code);
    this.log.info({ code: error.code, detail: error.message }, 'request rejected');
    const status = error.status ?? 400;
    const body = `${error.code}: ${error.message}\n`;
    const head =
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n`;
    if (this.state !== 'idle') this.setState('idle');
    this.writeToClient(Buffer.from(head + body));
    this.closeGracefully();
  }

  private closeGracefully(): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.setState('closing');
    this.stopParsing = true;
    this.dropOrigin();
    // Once our FIN is out, a client that already sent its own has nothing more to say (an
    // adopted socket never sees that FIN arrive: it came before the takeover).
    this.client.end(() => {
      if (this.clientEnded) this.client.destroy();
    });
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
};

/* A request from the stream map, to send to the origin again (already recorded there). */
function recordedRequest(exchange: MapExchange): PendingRequest {
  const parsed = new RequestParser().push(exchange.requestHead).find((e) => e.type === 'head');
  if (parsed?.type !== 'head') throw new WedgeError('WEDGE_ERR_STREAM_MAP', `recorded request ${exchange.index} does not parse`);
  return { kind: 'request', head: parsed.head, start: exchange.requestStart, end: exchange.requestEnd!, bodyChunks: [], forwarded: false, recorded: true };
}
