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
 * Requests are parsed strictly (relay/request-queue.ts) and answered one exchange at a time
 * (relay/exchange.ts: framing, the kernel splice of bodies, resume steps after a takeover), so
 * responses can never interleave; a request that fails to parse is answered with its error status
 * in its turn, and the connection closes after it. Every connection, adopted ones too, keeps to
 * the front-end limits (relay/options.ts; time limits on one timer, relay/deadlines.ts): a 408 or
 * 504 while no response byte is out, a counted reset after, a quiet close when idle.
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
import { clientAddressFields, forwardedHead } from '../parsers/forwarded-head.js';
import type { HeaderList } from '../parsers/http-common.js';
import type { RequestHead } from '../parsers/http-request.js';
import { progress, socketFd } from '../native/index.js';
import { StreamMap, type StreamMapChange, type StreamMapJSON } from '../stream-map/stream-map.js';
import { stopReading } from './socket-handle.js';
import { Deadlines, type Deadline } from './deadlines.js';
import { errorResponse, originError } from './error-page.js';
import { Exchange, type ExchangeHost } from './exchange.js';
import { Lifecycle, type ConnectionState, type LifecycleChange } from './lifecycle.js';
import { DEFAULT_ORIGIN_RECOVERY, RELAY_LIMITS, type RelayOptions, type Splicer } from './options.js';
import { OriginLink } from './origin-link.js';
import { OriginRecovery } from './origin-recovery.js';
import { RequestQueue, type PendingRequest } from './request-queue.js';
import { sessionAt, type Snapshot } from '../stream-map/resume-plan.js';
import type { StateSlot } from './state-slots.js';
import type { ResumeStep } from '../stream-map/resume-plan.js';
import type { PeerOrigin, RecoveryResult, RecoverySource } from './origin-recovery.js';

export type { AdoptedStream, RelayObserver, RelayOptions, Splicer, SpliceJob } from './options.js';

export type ConnectionChange = LifecycleChange | { kind: 'map'; change: StreamMapChange } | { kind: 'snapshot' };
export type EndState = 'closed' | 'aborted' | 'relinquished';
/* Why a connection was let go silently: a peer took it (its record superseded ours, or the
 * client's agent answers with RST after a move), it is rebuilt here at once, or the next wedge
 * process took its socket (an in-place upgrade). */
export type Relinquished = 'taken-over' | 'rebuilt-here' | 'handed-over';

/* A connection stopped for an in-place upgrade: its socket (the next process takes the fd) and
 * its exact position, in the shape of a record's stream (replication/records.ts). */
export interface FrozenConnection {
  id: string;
  fd: number;
  ackBase: number;
  stream: { map: StreamMapJSON; sent: number; received: number; snapshot?: Snapshot };
  pending: Buffer;
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

