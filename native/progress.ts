import { addon, type RawProgress } from './addon.js';

/* Whether a live connection makes progress: TCP_INFO counters, read without repair mode (see
 * native/src/progress.cc). In: a socket's fd (socketFd()). Out: Progress. */

export type Progress = RawProgress;

/** The socket's progress counters; throws NativeError if it is not a TCP socket. Cheap: no repair mode, never blocks. */
export function progress(fd: number): Progress {
  return addon.progress(fd);
}
