/*
 * One exchange of a connection: a request forwarded to the origin (or, after a takeover, a resume
 * step: the rest of a recorded response), and its response relayed to the client.
 *
 * In: the origin's bytes for it (originData). Out, through the host: the interim and final heads
 * and the body to the client, the response recorded in the stream map (beginResponse: its exact
 * place in the server-to-client stream), the lifecycle entering relaying-body and splicing, and at
 * the end finished() or failed(). A known-length body at least spliceThreshold long is handed to
 * the kernel (relay/body-splice.ts). The end of the response in the stream map, and what follows
 * it, are the connection's (relay/connection.ts).
 */
import type { Socket } from 'node:net';
import type { AbortReason } from '../errors/reasons.js';
import type { ResponseHead } from '../parsers/http-response.js';
import { requestKeepsAlive, type ResumeStep } from '../stream-map/resume-plan.js';
import type { StreamMap } from '../stream-map/stream-map.js';
import { BodySplice } from './body-splice.js';
import type { Lifecycle } from './lifecycle.js';
import type { Splicer } from './options.js';
import type { OriginLink } from './origin-link.js';
import type { PeerOrigin } from './origin-recovery.js';
import type { PendingRequest } from './request-queue.js';
import { ResponseFraming } from './response-framing.js';
import type { HeaderList } from '../parsers/http-common.js';
import { rangeRequest, stateRequest } from './resume.js';

/* What an exchange needs of its connection. */
export interface ExchangeHost {
  readonly client: Socket;
  readonly streamMap: StreamMap;
  readonly lifecycle: Lifecycle;
  readonly origin: OriginLink;
  readonly splicer: Splicer | undefined;
  readonly spliceThreshold: number;
  /* The server-to-client offset of the next byte to the client. */
  bytesToClient(): number;
  writeToClient(data: Buffer): void;
  writeToOrigin(data: Buffer): void;
  /* What the wedge adds to exchange n's request: the state contract's Wedge-Exchange and
   * Wedge-State (when it is on) and the client's address (with --forwarded). */
  originFields(exchange: number): HeaderList;
  /* The client's address for the origin (with --forwarded), alone. */
  addressFields(): HeaderList;
  /* Bytes the kernel moved to the client. */
  spliced(moved: number): void;
  guard(handle: () => void): void;
  finished(exchange: Exchange, originSentExtra: boolean): void;
  /* `beforeResponse`: no byte of this response has reached the client yet. */
  failed(exchange: Exchange, reason: AbortReason, err: unknown, beforeResponse: boolean): void;
  clientFailed(reason: AbortReason, err: unknown): void;
  /* The origin accepted a restart from a snapshot (Wedge-Resumed matched). */
  snapshotResumed(): void;
}

export class Exchange {
  readonly framing: ResponseFraming;
  /* The connection stays open after this response. */
  keepAlive: boolean;
  private readonly interim: Buffer[] = [];
  private bodySplice: BodySplice | undefined;
  private ended = false;

  /* `sessionOffset`: the request carries a session's snapshot (Wedge-Resume), so its answer
   * must say `Wedge-Resumed: <sessionOffset>`. */
  static forRequest(host: ExchangeHost, request: PendingRequest, sessionOffset?: number): Exchange {
    return new Exchange(host, request.head.method, request.head.keepAlive, undefined, undefined, sessionOffset);
  }

  /* `via`: the rest comes from a peer's origin (relay/origin-recovery.ts), not the local one. */
  static forResume(host: ExchangeHost, step: ResumeStep, via?: PeerOrigin): Exchange {
    const keepAlive = step.exchange.keepAlive === true && step.exchange.bodyKind !== 'until-close' && requestKeepsAlive(step.exchange);
    return new Exchange(host, step.exchange.method, keepAlive, step, via);
  }

