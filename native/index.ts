/* The native helper's typed API: TCP_REPAIR dump/restore, the client probe (one connection, a
 * batch, or a re-probe of live ones), quiet close, a live socket's progress, address moves, the
 * splice engine, TCP Migrate's raw segments and SYN capture, and the privilege check. Each
 * mechanism has its own file here and in native/src/. */
export { NativeError } from './errors.js';
export {
  dump,
  restore,
  setRepair,
  quietClose,
  closeQuietly,
  socketFd,
  type ConnectionDump,
  type RestoreOptions,
} from './repair.js';
export {
  probe,
  probeMany,
  probeLive,
  type ProbeTarget,
  type ProbeRequest,
  type ProbeSequence,
  type ProbeOptions,
  type ProbeBatchOptions,
  type ProbeAnswer,
  type ProbeResult,
} from './probe.js';
export { probeAndRestore, type RestoreRequest, type RestoredProbe, type RestoredSocket, type ProbeRestoreResult } from './probe-restore.js';
export { addAddress, removeAddress, gratuitousArp } from './addr.js';
export { raiseOpenFileLimit } from './limits.js';
export { takeFd } from './handover.js';
export { notifySystemd } from './notify.js';
export { progress, type Progress } from './progress.js';
export { splice, type SpliceJob, type SpliceResult } from './splice.js';
export {
  sendTcpSegment,
  MigrateSynCapture,
  TCP_FIN,
  TCP_SYN,
  TCP_RST,
  TCP_PSH,
  TCP_ACK,
  type TcpSegment,
  type CapturedSyn,
  type MigrateCaptureOptions,
} from './migrate.js';
export { checkPrivileges, assertPrivileges, PRIVILEGE_FIX, TCP_REPAIR_FIX, type PrivilegeReport } from './privileges.js';
