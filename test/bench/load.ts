/*
 * The load of a relay benchmark: wrk for requests (new connections or keep-alive) and curl for
 * one large download, each run as its own process so the load generator's CPU is never the
 * measured relay's.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WrkResult {
  requests: number;
  perSecond: number;
  p50Us: number;
  /* Connect, read, write and timeout errors plus non-2xx answers: a run with errors is not a fair figure. */
  errors: number;
}

export async function wrk(url: string, options: { connections: number; seconds: number; close: boolean }): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', ...(options.close ? ['-H', 'Connection: close'] : []), url];
  const { stdout } = await run('wrk', args, { maxBuffer: 1 << 20 });
  return parseWrk(stdout);
}

export function parseWrk(out: string): WrkResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const perSecond = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  if (!Number.isFinite(requests) || !Number.isFinite(perSecond) || !p50) throw new Error(`unexpected wrk output:\n${out}`);
  const p50Us = Number(p50[1]) * { us: 1, ms: 1e3, s: 1e6 }[p50[2] as 'us' | 'ms' | 's'];
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  // wrk counts a server's close after `Connection: close` as a read error; only the others count.
  const errors = non2xx + (socketErrors ? Number(socketErrors[1]) + Number(socketErrors[3]) + Number(socketErrors[4]) : 0);
  return { requests, perSecond, p50Us, errors };
}

/* Bytes per second curl saw for one download to /dev/null; throws unless it got `bytes`. */
export async function download(url: string, bytes: number): Promise<number> {
  const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', url]);
  const [speed, size] = stdout.split(' ').map(Number);
  if (size !== bytes) throw new Error(`download of ${url} was ${size} bytes, not ${bytes}`);
  return speed!;
}
