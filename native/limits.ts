import { addon } from './addon.js';

/** Raises the soft RLIMIT_NOFILE to the hard limit where allowed; returns both as they are now
 * (native/src/limits.cc says why a server needs it). */
export function raiseOpenFileLimit(): { soft: number; hard: number } {
  return addon.raiseOpenFileLimit();
}
