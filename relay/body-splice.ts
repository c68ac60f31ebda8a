/*
 * The rest of a known-length response body, moved from the origin's socket to the client's
 * inside the kernel (the native splice engine). libuv stops reading the origin first, so no byte
 * is consumed behind the splice's back; the splice starts once the relay's own writes to the
 * client have drained (nothing may overtake them), and the origin is read again after it.
 */
import type { Socket } from 'node:net';
import { socketFd } from '../native/index.js';
import type { Splicer, SpliceJob } from './options.js';
import { startReading, stopReading } from './socket-handle.js';

export interface SpliceHooks {
  /* The splice is about to start; false: the exchange is gone, do not start. */
  starting(): boolean;
  done(moved: number): void;
  failed(err: unknown): void;
}

export class BodySplice {
  private job: SpliceJob | undefined;
  private cancelled = false;

  constructor(
    splicer: Splicer,
    origin: Socket,
    client: Socket,
    length: number,
    private readonly guard: (handle: () => void) => void,
    hooks: SpliceHooks,
  ) {
    stopReading(origin);
    const start = () => {
      if (this.cancelled || !hooks.starting()) return;
      this.job = splicer.splice(socketFd(origin), socketFd(client), length);
      this.job.done.then(
        ({ bytes }) =>
          guard(() => {
            if (this.cancelled) return;
            startReading(origin);
            hooks.done(bytes);
          }),
        (err) => guard(() => hooks.failed(err)),
      );
    };
    if (client.writableLength === 0) start();
    else client.write(Buffer.alloc(0), () => guard(start));
  }

  /* Bytes the kernel has moved so far. */
  get moved(): number {
    return this.job?.bytes ?? 0;
  }

  cancel(): void {
    this.cancelled = true;
    this.job?.cancel();
  }

  /* Stops the splice and reports, exactly, how many bytes the client's socket got (a stalled
   * origin's response is resumed from there). */
  stop(stopped: (moved: number) => void): void {
    this.cancel();
    const job = this.job;
    if (!job) return stopped(0);
    job.done.then(
      ({ bytes }) => this.guard(() => stopped(bytes)),
      () => this.guard(() => stopped(job.bytes)),
    );
  }
}
