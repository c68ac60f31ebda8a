/*
 * Address takeover in the lab, as a client sees it: the serving server is crashed (`wedge lab
 * crash`: link down, processes killed) while connections are live mid-body, and a peer resumes
 * them. Reported: detection (crash to the adopter's 'peer dead'), takeover (from there to every
 * connection resumed), the longest silence the client saw, and how many downloads completed
 * with the exact length. Once with one connection and once with many (default 1,000).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../native/load.js';
import type { BenchRow } from './report.js';

const run = promisify(execFile);
const WEDGE = join(PACKAGE_ROOT, 'bin', 'wedge');
const CLIENT = join(PACKAGE_ROOT, 'test', 'bench', 'fixtures', 'takeover-client.py');
const MANY = Number(process.env.BENCH_TAKEOVER_CONNECTIONS ?? 1000);

interface ClientResult {
  connections: number;
  complete: number;
  longestStallMs: number;
}

interface LogLine {
  time: number;
  msg: string;
  [field: string]: unknown;
}

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const count of [1, MANY]) {
    const lab = `bench-to-${process.pid}-${count}`;
    try {
      rows.push(...(await crashWith(lab, count)));
    } finally {
      await run(WEDGE, ['lab', 'down', '--lab', lab]).catch(() => undefined);
    }
  }
  return rows;
}

async function crashWith(lab: string, count: number): Promise<BenchRow[]> {
  // Links shaped so that the downloads are still running when the server dies.
  const mib = count === 1 ? 16 : 1;
  const up = JSON.parse((await run(WEDGE, ['lab', 'up', '--lab', lab, '--servers', '3', '--file', `big.bin:${mib}`, '--rate', '200mbit', '--json'], { maxBuffer: 1 << 20 })).stdout) as {
    servers: Array<{ name: string; service: string }>;
  };
  const client = spawn(WEDGE, ['lab', 'exec', 'client', '--lab', lab, '--', 'python3', CLIENT, `${up.servers[0]!.service}/big.bin`, String(count), '65536'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: client.stdout! })[Symbol.asyncIterator]();
  if ((await lines.next()).value !== 'ready') throw new Error('the benchmark client did not get ready');
  await new Promise((r) => setTimeout(r, 500)); // triggered adverts are out in milliseconds; leave margin
  // The crash begins when s1's link goes down (lab/README.md names its namespace); `lab crash`
  // then finishes it. Timing the CLI itself would add its start-up to the detection time.
  client.stdin!.write('go\n'); // the client reads on while s1 dies: its silences are the stall
  await new Promise((r) => setTimeout(r, 100));
  const crashedAt = Date.now();
  await run('ip', ['-n', `wl_${lab}_s1`, 'link', 'set', 'eth0', 'down']);
  await run(WEDGE, ['lab', 'crash', 's1', '--lab', lab]);
  const result = JSON.parse((await lines.next()).value as string) as ClientResult;

  const runDir = (JSON.parse((await run(WEDGE, ['lab', 'status', '--lab', lab, '--json'])).stdout) as { runDir: string }).runDir;
  const logs = ['s2', 's3'].flatMap((s) => readLog(join(runDir, `${s}-wedge.log`)));
  const adopted = logs.find((l) => l.msg === 'address adopted' && l.time >= crashedAt);
  const dead = logs.filter((l) => l.msg === 'peer dead' && l.time >= crashedAt && (!adopted || l.server === adopted.server))[0];
  const label = count === 1 ? '1 connection' : `${count} connections`;
  const rows: BenchRow[] = [
    { suite: 'takeover', name: `${label}: detection (crash to peer dead)`, value: dead ? dead.time - crashedAt : NaN, unit: 'ms' },
    { suite: 'takeover', name: `${label}: takeover (peer dead to all resumed)`, value: adopted && dead ? adopted.time - dead.time : NaN, unit: 'ms',
      note: adopted ? `guard ${adopted.guardMs} ms, address ${adopted.addressMs} ms; ${adopted.resumed}/${adopted.connections} resumed` : 'no adoption logged' },
    { suite: 'takeover', name: `${label}: longest client stall`, value: result.longestStallMs, unit: 'ms', note: 'goal ≤ 500 ms with defaults' },
    { suite: 'takeover', name: `${label}: downloads complete and exact in length`, value: result.complete, unit: `of ${result.connections}` },
  ];
  return rows;
}

function readLog(path: string): LogLine[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}