  private readonly options: Required<Omit<RelayOptions, 'splicer' | 'adopted' | 'id' | 'stateSlots' | 'originRecovery' | 'forwarded'>> & { splicer?: Splicer };
  private readonly log: Logger;
  private readonly lifecycle: Lifecycle;
  private readonly queue: RequestQueue;
  private readonly origin: OriginLink;
  /* Server-to-client offset where this socket's own acknowledgement count starts (the restore
   * point after a takeover). */
  private readonly ackBase: number;
  private readonly deadlines: Deadlines;
  private readonly exchangeHost: ExchangeHost;
  private readonly recovery: OriginRecovery;
  private exchange: Exchange | undefined;
  /* Where the origin stores this connection's snapshots (the state contract), when it is on. */
  readonly stateSlot: StateSlot | undefined;
  private readonly addressFields: HeaderList;
  /* Adopted between exchanges with a snapshot at the end of exchange n: the session, handed to
   * the origin with the client's next request (n + 1, Wedge-Resume-Offset 0). */
  private session: Snapshot | undefined;

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
    this.bytesToClient = adopted?.bytesToClient ?? 0;
    this.ackBase = adopted?.ackBase ?? this.bytesToClient;
    const requests = {
      requestBegun: (start: number, head: RequestHead) => this.streamMap.beginRequest(start, head).index,
      requestEnded: (end: number, body: Buffer | 'too-large' | undefined) => this.streamMap.endRequest(end, body),
      forwardBody: (data: Buffer) => this.writeToOrigin(data),
      forwardedRequestFailed: (error: WedgeError, reason: AbortReason) => this.exchange?.framing.abandon(reason, error),
    };
    // The socket's peer is the client also after a takeover (a restored or migrated socket).
    this.addressFields = options.forwarded && options.forwarded !== 'none' ? clientAddressFields(options.forwarded, client.remoteAddress ?? '') : [];
    this.stateSlot = options.stateSlots?.open();
    if (this.stateSlot) this.stateSlot.onStored = () => this.emit('change', { kind: 'snapshot' });
    if (this.stateSlot && adopted?.snapshot) {
      // The adopter holds the old owner's snapshot until its origin stores a newer one.
      this.stateSlot.snapshot = adopted.snapshot;
      this.stateSlot.storedAt = Date.now();
      this.session = sessionAt(this.streamMap, adopted.snapshot);
    }
    this.queue = new RequestQueue(this.bytesFromClient, this.options, this.lifecycle, requests, (method) => this.options.observer.request(method));
    this.exchangeHost = {
      client,
      streamMap: this.streamMap,
      lifecycle: this.lifecycle,
      origin: this.origin,
      splicer: this.options.splicer,
      spliceThreshold: this.options.spliceThreshold,
      bytesToClient: () => this.bytesToClient,
      writeToClient: (data) => this.writeToClient(data),
      writeToOrigin: (data) => this.writeToOrigin(data),
      originFields: (exchange) => this.originFields(exchange),
      addressFields: () => this.addressFields,
      snapshotResumed: () => this.options.observer.snapshotResumed?.(),
      spliced: (moved) => {
        this.bytesToClient += moved;
        this.options.observer.bytes('origin-to-client', moved);
        this.options.observer.spliced(moved);
      },
      guard: (handle) => this.guard(handle),
      finished: (exchange, originSentExtra) => this.finishExchange(exchange, originSentExtra),
      failed: (exchange, reason, err, beforeResponse) => this.exchangeFailed(exchange, reason, err, beforeResponse),
      clientFailed: (reason, err) => this.clientFailed(reason, err),
    };
    const recoveryHost = {
      client,
      streamMap: this.streamMap,
      bytesToClient: () => this.bytesToClient,
      guard: (handle: () => void) => this.guard(handle),
      resume: (step: ResumeStep, via: PeerOrigin | undefined) => this.resumeDropped(step, via),
    };
    const counted = (source: RecoverySource, result: RecoveryResult) => this.options.observer.originResume?.(source, result);
    this.recovery = new OriginRecovery({ ...(options.originRecovery ?? DEFAULT_ORIGIN_RECOVERY), counted }, recoveryHost, this.log);
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
    if (adopted) process.nextTick(() => this.guard(() => (adopted.pending?.length ? this.onClientData(adopted.pending) : this.pump())));
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

  /* Stop without a byte to the client: another server has taken the connection over, or this one
   * rebuilds its endpoint (a fast-forward). `closeSilently` closes the client socket so that the
   * kernel sends nothing (repair mode); `why` goes with the lifecycle's change. */
  relinquish(closeSilently: (socket: Socket) => void, why: Relinquished): void {
    if (this.lifecycle.ended) return;
    this.log.info({ why }, 'closing silently');
    this.exchange?.cancel();
    closeSilently(this.client);
    this.end('relinquished', why);
  }

  /*
   * An in-place upgrade (daemon/handover.ts): everything stops without a byte more to either
   * side, and the position goes to the next process, which takes the socket as it is (the kernel
   * still delivers what this one queued: `sent` is the kernel's write position). Undefined when
   * the connection is not at a clean point (a request arriving is half parsed here): it stays.
   */
  async freeze(): Promise<FrozenConnection | undefined> {
    if (!this.lifecycle.serving || this.queue.arriving || this.queue.headPending) return undefined;
    stopReading(this.client);
    this.origin.drop();
    this.deadlines.stop();
    this.recovery.cancel();
    await this.exchange?.halt();
    if (this.lifecycle.ended) return undefined;
    const unread = this.client.read() as Buffer | null;
    const fd = socketFd(this.client);
    const kernel = progress(fd);
    const snapshot = this.stateSlot?.snapshot;
    const stream = {
      map: this.streamMap.toJSON(this.ackBase + kernel.bytesAcked),
      sent: this.ackBase + kernel.bytesAcked + kernel.inFlight + kernel.notSent,
      received: this.bytesFromClient,
      ...(snapshot ? { snapshot } : {}),
    };
    return { id: this.id, fd, ackBase: this.ackBase, stream, pending: unread ?? Buffer.alloc(0) };
  }

