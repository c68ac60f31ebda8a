/*
 * Readiness checks for `lab up`: HTTP probes made with curl from inside a namespace (the origins
 * and admin APIs listen on the namespace's own loopback, unreachable from here), repeated until
 * they pass, the watched process exits, or the deadline passes.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WedgeError } from '../errors/codes.js';
import type { Started } from './procs.js';
import { tryRunIn } from './run.js';

/** The HTTP status `url` answers with from inside `ns`, or 0 when nothing answers. */
export async function httpStatus(ns: string, url: string, method: 'GET' | 'HEAD' = 'GET'): Promise<number> {
  const args = ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', '--noproxy', '*'];
  if (method === 'HEAD') args.push('-I');
  const result = await tryRunIn(ns, 'curl', [...args, url], { timeoutMs: 5_000 });
  return result === null ? 0 : Number.parseInt(result.stdout.trim(), 10) || 0;
}

/** The last lines of a log, indented, to quote in an error (the lab's teardown deletes the log). */
async function logTail(log: string, lines = 15): Promise<string> {
  const text = await readFile(log, 'utf8').catch(() => '');
  const tail = text.trimEnd().split('\n').slice(-lines);
  return tail.length > 0 && tail[0] !== '' ? `\n  last lines of ${log}:\n    ${tail.join('\n    ')}` : `\n  (${log} is empty)`;
}

/**
 * Polls `check` until it returns true. Fails with an error naming `what` and the process's log
 * when the process exits first or the deadline passes; `checkpoint` throws to abandon the wait
 * (when `lab up` is interrupted).
 */
export async function waitUntil(
  what: string,
  process: Started,
  deadline: number,
  checkpoint: () => void,
  check: () => Promise<boolean>,
): Promise<void> {
  for (;;) {
    checkpoint();
    if (process.exit !== null) {
      const how = process.exit.signal ?? `status ${String(process.exit.code)}`;
      throw new WedgeError('WEDGE_ERR_LAB', `${what} exited (${how}) while starting; see ${process.log}${await logTail(process.log)}`);
    }
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new WedgeError('WEDGE_ERR_LAB', `${what} did not come up in time; see ${process.log}${await logTail(process.log)}`);
    }
    await sleep(100);
  }
}
