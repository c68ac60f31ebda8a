import { addon, type RawRestoredProbe } from './addon.js';
import type { NativeError } from './errors.js';
import { rawProbeBatch, rawProbeTarget, type MigrateSynRequest, type ProbeAnswer, type ProbeBatchOptions, type ProbeSequence } from './probe.js';
import { restoreBase, type ConnectionDump, type RestoreOptions } from './repair.js';

/* A takeover's probe and restore in one native batch: each connection is rebuilt on the worker
 * thread the moment its client answers (native/src/probe.cc), not on the event loop. */

/** One connection to take over: its recorded transport, the probe's sequences, its Migrate SYN. */
export type RestoreRequest = ConnectionDump & ProbeSequence & { migrateSyn?: MigrateSynRequest };

/** A rebuilt connection: a non-blocking fd for `new net.Socket({ fd })` and its dump. */
export interface RestoredSocket {
  fd: number;
  state: ConnectionDump;
  /** Worker time spent rebuilding and dumping it. */
  restoreMs: number;
}

/** A connection whose client answered: the answer, and its socket or why it could not be built. */
export interface RestoredProbe {
  answer: ProbeAnswer;
  restored: RestoredSocket | NativeError;
}

export type ProbeRestoreResult = RestoredProbe | NativeError;

/**
 * probeMany() that also restores (as restore() does, the clock read the moment it answers)
 * every connection whose client answers, at the client's position. Resolves with one
 * result per request, in order: a NativeError as probeMany() reports it, or the RestoredProbe.
 * Each fd is the caller's: wrap it in a net.Socket, or drop it with closeQuietly().
 */
export function probeAndRestore(
  requests: readonly RestoreRequest[],
  options: ProbeBatchOptions & RestoreOptions = {},
): Promise<ProbeRestoreResult[]> {
  const targets = requests.map((request) => ({
    ...rawProbeTarget(request),
    restore: restoreBase(request, options),
  }));
  return addon.probeMany(rawProbeBatch(targets, options)) as Promise<(RawRestoredProbe | NativeError)[]>;
}
