import { describe, expect, it } from 'vitest';
import { ChunkedBodyFramer } from '../../parsers/chunked.js';
import { WedgeError } from '../../errors/codes.js';
import { prng, splitings } from './helpers.js';

/** Feeds pieces; returns the total consumed when done, or the error code. */
function frame(pieces: Buffer[]): { consumed: number; done: boolean } | string {
  const framer = new ChunkedBodyFramer({ malformedCode: 'WEDGE_ERR_ORIGIN_MALFORMED' });
  let consumed = 0;
  try {
    for (const piece of pieces) {
      const progress = framer.push(piece);
      consumed += progress.consumed;
      if (progress.done) return { consumed, done: true };
      expect(progress.consumed).toBe(piece.length);
    }
  } catch (error) {
    return (error as WedgeError).code;
  }
  return { consumed, done: false };
}

function frameEveryWay(text: string): { consumed: number; done: boolean } | string {
  const bytes = Buffer.from(text, 'latin1');
  const whole = frame([bytes]);
  for (const pieces of splitings(bytes)) expect(frame(pieces)).toEqual(whole);
  return whole;
}

describe('ChunkedBodyFramer', () => {
  it('finds the exact end, leaving the next message untouched', () => {
    const body = '4\r\nWiki\r\n5;ext="a b"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\n';
    expect(frameEveryWay(body + 'HTTP/1.1 200 OK\r\n')).toEqual({ consumed: body.length, done: true });
  });

  it('handles large chunks without looking at their bytes', () => {
    const data = Buffer.alloc(1 << 20, 0x0a);
    const body = Buffer.concat([Buffer.from('100000\r\n'), data, Buffer.from('\r\n0\r\n\r\n')]);
    expect(frame([body.subarray(0, 7), body.subarray(7, 500_000), body.subarray(500_000)])).toEqual({ consumed: body.length, done: true });
  });

  it('incomplete bodies are not done', () => {
    for (const partial of ['', '5', '5\r', '5\r\nhel', '5\r\nhello', '5\r\nhello\r\n0\r\n', '0\r\nX: y\r\n']) {
      expect(frameEveryWay(partial)).toEqual({ consumed: partial.length, done: false });
    }
  });

  it('after done, further pushes consume nothing', () => {
    const framer = new ChunkedBodyFramer();
    expect(framer.push(Buffer.from('0\r\n\r\n'))).toEqual({ consumed: 5, done: true });
    expect(framer.push(Buffer.from('more'))).toEqual({ consumed: 0, done: true });
  });

  it.each([
    ['empty size', '\r\n'],
    ['non-hex', 'g\r\n'],
    ['overflow', '100000000000000\r\n'],
    ['space without extension', '5 \r\nhello\r\n0\r\n\r\n'],
    ['bare LF after size', '5\nhello\r\n0\r\n\r\n'],
    ['data without CRLF', '5\r\nhelloX\r\n0\r\n\r\n'],
    ['bare CR in extension line', '5;a\rb\r\nhello\r\n'],
    ['trailer without colon', '0\r\nX\r\n\r\n'],
    ['trailer with space before colon', '0\r\nX : y\r\n\r\n'],
    ['trailer with NUL', '0\r\nX: \x00\r\n\r\n'],
    ['final bare LF', '0\r\n\n'],
  ])('%s → the configured code', (_name, text) => {
    expect(frameEveryWay(text)).toBe('WEDGE_ERR_ORIGIN_MALFORMED');
  });

  it('size line and trailer limits', () => {
    const codes = { malformedCode: 'WEDGE_ERR_HTTP_MALFORMED', tooLargeCode: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE' } as const;
    const longExt = new ChunkedBodyFramer({ ...codes, maxSizeLineBytes: 16 });
    expect(() => longExt.push(Buffer.from('5;' + 'a'.repeat(20)))).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_HTTP_MALFORMED' }));
    const exactExt = new ChunkedBodyFramer({ ...codes, maxSizeLineBytes: 16 });
    expect(exactExt.push(Buffer.from('5;' + 'a'.repeat(12) + '\r\n'))).toEqual({ consumed: 16, done: false });
    const overExt = new ChunkedBodyFramer({ ...codes, maxSizeLineBytes: 16 });
    expect(() => overExt.push(Buffer.from('5;' + 'a'.repeat(13) + '\r\n'))).toThrow(WedgeError);
    const longTrailer = new ChunkedBodyFramer({ ...codes, maxTrailerBytes: 16 });
    expect(() => longTrailer.push(Buffer.from('0\r\nX: ' + 'a'.repeat(20)))).toThrow(
      expect.objectContaining({ code: 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE' }),
    );
    const dead = longTrailer;
    expect(() => dead.push(Buffer.from('\r\n'))).toThrow(WedgeError);
  });

  it('random valid bodies: consumed equals the body length for random splits', () => {
    const random = prng(3);
    for (let n = 0; n < 300; n++) {
      let body = '';
      for (let c = Math.floor(random() * 5); c > 0; c--) {
        const size = 1 + Math.floor(random() * 300);
        body += `${size.toString(16)}\r\n${'z'.repeat(size)}\r\n`;
      }
      body += '0\r\n\r\n';
      const bytes = Buffer.from(body + 'NEXT');
      const pieces: Buffer[] = [];
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + Math.floor(random() * 64);
        pieces.push(bytes.subarray(at, at + size));
        at += size;
      }
      expect(frame(pieces)).toEqual({ consumed: body.length, done: true });
    }
  });
});