  /* The next process holds the socket now: this one closes its descriptor and forgets it. */
  handedOver(): void {
    this.end('relinquished', 'handed-over');
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
    if (this.lifecycle.has('move-expected')) this.relinquish(() => undefined, 'taken-over');
    else this.fail(reason, err);
  }

  private end(state: EndState, reason?: string): void {
    if (this.lifecycle.ended) return;
    this.deadlines.stop();
    this.stateSlot?.close();
    this.recovery.cancel();
    this.exchange?.cancel();
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
    else if (item.kind === 'resume') {
      this.exchange = Exchange.forResume(this.exchangeHost, item.step);
      this.exchange.start([]);
    } else this.startExchange(item);
  }

  private startExchange(request: PendingRequest): void {
    this.requests++;
    const session = this.session?.exchange === request.exchange - 1 ? this.session : undefined;
    this.session = undefined;
    const fields: HeaderList = session
      ? [...this.originFields(request.exchange), ['Wedge-Resume', session.data.toString('base64')], ['Wedge-Resume-Offset', '0']]
      : this.originFields(request.exchange);
    this.exchange = Exchange.forRequest(this.exchangeHost, request, session ? 0 : undefined);
    const [head, ...body] = this.queue.forward(request);
    this.exchange.start([forwardedHead(head!, request.head.headers, fields), ...body]);
    this.resumeReading();
  }

  /* The state contract's fields (when it is on) and the client's address (--forwarded). */
  private originFields(exchange: number): HeaderList {
    if (!this.stateSlot) return this.addressFields;
    return [['Wedge-Exchange', String(exchange)], ['Wedge-State', this.stateSlot.url], ...this.addressFields];
  }

  /* What follows a response: its end in the map, then the next exchange, or the close. */
  private finishExchange(exchange: Exchange, originSentExtra: boolean): void {
    if (this.exchange !== exchange) return;
    // A resumed response the old owner had finished writing is already complete in the map.
    if (exchange.resumed?.exchange.responseEnd === undefined) this.streamMap.endResponse(this.bytesToClient);
    this.trimAcknowledged();
    this.exchange = undefined;
    this.recovery.finished();
    if (originSentExtra || exchange.via) {
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
   * `wedge status`): the map stays bounded however long the connection lives. Once per response
   * (one TCP_INFO read): the next response's end trims what this one could not yet. */
  private trimAcknowledged(): void {
    const acknowledged = this.acknowledged();
    if (acknowledged !== undefined) this.streamMap.trim(acknowledged, RETAINED_EXCHANGES);
  }

  /* Before any response byte reached the client a clear 502 is possible; after, the rest is asked
   * for again (relay/origin-recovery.ts), and only if no origin serves it, a reset. */
  private exchangeFailed(exchange: Exchange, reason: AbortReason, err: unknown, beforeResponse: boolean): void {
    if (this.exchange !== exchange) return;
    if (!beforeResponse) {
      this.origin.drop();
      const abort = this.recovery.failed(reason, err);
      if (abort) this.fail(abort, err);
      return;
    }
    this.log.warn({ reason, err: err instanceof Error ? err.message : err }, 'origin failed before responding');
    this.options.observer.abort(reason);
    this.exchange = undefined;
    this.origin.drop();
    this.sendReject(originError(reason, err));
  }

  /* The failed exchange's response continues from an origin (local, or a peer's: `via`). */
  private resumeDropped(step: ResumeStep, via: PeerOrigin | undefined): void {
    if (!this.lifecycle.serving || !this.exchange?.done) return;
    this.exchange = Exchange.forResume(this.exchangeHost, step, via);
    this.exchange.start([]);
  }

  /* ---- origin side ---- */

  private writeToOrigin(data: Buffer): void {
    if (!this.origin.write(data, () => this.resumeReading())) this.client.pause();
  }

  private onOriginData(origin: Socket, chunk: Buffer): void {
    this.deadlines.origin();
    if (this.exchange) {
      this.exchange.originData(origin, chunk);
      return;
    }
    // Bytes from the origin with no request outstanding: it is broken; never relay them.
    this.log.warn({ bytes: chunk.length }, 'unsolicited bytes from origin');
    this.origin.drop();
  }
}

