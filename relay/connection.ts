/*
 * Theory of operation: one client connection through the wedge.
 *
 * In:  bytes from the client (requests), bytes from the local origin (responses).
 * Out: the same bytes, unchanged and in order, to the other side; an exact stream map
 *      (stream-map/stream-map.ts) saying where every request and response sits in the two byte
 *      streams, which is what another replica needs to resume the connection; and one typed
 *      stream of changes (its lifecycle, relay/lifecycle.ts, and its stream map), from which the
 *      replication derives the soft state.
 *
 * Requests are parsed strictly (relay/request-queue.ts) and forwarded one exchange at a time: a
 * pipelined request waits, parsed and buffered, until the previous response has been relayed
 * completely, so responses can never interleave. A request that fails to parse is answered with
 * its error status in its turn and the connection is closed after it.
 *
 * Responses are framed exactly (relay/response-framing.ts); a body of known length is moved by the
 * kernel (splice, via the native helper) when one is available: JavaScript only sees the header
 * bytes. After a takeover the connection first carries out its resume steps (relay/resume.ts).
 *
 * Every connection, adopted ones too, keeps to the front-end limits (relay/options.ts): sizes in
 * the parser, and time limits on one timer (relay/deadlines.ts) that end it through the endings
 * below: a 408 or 504 while no response byte is out, a counted reset after, a quiet close idle.
 *
 * Invariants: bytesToClient is the offset, in the server-to-client stream, of the next byte the
 * wedge hands to the client socket; bytesFromClient likewise for the other direction. Nothing is
 * written to the client while a splice owns its fd. A response that cannot be completed (origin
 * gone mid-body) ends in a reset, never in a silently short or mixed stream. Every entry point
 * (socket events, the splice's promise, timers) runs through guard(): an invariant error resets
 * this one connection, is counted as stream-map-error, and never reaches the process.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import type { AbortReason } from '../errors/reasons.js';
import type { RequestHead } from '../parsers/http-request.js';
import type { ResponseHead } from '../parsers/http-response.js';
import { requestKeepsAlive, type ResumeStep } from '../stream-map/resume-plan.js';
import { StreamMap, type StreamMapChange } from '../stream-map/stream-map.js';
import { errorResponse, originError } from './error-page.js';
import { Lifecycle, type ConnectionState, type LifecycleChange } from './lifecycle.js';
import { RequestQueue, type PendingRequest } from './request-queue.js';
import { ResponseFraming, type FramingSink } from './response-framing.js';
import { progress, socketFd } from '../native/index.js';
import { BodySplice } from './body-splice.js';
import { Deadlines, type Deadline } from './deadlines.js';
import { RELAY_LIMITS, type RelayOptions, type Splicer } from './options.js';
import { OriginLink } from './origin-link.js';
import { rangeRequest } from './resume.js';

export type { AdoptedStream, RelayObserver, RelayOptions, Splicer, SpliceJob } from './options.js';

export type ConnectionChange = LifecycleChange | { kind: 'map'; change: StreamMapChange };
export type EndState = 'closed' | 'aborted' | 'relinquished';

interface Exchange {
  framing: ResponseFraming;
  keepAlive: boolean;
  /* Set when this exchange re-fetches the rest of a recorded response after a takeover. */
  resume?: ResumeStep;
  /* Interim heads relayed before the final one (recorded with it). */
  interim: Buffer[];
  splice?: BodySplice;
}

/* Acknowledged exchanges kept in the map, at most (every unacknowledged one stays). */
const RETAINED_EXCHANGES = 8;

/* 'change': every lifecycle and stream-map change, in order; 'ended': once, with the final state. */
export class RelayConnection extends EventEmitter<{ change: [ConnectionChange]; ended: [EndState] }> {
  readonly id: string;
  readonly client: Socket;
  readonly streamMap: StreamMap;
  readonly openedAt = Date.now();
  bytesFromClient = 0;
  bytesToClient = 0;
  requests = 0;

  private readonly options: Required<Omit<RelayOptions, 'splicer' | 'adopted' | 'id'>> & { splicer?: Splicer };
  private readonly log: Logger;
  private readonly lifecycle: Lifecycle;
  private readonly queue: RequestQueue;
  private readonly origin: OriginLink;
  /* Server-to-client offset where this socket's own acknowledgement count starts (the restore
   * point after a takeover). */
  private readonly ackBase: number;
  private readonly deadlines: Deadlines;
  private exchange: Exchange | undefined;

