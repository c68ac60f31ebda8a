/*
 * ChunkedBodyFramer: finds exactly where a chunked message body (RFC 9112 §7.1) ends, without
 * decoding or copying the payload. Used for request bodies (client → origin) and response
 * bodies (origin → client) alike.
 *
 * In: successive slices of the byte stream starting at the first byte of the body.
 * Out: for each push, how many of the slice's bytes belong to the body (`consumed`) and whether
 * the body ended inside the slice (`done`); bytes after `consumed` belong to the next message.
 *
 * Only the framing is examined: chunk-size lines (hex digits, optional extensions), the CRLF
 * after every chunk's data, and the trailer section after the last chunk. Chunk data is skipped
 * by arithmetic, so cost is per chunk, not per byte. The machine holds a few numbers and never
 * buffers, so a body split at any byte gives the same result.
 *
 * Failure: any framing error (non-hex size, size beyond Number.MAX_SAFE_INTEGER, whitespace not
 * followed by an extension, a bare CR or LF, data not followed by CRLF, an invalid trailer line,
 * obs-fold in trailers, a chunk-size line over `maxSizeLineBytes`, e.g. thousands of leading
 * zeros) throws WedgeError with the caller's `malformedCode`; a trailer section over its limit
 * throws `tooLargeCode`. After throwing, the framer is dead.
 */

import { WedgeError, type WedgeErrorCode } from '../errors/codes.js';
import { COLON, CR, HEX_VALUE, HTAB, IS_FIELD_VCHAR, IS_TCHAR, LF, SP } from './http-common.js';

export interface ChunkedFramerOptions {
  malformedCode?: WedgeErrorCode;
  tooLargeCode?: WedgeErrorCode;
  /** Longest chunk-size line (size, extensions, CRLF) accepted. */
  maxSizeLineBytes?: number;
  /** Largest trailer section (all trailer lines plus the final CRLF) accepted. */
  maxTrailerBytes?: number;
}

export interface FramerProgress {
  consumed: number;
  done: boolean;
}

const enum State {
  SizeFirstDigit,
  SizeDigits,
  SizeWhitespace,
  Extension,
  SizeLineLf,
  Data,
  DataCr,
  DataLf,
  TrailerLineStart,
  TrailerName,
  TrailerValue,
  TrailerLineLf,
  FinalLf,
  Done,
  Failed,
}

/** The largest size that can take one more hex digit without exceeding MAX_SAFE_INTEGER. */
const MAX_SIZE_BEFORE_SHIFT = Math.floor((Number.MAX_SAFE_INTEGER - 15) / 16);

export class ChunkedBodyFramer {
  private state = State.SizeFirstDigit;
  private chunkSize = 0;
  private dataRemaining = 0;
  private sizeLineBytes = 0;
  private trailerBytes = 0;
  private readonly malformedCode: WedgeErrorCode;
  private readonly tooLargeCode: WedgeErrorCode;
  private readonly maxSizeLineBytes: number;
  private readonly maxTrailerBytes: number;

