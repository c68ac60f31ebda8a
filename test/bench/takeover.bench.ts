/*
 * Address takeover in the lab, as a client sees it: the serving server is crashed (`wedge lab
 * crash`: link down, processes killed) while connections are live mid-body, and a peer resumes
 * them. Reported: detection (crash to the adopter's 'peer dead'), takeover (from there to every
 * connection resumed), the longest silence the client saw, and how many downloads completed
 * with the exact length. Once with one connection and once with many (default 1,000); and once
 * with one connection whose server is drained (`wedge lab drain`) instead of crashed: the stall
 * of a planned move, next to a crash's.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../../config/package.js';
import { Lab, wedgeOk, type Background } from '../support/lab.js';
import type { BenchRow } from './report.js';

const CLIENT = join(PACKAGE_ROOT, 'test', 'bench', 'fixtures', 'takeover-client.py');
const MANY = Number(process.env.BENCH_TAKEOVER_CONNECTIONS ?? 1000);

interface ClientResult {
  connections: number;
  complete: number;
  longestStallMs: number;
}

/* crash: `wedge lab crash`; drain: `wedge lab drain` (a planned drain, no failure detection). */
type Fault = 'crash' | 'drain';

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [count, fault] of [[1, 'crash'], [1, 'drain'], [MANY, 'crash']] as const) {
    const lab = new Lab(`bench-to-${fault}-${count}`);
    try {
      rows.push(...(await faultWith(lab, count, fault)));
    } finally {
      await lab.down();
    }
  }
  return rows;
}

async function faultWith(lab: Lab, count: number, fault: Fault): Promise<BenchRow[]> {
  // Links shaped so that the downloads are still running when the server dies.
  // A drain goes through `wedge drain` (a CLI start-up of a few hundred ms): a longer download.
  const mib = count > 1 ? 1 : fault === 'drain' ? 64 : 16;
  await lab.up({ servers: 3, files: [`big.bin:${mib}`], rate: '200mbit', clientRmem: null });
  const client = lab.background('client', ['python3', CLIENT, lab.url('s1', '/big.bin'), String(count), '65536'], { stdin: true });
  try {
    await line(client, 0);
    if (client.stdout.split('\n')[0] !== 'ready') throw new Error(`the benchmark client did not get ready: ${client.stderr}`);
    await sleep(500); // triggered adverts are out in milliseconds; leave margin
    client.write('go\n'); // the client reads on while s1 dies: its silences are the stall
    await sleep(100);
    let crashedAt = Date.now();
    if (fault === 'crash') await lab.crashNow('s1');
    else {
      await wedgeOk(['lab', 'drain', 's1', '--lab', lab.name]);
      crashedAt = (await lab.logged('s1', 'draining'))[0]?.time ?? NaN;
    }
    const result = JSON.parse(await line(client, 1)) as ClientResult;

    const logs = [...(await lab.logged('s2', 'address adopted')), ...(await lab.logged('s3', 'address adopted'))];
    const deaths = [...(await lab.logged('s2', 'peer dead')), ...(await lab.logged('s3', 'peer dead'))];
    const adopted = logs.find((l) => l.time >= crashedAt);
    const dead = deaths.filter((l) => l.time >= crashedAt && (!adopted || l.server === adopted.server))[0];
    const label = `${count === 1 ? '1 connection' : `${count} connections`}${fault === 'drain' ? ', planned drain' : ''}`;
    return [
      { suite: 'takeover', name: `${label}: detection (${fault} to peer dead)`, value: dead ? dead.time - crashedAt : NaN, unit: 'ms' },
      { suite: 'takeover', name: `${label}: takeover (peer dead to all resumed)`, value: adopted && dead ? adopted.time - dead.time : NaN, unit: 'ms',
        note: adopted ? `guard ${adopted.guardMs} ms, address ${adopted.addressMs} ms; ${adopted.resumed}/${adopted.connections} resumed` : 'no adoption logged' },
      { suite: 'takeover', name: `${label}: longest client stall`, value: result.longestStallMs, unit: 'ms', note: fault === 'crash' ? 'goal ≤ 500 ms with defaults' : 'goal ≤ 100 ms' },
      { suite: 'takeover', name: `${label}: downloads complete and exact in length`, value: result.complete, unit: `of ${result.connections}` },
    ];
  } finally {
    client.kill();
  }
}

/* Line INDEX of the client's stdout, once it is complete. */
async function line(client: Background, index: number): Promise<string> {
  for (;;) {
    const lines = client.stdout.split('\n');
    if (lines.length > index + 1) return lines[index]!;
    if (!client.running) throw new Error(`the benchmark client ended early: ${client.stderr}`);
    await sleep(10);
  }
}