  private constructor(
    private readonly host: ExchangeHost,
    method: string,
    keepAlive: boolean,
    /* Set when this exchange re-fetches the rest of a recorded response after a takeover. */
    readonly resumed?: ResumeStep,
    readonly via?: PeerOrigin,
    sessionOffset?: number,
  ) {
    this.keepAlive = keepAlive;
    this.framing = new ResponseFraming(
      method,
      {
        interim: (raw) => {
          this.interim.push(raw);
          host.writeToClient(raw);
        },
        head: (head) => this.onHead(head),
        body: (data) => host.writeToClient(data),
        end: (extra) => this.finish(extra),
        failed: (reason, err, beforeResponse) => {
          this.ended = true;
          const splice = this.bodySplice;
          if (!splice) return host.failed(this, reason, err, beforeResponse);
          // A stalled splice: what it moved counts before the failure does (the rest may be resumed).
          this.bodySplice = undefined;
          splice.stop((moved) => {
            host.spliced(moved);
            host.failed(this, reason, err, beforeResponse);
          });
        },
      },
      resumed,
      sessionOffset,
    );
  }

  /* It has finished or failed: nothing more comes of it. */
  get done(): boolean {
    return this.ended;
  }

  /* The kernel splice moving its body now, if any. */
  get splice(): { readonly moved: number } | undefined {
    return this.bodySplice;
  }

  /* Starts it, once it is the connection's current exchange: a request's held bytes (`held`) go
   * to the origin; a resume step sends the rest of the recorded head, then asks the origin for the
   * rest of the body (or is already complete). */
  start(held: readonly Buffer[]): void {
    const { host, resumed } = this;
    host.lifecycle.enter('forwarding');
    if (resumed) {
      host.writeToClient(resumed.headRest);
      if (resumed.exchange.bodyLength === resumed.bodyOffset) return this.finish(false);
    }
    host.origin.open(this.via?.endpoint);
    if (resumed?.state) host.writeToOrigin(stateRequest(resumed.exchange, resumed.state.offset, resumed.state.snapshot.data, host.originFields(resumed.exchange.index)));
    else if (resumed) host.writeToOrigin(rangeRequest(resumed.exchange, resumed.bodyOffset, host.addressFields(), this.via));
    else for (const chunk of held) host.writeToOrigin(chunk);
  }

  originData(origin: Socket, chunk: Buffer): void {
    this.framing.push(chunk);
    const remaining = this.framing.remainingLength;
    const splicer = this.host.splicer;
    if (!this.ended && splicer && remaining !== undefined && remaining >= this.host.spliceThreshold) this.spliceRest(splicer, origin, remaining);
  }

  cancel(): void {
    this.ended = true;
    this.bodySplice?.cancel();
  }

  /* Stops for a handover, without a byte more to the client: resolves once a kernel splice (if
   * one runs) has stopped moving. */
  halt(): Promise<void> {
    this.ended = true;
    const splice = this.bodySplice;
    return splice ? new Promise((resolve) => splice.stop(() => resolve())) : Promise.resolve();
  }

  private onHead(head: ResponseHead): void {
    if (!this.resumed) {
      this.keepAlive = this.keepAlive && head.keepAlive && head.body.kind !== 'until-close';
      const interimLength = this.interim.reduce((sum, b) => sum + b.length, 0);
      this.host.streamMap.beginResponse(this.host.bytesToClient() - interimLength, head, this.interim);
      this.host.writeToClient(head.rawHead);
    } else if (this.resumed.state) this.host.snapshotResumed();
    this.host.lifecycle.enter('relaying-body');
  }

  private finish(originSentExtra: boolean): void {
    this.ended = true;
    this.host.finished(this, originSentExtra);
  }

  /* The rest of the body moves in the kernel; JavaScript writes nothing meanwhile. */
  private spliceRest(splicer: Splicer, origin: Socket, length: number): void {
    const host = this.host;
    this.framing.toKernel();
    this.bodySplice = new BodySplice(splicer, origin, host.client, length, (handle) => host.guard(handle), {
      starting: () => {
        if (this.ended || host.lifecycle.ended) return false;
        host.lifecycle.enter('splicing');
        return true;
      },
      done: (moved) => {
        if (this.ended) return;
        this.bodySplice = undefined;
        host.spliced(moved);
        this.framing.spliced(moved);
      },
      failed: (err) => host.clientFailed('splice-error', err),
    });
  }
}