  constructor(options: ChunkedFramerOptions = {}) {
    this.malformedCode = options.malformedCode ?? 'WEDGE_ERR_HTTP_MALFORMED';
    this.tooLargeCode = options.tooLargeCode ?? this.malformedCode;
    this.maxSizeLineBytes = options.maxSizeLineBytes ?? 4096;
    this.maxTrailerBytes = options.maxTrailerBytes ?? 16384;
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  push(buf: Buffer): FramerProgress {
    if (this.state === State.Done) return { consumed: 0, done: true };
    if (this.state === State.Failed) throw new WedgeError(this.malformedCode, 'chunked framer used after an error');
    try {
      return this.advance(buf);
    } catch (error) {
      this.state = State.Failed;
      throw error;
    }
  }

  private fail(detail: string): never {
    throw new WedgeError(this.malformedCode, detail);
  }

  private advance(buf: Buffer): FramerProgress {
    const length = buf.length;
    let i = 0;
    while (i < length) {
      const state = this.state;
      if (state === State.Data) {
        const take = Math.min(this.dataRemaining, length - i);
        this.dataRemaining -= take;
        i += take;
        if (this.dataRemaining === 0) this.state = State.DataCr;
        continue;
      }
      const c = buf[i]!;
      i++;
      switch (state) {
        case State.SizeFirstDigit: {
          const digit = HEX_VALUE[c]!;
          if (digit < 0) this.fail('chunk size is not a hex number');
          this.chunkSize = digit;
          this.sizeLineBytes = 1;
          this.state = State.SizeDigits;
          break;
        }
        case State.SizeDigits: {
          this.countSizeLineByte();
          const digit = HEX_VALUE[c]!;
          if (digit >= 0) {
            if (this.chunkSize > MAX_SIZE_BEFORE_SHIFT) this.fail('chunk size overflows');
            this.chunkSize = this.chunkSize * 16 + digit;
          } else if (c === CR) this.state = State.SizeLineLf;
          else if (c === 0x3b /* ; */) this.state = State.Extension;
          else if (c === SP || c === HTAB) this.state = State.SizeWhitespace;
          else this.fail('invalid character in chunk size');
          break;
        }
        case State.SizeWhitespace: {
          // BWS is only allowed before a chunk extension (RFC 9112 §7.1.1): "5 \r\n" is rejected.
          this.countSizeLineByte();
          if (c === 0x3b) this.state = State.Extension;
          else if (c !== SP && c !== HTAB) this.fail('whitespace after chunk size not followed by an extension');
          break;
        }
        case State.Extension: {
          // Extensions are not interpreted; only their characters are checked so that the line
          // can end nowhere but at CRLF.
          this.countSizeLineByte();
          if (c === CR) this.state = State.SizeLineLf;
          else if (!IS_FIELD_VCHAR[c] && c !== SP && c !== HTAB) this.fail('invalid character in chunk extension');
          break;
        }
        case State.SizeLineLf: {
          this.countSizeLineByte();
          if (c !== LF) this.fail('bare CR in chunk size line');
          if (this.chunkSize === 0) {
            this.state = State.TrailerLineStart;
            this.trailerBytes = 0;
          } else {
            this.dataRemaining = this.chunkSize;
            this.state = State.Data;
          }
          break;
        }
        case State.DataCr: {
          if (c !== CR) this.fail('chunk data not followed by CRLF');
          this.state = State.DataLf;
          break;
        }
        case State.DataLf: {
          if (c !== LF) this.fail('chunk data not followed by CRLF');
          this.state = State.SizeFirstDigit;
          break;
        }
        case State.TrailerLineStart: {
          this.countTrailerByte();
          if (c === CR) this.state = State.FinalLf;
          else if (c === SP || c === HTAB) this.fail('obs-fold in trailer section');
          else if (IS_TCHAR[c]) this.state = State.TrailerName;
          else this.fail('invalid character in trailer name');
          break;
        }
        case State.TrailerName: {
          this.countTrailerByte();
          if (c === COLON) this.state = State.TrailerValue;
          else if (!IS_TCHAR[c]) {
            this.fail(c === SP || c === HTAB ? 'whitespace between trailer name and colon' : 'invalid character in trailer name');
          }
          break;
        }
        case State.TrailerValue: {
          this.countTrailerByte();
          if (c === CR) this.state = State.TrailerLineLf;
          else if (!IS_FIELD_VCHAR[c] && c !== SP && c !== HTAB) this.fail('control character in trailer value');
          break;
        }
        case State.TrailerLineLf: {
          this.countTrailerByte();
          if (c !== LF) this.fail('bare CR in trailer section');
          this.state = State.TrailerLineStart;
          break;
        }
        case State.FinalLf: {
          if (c !== LF) this.fail('bare CR after last chunk');
          this.state = State.Done;
          return { consumed: i, done: true };
        }
        default:
          this.fail('chunked framer in an impossible state');
      }
    }
    return { consumed: i, done: false };
  }

  private countSizeLineByte(): void {
    if (++this.sizeLineBytes > this.maxSizeLineBytes) this.fail('chunk size line too long');
  }

  private countTrailerByte(): void {
    if (++this.trailerBytes > this.maxTrailerBytes) throw new WedgeError(this.tooLargeCode, 'trailer section too large');
  }
}
