/*
 * Long-running lab processes (origins, wedges). Each is started inside its server's namespace
 * with `ip netns exec` (which execs, so the recorded PID is the daemon itself), detached into its
 * own process group with stdout and stderr appended to its log file, so it outlives `lab up`.
 * While `lab up` is still polling, an early exit is reported at once rather than after a timeout.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { WedgeError } from '../errors/codes.js';

export interface Started {
  pid: number;
  log: string;
  /** Set when the process has exited (while this `lab up` process still watches it). */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

export function startDetachedIn(ns: string, argv: readonly string[], log: string, env: NodeJS.ProcessEnv = process.env): Started {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('startDetachedIn: empty command');
  const fd = openSync(log, 'a', 0o644);
  try {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) throw new WedgeError('WEDGE_ERR_LAB', `cannot start ${cmd} in ${ns}`);
    const started: Started = { pid: child.pid, log, exit: null };
    child.on('exit', (code, signal) => {
      started.exit = { code, signal };
    });
    child.on('error', () => {
      started.exit = { code: null, signal: null };
    });
    child.unref();
    return started;
  } finally {
    closeSync(fd);
  }
}
