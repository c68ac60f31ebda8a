/*
 * One response from the origin, framed exactly: which of its bytes go to the client and where it
 * ends.
 *
 * In: the origin's bytes for one exchange (push), its end of stream (originEnded), and for a
 * known-length body handed to the kernel, the count the splice moved (spliced). Out, through the
 * sink, in order: interim 1xx heads, the final head, body bytes, then the end (with whether the
 * origin sent bytes beyond it), or one failure with its abort reason. `end` and `failed` are
 * always the last thing a push does, so the sink may start the next exchange from them.
 *
 * A resume exchange (after a takeover) expects the origin's 206 to the range request: the head
 * is checked to be the rest of the same representation (relay/resume.ts) and is never relayed;
 * only its body is. A resume from a snapshot (the state contract) expects the origin's restart,
 * answered `Wedge-Resumed: <k>` with the original status; of its body the bytes the client already
 * has are dropped and the rest of the response is relayed (relay/resume.ts).
 */
import type { AbortReason } from '../errors/reasons.js';
import { ChunkedBodyFramer } from '../parsers/chunked.js';
import { parseResponseHead, type ResponseHead } from '../parsers/http-response.js';
import type { ResumeStep } from '../stream-map/resume-plan.js';
import { resumeMismatch, stateResumeMismatch } from './resume.js';

export interface FramingSink {
  interim(rawHead: Buffer): void;
  /* The final head (for a resume: the origin's 206, checked, not to be relayed). */
  head(head: ResponseHead): void;
  body(data: Buffer): void;
  end(originSentExtra: boolean): void;
  /* `beforeResponse`: no byte of this response has reached the client yet (a 502 is possible). */
  failed(reason: AbortReason, err: unknown, beforeResponse: boolean): void;
}

type Phase =
  | { kind: 'head'; buffered: Buffer; interim: number }
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; framer: ChunkedBodyFramer }
  | { kind: 'until-close' }
  | { kind: 'kernel'; length: number }
  /* A generated response restarted from a snapshot: `discard` bytes the client already has, then
   * `deliver` more (undefined: up to the origin's close); `originLeft` of its body still to come. */
  | { kind: 'state'; discard: number; deliver: number | undefined; originLeft: number | undefined }
  | { kind: 'done' };

export class ResponseFraming {
  private phase: Phase = { kind: 'head', buffered: Buffer.alloc(0), interim: 0 };

  constructor(
    private readonly method: string,
    private readonly sink: FramingSink,
    private readonly resume?: ResumeStep,
    /* The request carried a session's snapshot: the answer must say `Wedge-Resumed: <this>`. */
    private readonly sessionOffset?: number,
  ) {}

  /* Body bytes still to come of a known-length body, if that is where the response is. */
  get remainingLength(): number | undefined {
    return this.phase.kind === 'length' ? this.phase.remaining : undefined;
  }

  /* The response can still end cleanly with the origin's FIN (a read-until-close body). */
  get endsAtClose(): boolean {
    return this.phase.kind === 'until-close';
  }

  get inKernel(): boolean {
    return this.phase.kind === 'kernel';
  }

  push(chunk: Buffer): void {
    const phase = this.phase;
    switch (phase.kind) {
      case 'head':
        return this.onHeadBytes(phase.buffered.length === 0 ? chunk : Buffer.concat([phase.buffered, chunk]));
      case 'length':
        return this.onLengthBody(chunk);
      case 'chunked': {
        let progress: { consumed: number; done: boolean };
        try {
          progress = phase.framer.push(chunk);
        } catch (err) {
          return this.fail('origin-malformed-chunks', err);
        }
        this.sink.body(chunk.subarray(0, progress.consumed));
        if (progress.done) this.finish(progress.consumed < chunk.length);
        return;
      }
      case 'until-close':
        return this.sink.body(chunk);
      case 'kernel':
        return this.fail('origin-data-during-splice', undefined);
      case 'state':
        return this.onStateBody(phase, chunk);
      case 'done':
        return;
    }
  }

  /* The rest of a known-length body (remainingLength bytes) is being moved by the kernel. */
  toKernel(): void {
    if (this.phase.kind !== 'length') throw new Error(`cannot splice a response in phase ${this.phase.kind}`);
    this.phase = { kind: 'kernel', length: this.phase.remaining };
  }

  spliced(moved: number): void {
    if (this.phase.kind !== 'kernel') return;
    if (moved < this.phase.length) this.fail('origin-closed-mid-body', undefined);
    else this.finish(false);
  }

  /* The origin closed its side. */
  originEnded(): void {
    if (this.phase.kind === 'until-close' || (this.phase.kind === 'state' && this.phase.deliver === undefined)) this.finish(false);
    else if (this.phase.kind === 'state') this.fail('resume-refused', 'the origin closed before the rest of the resumed response');
    // A splice in progress reports the short count itself.
    else if (this.phase.kind !== 'kernel') this.fail('origin-closed-early', undefined);
  }

