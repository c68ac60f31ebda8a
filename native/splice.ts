import { addon } from './addon.js';
import { NativeError } from './errors.js';

/* In-kernel relaying between two sockets (see native/src/splice.cc for the engine). */

export interface SpliceResult {
  /** Bytes the destination accepted. */
  bytes: number;
  /** The source reached end of stream, or failed (a reset origin): the count says how far. */
  eof: boolean;
  /** The job was cancelled; bytes the engine held in its pipe were dropped. */
  cancelled: boolean;
}

export interface SpliceJob {
  /** Resolves when the job ends; rejects with NativeError (syscall 'splice', errno) on failure. */
  readonly done: Promise<SpliceResult>;
  /** Bytes delivered so far (live while running, final afterwards). */
  readonly bytes: number;
  /** Stops the job; `done` then resolves with cancelled: true. */
  cancel(): void;
}

const UNTIL_EOF = -1;

class EngineJob implements SpliceJob {
  readonly done: Promise<SpliceResult>;
  private readonly id: number;
  private final: number | null = null;

  constructor(sourceFd: number, destinationFd: number, length: number | null) {
    let settle!: (result: SpliceResult) => void;
    let fail!: (error: NativeError) => void;
    this.done = new Promise((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    this.id = addon.spliceStart(sourceFd, destinationFd, length ?? UNTIL_EOF, (error, bytes, eof, cancelled) => {
      this.final = bytes;
      if (error) fail(error);
      else settle({ bytes, eof, cancelled });
    });
  }

  get bytes(): number {
    return this.final ?? addon.spliceBytes(this.id) ?? 0;
  }

  cancel(): void {
    if (this.final === null) addon.spliceCancel(this.id);
  }
}

/**
 * Moves `length` bytes (null: until EOF) from socket `sourceFd` to socket `destinationFd` inside
 * the kernel, on the addon's single epoll thread. The caller must have stopped Node reading the
 * source (`_handle.readStop()`) and flushed its own writes to the destination; it must not touch
 * either until `done` settles. The fds stay the caller's: the engine works on duplicates.
 * Throws NativeError at once if the fds are unusable.
 */
export function splice(sourceFd: number, destinationFd: number, length: number | null): SpliceJob {
  if (length !== null && !(Number.isSafeInteger(length) && length >= 0)) {
    throw new RangeError(`splice length must be a non-negative safe integer or null, got ${length}`);
  }
  return new EngineJob(sourceFd, destinationFd, length);
}
