import { addon } from './addon.js';

/** A descriptor of process `pid` duplicated into this one (pidfd_getfd; native/src/handover.cc
 * says when it is allowed); throws NativeError. Never blocks. */
export function takeFd(pid: number, fd: number): number {
  return addon.takeFd(pid, fd);
}