  /* The exchange cannot go on (the origin connection failed, the request turned out malformed). */
  abandon(reason: AbortReason, err: unknown): void {
    this.fail(reason, err);
  }

  private onHeadBytes(buffered: Buffer): void {
    const phase = this.phase as Extract<Phase, { kind: 'head' }>;
    let head: ResponseHead | null;
    try {
      head = parseResponseHead(buffered, this.method);
    } catch (err) {
      return this.fail('origin-malformed', err);
    }
    if (!head) {
      phase.buffered = buffered;
      return;
    }
    const rest = buffered.subarray(head.headerLength);
    if (head.status >= 100 && head.status < 200) {
      if (head.status === 101) return this.fail('origin-switched-protocols', undefined);
      // Interim response (100 Continue): relayed (unless resuming), then the final one follows.
      if (!this.resume) {
        phase.interim++;
        this.sink.interim(head.rawHead);
      }
      phase.buffered = Buffer.alloc(0);
      return this.onHeadBytes(rest);
    }
    if (this.resume) return this.onResumeHead(this.resume, head, rest);
    const resumed = head.headers.find(([name]) => name === 'wedge-resumed')?.[1];
    if (this.sessionOffset !== undefined && resumed !== String(this.sessionOffset)) {
      return this.fail('resume-refused', `the request carried the session's snapshot, the answer has ${resumed === undefined ? 'no Wedge-Resumed' : `Wedge-Resumed: ${resumed}`}`);
    }
    this.sink.head(head);
    switch (head.body.kind) {
      case 'none':
        return this.finish(rest.length > 0);
      case 'length':
        this.phase = { kind: 'length', remaining: head.body.length };
        return this.onLengthBody(rest);
      case 'chunked':
        this.phase = { kind: 'chunked', framer: new ChunkedBodyFramer({ malformedCode: 'WEDGE_ERR_ORIGIN_MALFORMED' }) };
        if (rest.length > 0) this.push(rest);
        return;
      case 'until-close':
        this.phase = { kind: 'until-close' };
        if (rest.length > 0) this.sink.body(rest);
        return;
    }
  }

  private onResumeHead(step: ResumeStep, head: ResponseHead, rest: Buffer): void {
    if (step.state) return this.onStateResumeHead(step, step.state.offset, head, rest);
    const mismatch = resumeMismatch(step.exchange, step.bodyOffset, head);
    if (mismatch) return this.fail('representation-changed', mismatch);
    this.sink.head(head);
    this.phase = { kind: 'length', remaining: step.exchange.bodyLength! - step.bodyOffset };
    this.onLengthBody(rest);
  }

  private onStateResumeHead(step: ResumeStep, offset: number, head: ResponseHead, rest: Buffer): void {
    const mismatch = stateResumeMismatch(step.exchange, offset, head);
    if (mismatch) return this.fail('resume-refused', mismatch);
    this.sink.head(head);
    const { bodyLength } = step.exchange;
    const originLeft = head.body.kind === 'length' ? head.body.length : undefined;
    this.phase = { kind: 'state', discard: step.bodyOffset - offset, deliver: bodyLength === undefined ? undefined : bodyLength - step.bodyOffset, originLeft };
    this.onStateBody(this.phase, rest);
  }

  private onStateBody(phase: Extract<Phase, { kind: 'state' }>, chunk: Buffer): void {
    const fromOrigin = phase.originLeft === undefined ? chunk : chunk.subarray(0, phase.originLeft);
    if (phase.originLeft !== undefined) phase.originLeft -= fromOrigin.length;
    const dropped = Math.min(phase.discard, fromOrigin.length);
    phase.discard -= dropped;
    const fresh = fromOrigin.subarray(dropped);
    const take = phase.deliver === undefined ? fresh : fresh.subarray(0, phase.deliver);
    if (take.length > 0) this.sink.body(take);
    if (phase.deliver !== undefined) {
      phase.deliver -= take.length;
      if (phase.deliver === 0) return this.finish(dropped + take.length < chunk.length);
    }
    if (phase.originLeft === 0) {
      if (phase.deliver === undefined) this.finish(fromOrigin.length < chunk.length);
      else this.fail('resume-refused', 'the resumed body ended before the rest of the response');
    }
  }

  private onLengthBody(chunk: Buffer): void {
    const phase = this.phase as Extract<Phase, { kind: 'length' }>;
    const take = Math.min(chunk.length, phase.remaining);
    if (take > 0) this.sink.body(chunk.subarray(0, take));
    phase.remaining -= take;
    if (phase.remaining === 0) this.finish(take < chunk.length);
  }

  private finish(originSentExtra: boolean): void {
    this.phase = { kind: 'done' };
    this.sink.end(originSentExtra);
  }

  private fail(reason: AbortReason, err: unknown): void {
    if (this.phase.kind === 'done') return;
    const beforeResponse = !this.resume && this.phase.kind === 'head' && this.phase.interim === 0;
    this.phase = { kind: 'done' };
    this.sink.failed(reason, err, beforeResponse);
  }
}
