/*
 * Test helpers: feed a byte string to a RequestParser in every way it can arrive (whole, split
 * at each boundary, one byte at a time, random splits) and normalise the events so that runs
 * can be compared: consecutive body slices are merged, Buffers become latin1 strings.
 */
import { expect } from 'vitest';
import { RequestParser, type RequestEvent, type RequestParserOptions } from '../../parsers/http-request.js';
import type { WedgeErrorCode } from '../../errors/codes.js';

export type NormalEvent =
  | { type: 'head'; start: number; head: Record<string, unknown> }
  | { type: 'body'; data: string }
  | { type: 'end'; end: number };

export function normalise(events: RequestEvent[]): NormalEvent[] {
  const out: NormalEvent[] = [];
  for (const event of events) {
    if (event.type === 'body') {
      if (event.data.length === 0) continue;
      const last = out[out.length - 1];
      if (last?.type === 'body') last.data += event.data.toString('latin1');
      else out.push({ type: 'body', data: event.data.toString('latin1') });
    } else if (event.type === 'head') {
      out.push({ type: 'head', start: event.start, head: { ...event.head, rawHead: event.head.rawHead.toString('latin1') } });
    } else if (event.type === 'end') {
      out.push({ type: 'end', end: event.end });
    }
  }
  return out;
}

export type Outcome = { events: NormalEvent[]; error?: WedgeErrorCode };

/** Feeds `pieces` in order; stops at the first error, keeping the events delivered before it. */
export function feed(pieces: Buffer[], options?: RequestParserOptions): Outcome {
  const parser = new RequestParser(options);
  const events: RequestEvent[] = [];
  for (const piece of pieces) {
    for (const event of parser.push(piece)) {
      if (event.type === 'error') return { events: normalise(events), error: event.error.code };
      events.push(event);
    }
  }
  return { events: normalise(events) };
}

/** Deterministic PRNG so failures reproduce. */
export function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x100000000;
  };
}

export function splitings(input: Buffer, seed = 1): Buffer[][] {
  const ways: Buffer[][] = [[input]];
  for (let cut = 1; cut < input.length; cut++) ways.push([input.subarray(0, cut), input.subarray(cut)]);
  ways.push([...input].map((byte) => Buffer.from([byte])));
  const random = prng(seed);
  for (let n = 0; n < 5; n++) {
    const pieces: Buffer[] = [];
    let at = 0;
    while (at < input.length) {
      const size = 1 + Math.floor(random() * 40);
      pieces.push(input.subarray(at, at + size));
      at += size;
    }
    ways.push(pieces);
  }
  return ways;
}

/**
 * Parses `input` whole, then every other way, and checks they all agree. When an error is
 * expected, every way must fail with it; the events before the error may differ (a whole-chunk
 * push loses the events of the push that failed), so only the code is compared.
 */
export function parseEveryWay(input: Buffer | string, options?: RequestParserOptions): Outcome {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const whole = feed([bytes], options);
  for (const pieces of splitings(bytes)) {
    const outcome = feed(pieces, options);
    if (whole.error) expect(outcome.error, `split ${pieces.map((p) => p.length).join('+')}`).toBe(whole.error);
    else expect(outcome, `split ${pieces.map((p) => p.length).join('+')}`).toEqual(whole);
  }
  return whole;
}

export function expectRejected(input: string, code: WedgeErrorCode, options?: RequestParserOptions): void {
  const outcome = parseEveryWay(input, options);
  expect(outcome.error).toBe(code);
}
