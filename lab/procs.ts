/*
 * Long-running lab processes (origins, wedges). Each is started inside its server's namespace
 * with `ip netns exec` (which execs, so the recorded PID is the daemon itself), detached into its
 * own process group with stdout and stderr appended to its log file, so it outlives `lab up`.
 * While `lab up` is still polling, an early exit is reported at once rather than after a timeout.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
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

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits up to `graceMs` for the process to exit, then SIGKILLs it; resolves once it is gone,
 * with whether it had to be killed. */
export async function waitExit(pid: number, graceMs: number): Promise<boolean> {
  const until = Date.now() + graceMs;
  while (isRunning(pid) && Date.now() < until) await sleep(20);
  const killed = isRunning(pid);
  if (killed) process.kill(pid, 'SIGKILL');
  while (isRunning(pid)) await sleep(20);
  return killed;
}