  constructor(client: Socket, options: RelayOptions) {
    super();
    this.client = client;
    this.options = { ...RELAY_LIMITS, spliceThreshold: 64 * 1024, ...options };
    this.id = options.id ?? `${client.remoteAddress}:${client.remotePort}>${client.localAddress}:${client.localPort}`;
    this.log = options.logger.child({ conn: this.id });
    this.lifecycle = new Lifecycle(this.log);
    this.lifecycle.on('change', (change) => {
      this.emit('change', change);
      this.deadlines.update();
    });
    const originEvents = {
      data: (socket: Socket, chunk: Buffer) => this.onOriginData(socket, chunk),
      end: () => this.exchange?.framing.originEnded(),
      error: (err: Error) => this.exchange?.framing.abandon('origin-error', err),
    };
    this.origin = new OriginLink(options.origin, originEvents, (handle) => this.guard(handle));
    const adopted = options.adopted;
    this.streamMap = adopted?.streamMap ?? new StreamMap();
    this.streamMap.onChange = (change) => this.emit('change', { kind: 'map', change });
    this.bytesFromClient = adopted?.bytesFromClient ?? 0;
    this.bytesToClient = this.ackBase = adopted?.bytesToClient ?? 0;
    const requests = {
      requestBegun: (start: number, head: RequestHead) => this.streamMap.beginRequest(start, head),
      requestEnded: (end: number) => this.streamMap.endRequest(end),
      forwardBody: (data: Buffer) => this.writeToOrigin(data),
      forwardedRequestFailed: (error: WedgeError, reason: AbortReason) => this.exchange?.framing.abandon(reason, error),
    };
    this.queue = new RequestQueue(this.bytesFromClient, this.options, this.lifecycle, requests, (method) => this.options.observer.request(method));
    const watched = { lifecycle: this.lifecycle, client, queue: this.queue, exchange: () => this.exchange };
    this.deadlines = new Deadlines(this.options, watched, (deadline, error) => this.expired(deadline, error), (handle) => this.guard(handle));
    if (adopted) {
      this.queue.adopt(adopted.steps, adopted.replay);
      if (adopted.clientFinished) this.lifecycle.note('client-finished');
    }
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.guard(() => this.onClientData(chunk)));
    client.on('end', () => this.guard(() => this.onClientEnd()));
    client.on('error', (err) => this.guard(() => this.clientFailed('client-error', err)));
    client.on('close', () => this.guard(() => this.end('closed')));
    // An adopted connection has work before the client says anything; start it once the owner
    // has registered its listeners.
    if (adopted) process.nextTick(() => this.guard(() => this.pump()));
    this.deadlines.update();
  }

  get state(): ConnectionState {
    return this.lifecycle.state;
  }

  /* The server-to-client offset up to which the client's kernel has acknowledged the stream (it
   * can never resume before it); undefined once the socket is gone. */
  acknowledged(): number | undefined {
    try {
      return this.ackBase + progress(socketFd(this.client)).bytesAcked;
    } catch {
      return undefined;
    }
  }

  get handedOff(): boolean {
    return this.lifecycle.has('handed-off');
  }

  /* This server asks its group to take the connection (TCP Migrate). */
  handOff(): void {
    this.lifecycle.note('handed-off');
  }

  /* The connection may be moved away (TCP Migrate): once the client's agent has rewritten it, it
   * answers our segments with RST. That reset ends the connection here quietly. */
  expectMove(): void {
    this.lifecycle.note('move-expected');
  }

  /* Another server has taken this connection over: stop without a byte to the client.
   * `closeSilently` closes the client socket so that the kernel sends nothing (repair mode). */
  relinquish(closeSilently: (socket: Socket) => void): void {
    if (this.lifecycle.ended) return;
    this.log.info('connection taken over elsewhere; closing silently');
    this.exchange?.splice?.cancel();
    closeSilently(this.client);
    this.end('relinquished');
  }

  /* Found stuck for good from outside (takeover/watchdog.ts): reset the client and count `reason`. */
  reset(reason: AbortReason): void {
    this.guard(() => this.fail(reason));
  }

  /* ---- endings ---- */

  private guard(handle: () => void): void {
    try {
      handle();
    } catch (err) {
      this.fail('stream-map-error', err);
    }
  }

  /* Reset the client: used when the stream cannot be completed exactly. */
  private fail(reason: AbortReason, err?: unknown): void {
    if (this.lifecycle.ended) return;
    this.options.observer.abort(reason);
    this.log.warn({ reason, err: err instanceof Error ? err.message : err }, 'connection aborted');
    this.client.resetAndDestroy();
    this.end('aborted', reason);
  }

  /* The client side failed (a reset, usually): a failure, unless the connection was handed off. */
  private clientFailed(reason: AbortReason, err: unknown): void {
    if (this.lifecycle.has('move-expected')) this.relinquish(() => undefined);
    else this.fail(reason, err);
  }

  private end(state: EndState, reason?: string): void {
    if (this.lifecycle.ended) return;
    this.deadlines.stop();
    this.exchange?.splice?.cancel();
    this.exchange = undefined;
    this.origin.drop();
    if (!this.client.destroyed) this.client.destroy();
    this.lifecycle.enter(state, reason);
    this.emit('ended', state);
  }

  private closeGracefully(): void {
    if (!this.lifecycle.serving) return;
    this.lifecycle.enter('closing');
    this.lifecycle.note('last-request');
    this.origin.drop();
    // Once our FIN is out, a client that already sent its own has nothing more to say (an
    // adopted socket never sees that FIN arrive: it came before the takeover).
    this.client.end(() => {
      if (this.lifecycle.has('client-finished')) this.client.destroy();
    });
  }

  private sendReject(error: WedgeError): void {
    this.options.observer.reject(error.code);
    this.log.info({ code: error.code, detail: error.message }, 'request rejected');
    this.lifecycle.enter('idle');
    this.writeToClient(errorResponse(error));
    this.closeGracefully();
  }

  /* A time limit expired (relay/deadlines.ts): idle ends quietly, the others with their error. */
  private expired(deadline: Deadline, error: WedgeError | undefined): void {
    this.options.observer.timeout(deadline);
    this.log.info({ deadline, state: this.lifecycle.state }, 'time limit expired');
    if (deadline === 'response') this.exchange?.framing.abandon('response-timeout', error);
    else if (error) this.queue.expire(error, 'client-timeout');
    else if (this.lifecycle.state === 'closing') this.end('closed');
    else this.closeGracefully();
    this.pump();
  }

  /* ---- client side ---- */

  private onClientData(chunk: Buffer): void {
    this.deadlines.client();
    this.bytesFromClient += chunk.length;
    this.options.observer.bytes('client-to-origin', chunk.length);
    this.queue.push(chunk);
    if (this.queue.full) this.client.pause();
    this.pump();
    this.deadlines.update();
  }

  private onClientEnd(): void {
    this.queue.clientFinished();
    this.pump();
  }

  private resumeReading(): void {
    if (!this.queue.full && (!this.lifecycle.has('last-request') || this.queue.arriving)) this.client.resume();
    this.deadlines.update();
  }

  private writeToClient(data: Buffer): void {
    if (data.length === 0) return;
    this.bytesToClient += data.length;
    this.options.observer.bytes('origin-to-client', data.length);
    const origin = this.origin.current;
    if (!this.client.write(data) && origin) {
      origin.pause();
      this.client.once('drain', () => origin.resume());
    }
  }

  /* ---- exchanges, strictly one at a time ---- */

  private pump(): void {
    if (this.exchange || !this.lifecycle.serving) return;
    const item = this.queue.next();
    if (!item) {
      if (this.lifecycle.has('client-finished')) this.closeGracefully();
      return;
    }
    if (item.kind === 'reject') this.sendReject(item.error);
    else if (item.kind === 'resume') this.startResume(item.step);
    else this.startExchange(item);
  }

  private startExchange(request: PendingRequest): void {
    this.requests++;
    this.trimAcknowledged();
    this.exchange = { framing: new ResponseFraming(request.head.method, this.framingSink()), keepAlive: request.head.keepAlive, interim: [] };
    this.lifecycle.enter('forwarding');
    this.origin.open();
    for (const chunk of this.queue.forward(request)) this.writeToOrigin(chunk);
    this.resumeReading();
  }

  /* Send the rest of a recorded response: its remaining head bytes, then its body from the origin. */
  private startResume(step: ResumeStep): void {
    const recorded = step.exchange;
    const keepAlive = recorded.keepAlive === true && requestKeepsAlive(recorded);
    this.exchange = { framing: new ResponseFraming(recorded.method, this.framingSink(), step), keepAlive, resume: step, interim: [] };
    this.lifecycle.enter('forwarding');
    this.writeToClient(step.headRest);
    if (recorded.bodyLength === step.bodyOffset) {
      this.finishExchange(false);
      return;
    }
    this.origin.open();
    this.writeToOrigin(rangeRequest(recorded, step.bodyOffset));
  }

  /* What the current exchange's framing reports (a framing falls silent once its response ended). */
  private framingSink(): FramingSink {
    return {
      interim: (raw) => {
        this.exchange?.interim.push(raw);
        this.writeToClient(raw);
      },
      head: (head) => this.onResponseHead(head),
      body: (data) => this.writeToClient(data),
      end: (extra) => this.finishExchange(extra),
      failed: (reason, err, beforeResponse) => this.exchangeFailed(reason, err, beforeResponse),
    };
  }

  private onResponseHead(head: ResponseHead): void {
    const exchange = this.exchange!;
    if (!exchange.resume) {
      exchange.keepAlive = exchange.keepAlive && head.keepAlive && head.body.kind !== 'until-close';
      const interimLength = exchange.interim.reduce((sum, b) => sum + b.length, 0);
      this.streamMap.beginResponse(this.bytesToClient - interimLength, head, exchange.interim);
      this.writeToClient(head.rawHead);
    }
    this.lifecycle.enter('relaying-body');
  }

  private finishExchange(originSentExtra: boolean): void {
    const exchange = this.exchange;
    if (!exchange) return;
    // A resumed response the old owner had finished writing is already complete in the map.
    if (exchange.resume?.exchange.responseEnd === undefined) this.streamMap.endResponse(this.bytesToClient);
    this.trimAcknowledged();
    this.exchange = undefined;
    if (originSentExtra) {
      this.log.warn('origin sent bytes beyond the response; dropping the origin connection');
      this.origin.drop();
    }
    if (!exchange.keepAlive) {
      this.closeGracefully();
      return;
    }
    this.lifecycle.enter('idle');
    this.pump();
  }

  /* Exchanges the client has acknowledged whole leave the map, but for the latest few (for
   * `wedge status`): the map stays bounded however long the connection lives. */
  private trimAcknowledged(): void {
    const acknowledged = this.acknowledged();
    if (acknowledged !== undefined) this.streamMap.trim(acknowledged, RETAINED_EXCHANGES);
  }

  /* Before any response byte reached the client a clear 502 is possible; after, only a reset. */
  private exchangeFailed(reason: AbortReason, err: unknown, beforeResponse: boolean): void {
    if (!beforeResponse) {
      this.fail(reason, err);
      return;
    }
    this.log.warn({ reason, err: err instanceof Error ? err.message : err }, 'origin failed before responding');
    this.options.observer.abort(reason);
    this.exchange = undefined;
    this.origin.drop();
    this.sendReject(originError(reason, err));
  }

  /* ---- origin side ---- */

  private writeToOrigin(data: Buffer): void {
    if (!this.origin.write(data, () => this.resumeReading())) this.client.pause();
  }

  private onOriginData(origin: Socket, chunk: Buffer): void {
    this.deadlines.origin();
    const exchange = this.exchange;
    if (!exchange) {
      // Bytes from the origin with no request outstanding: it is broken; never relay them.
      this.log.warn({ bytes: chunk.length }, 'unsolicited bytes from origin');
      this.origin.drop();
      return;
    }
    exchange.framing.push(chunk);
    const remaining = exchange.framing.remainingLength;
    const splicer = this.options.splicer;
    if (this.exchange === exchange && splicer && remaining !== undefined && remaining >= this.options.spliceThreshold) this.spliceRest(exchange, splicer, origin, remaining);
  }

  /* The rest of the body moves in the kernel (relay/body-splice.ts); JavaScript writes nothing meanwhile. */
  private spliceRest(exchange: Exchange, splicer: Splicer, origin: Socket, length: number): void {
    exchange.framing.toKernel();
    exchange.splice = new BodySplice(splicer, origin, this.client, length, (handle) => this.guard(handle), {
      starting: () => {
        if (this.exchange !== exchange || this.lifecycle.ended) return false;
        this.lifecycle.enter('splicing');
        return true;
      },
      done: (moved) => {
        if (this.exchange !== exchange) return;
        exchange.splice = undefined;
        this.bytesToClient += moved;
        this.options.observer.bytes('origin-to-client', moved);
        this.options.observer.spliced(moved);
        exchange.framing.spliced(moved);
      },
      failed: (err) => this.clientFailed('splice-error', err),
    });
  }
}
