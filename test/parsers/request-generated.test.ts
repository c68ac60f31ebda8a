/*
 * Generated requests: a model builds random valid pipelines (methods, targets, header casing,
 * OWS, every body kind, random chunk sizes, extensions and trailers) together with the events
 * the parser must produce; each pipeline is also fed split every way. Then random mutations of
 * valid requests (byte flips, insertions, deletions) check that the parser either accepts or
 * throws a WedgeError, identically however the bytes are split.
 */
import { describe, expect, it } from 'vitest';
import { WedgeError } from '../../errors/codes.js';
import { feed, type NormalEvent, parseEveryWay, prng, splitings } from './helpers.js';

interface Generated {
  bytes: string;
  expected: Array<{ type: string; at?: number; target?: string; body?: string }>;
}

function generatePipeline(random: () => number): Generated {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const count = 1 + Math.floor(random() * 4);
  let bytes = '';
  const expected: Generated['expected'] = [];
  for (let n = 0; n < count; n++) {
    if (random() < 0.2) bytes += '\r\n';
    const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'X-CUSTOM']);
    const target = pick(['/', '/a/b?c=d&e=%20', '/' + 'x'.repeat(Math.floor(random() * 50)), 'http://h:8080/p']);
    const lines = [`${method} ${target} HTTP/1.1`, `${pick(['Host', 'host', 'HOST'])}:${pick(['', ' ', '\t '])}example.org:80`];
    for (let k = Math.floor(random() * 5); k > 0; k--) lines.push(`X-H${k}:${pick([' v', 'v', ' a b ', ' \x80\xff'])}`);
    let body = '';
    const kind = pick(['none', 'length', 'chunked']);
    if (kind === 'length') {
      body = 'b'.repeat(Math.floor(random() * 30));
      lines.push(`Content-Length: ${body.length}`);
    } else if (kind === 'chunked') {
      lines.push(`Transfer-Encoding: ${pick(['chunked', 'Chunked'])}`);
      for (let c = Math.floor(random() * 4); c > 0; c--) {
        const size = 1 + Math.floor(random() * 20);
        const ext = pick(['', ';a', ';a=b', ' ;a="q \\" x"']);
        body += `${size.toString(16)}${ext}\r\n${'c'.repeat(size)}\r\n`;
      }
      body += '0\r\n' + (random() < 0.5 ? 'X-Trailer: t\r\n' : '') + '\r\n';
    }
    const head = lines.join('\r\n') + '\r\n\r\n';
    expected.push({ type: 'head', at: bytes.length, target });
    if (body.length > 0) expected.push({ type: 'body', body });
    bytes += head + body;
    expected.push({ type: 'end', at: bytes.length });
  }
  return { bytes, expected };
}

function summarise(events: NormalEvent[]): Generated['expected'] {
  return events.map((e) =>
    e.type === 'head'
      ? { type: 'head', at: e.start, target: e.head['target'] as string }
      : e.type === 'body'
        ? { type: 'body', body: e.data }
        : { type: 'end', at: e.end },
  );
}

describe('RequestParser: generated inputs', () => {
  it('200 random valid pipelines parse to the model events, split every way', () => {
    const random = prng(42);
    for (let n = 0; n < 200; n++) {
      const { bytes, expected } = generatePipeline(random);
      const outcome = parseEveryWay(bytes);
      expect(outcome.error, bytes).toBeUndefined();
      expect(summarise(outcome.events), bytes).toEqual(expected);
    }
  });

  it('3000 random mutations: accepted or WedgeError, identically for every split', () => {
    const random = prng(7);
    let rejected = 0;
    for (let n = 0; n < 3000; n++) {
      const chars = [...generatePipeline(random).bytes];
      for (let m = 1 + Math.floor(random() * 3); m > 0; m--) {
        const at = Math.floor(random() * chars.length);
        const byte = String.fromCharCode(Math.floor(random() * 256));
        const op = random();
        if (op < 0.4) chars[at] = byte;
        else if (op < 0.7) chars.splice(at, 0, byte);
        else chars.splice(at, 1);
      }
      const input = Buffer.from(chars.join(''), 'latin1');
      const whole = feed([input]);
      if (whole.error) rejected++;
      // Full every-boundary sweeps for a tenth of them keep the run short; the rest get the
      // one-byte-at-a-time feed, the harshest split.
      const ways = n % 10 === 0 ? splitings(input, n) : [[...input].map((b) => Buffer.from([b]))];
      for (const pieces of ways) {
        const outcome = feed(pieces);
        if (whole.error) expect(outcome.error).toBe(whole.error);
        else expect(outcome).toEqual(whole);
      }
    }
    expect(rejected).toBeGreaterThan(300);
  });

  it('never throws anything but WedgeError on random bytes', () => {
    const random = prng(99);
    for (let n = 0; n < 500; n++) {
      const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
      try {
        feed([bytes]);
      } catch (error) {
        expect(error).toBeInstanceOf(WedgeError);
      }
    }
  });
});
