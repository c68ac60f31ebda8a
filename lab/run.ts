/*
 * Running external commands (ip, tc, curl, apache2) for the lab: always an argument array via
 * execFile, never a shell string, so lab names and file names cannot inject anything. A failure
 * becomes a WEDGE_ERR_LAB error that names the command and quotes its stderr.
 */
import { execFile } from 'node:child_process';
import { WedgeError } from '../errors/codes.js';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].join(' ');
}

/** Runs a command to completion; rejects with WEDGE_ERR_LAB on a non-zero exit or timeout. */
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const why = stderr.trim() || err.message;
          reject(new WedgeError('WEDGE_ERR_LAB', `\`${describe(cmd, args)}\` failed: ${why}`, { cause: err }));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

/** Like run, but a failure resolves to null: for probes and best-effort cleanup. */
export async function tryRun(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult | null> {
  try {
    return await run(cmd, args, options);
  } catch {
    return null;
  }
}

/** Runs a command inside a network namespace (`ip netns exec NS ...`). */
export function runIn(ns: string, cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], options);
}

export function tryRunIn(ns: string, cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult | null> {
  return tryRun('ip', ['netns', 'exec', ns, cmd, ...args], options);
}
