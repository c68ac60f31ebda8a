/*
 * The relay against its peers, in one interleaved run on loopback (the method of BENCHMARKS.md):
 * direct to the origin (nginx), HAProxy (TCP mode, one thread) splicing and copying, nginx
 * `stream`, and the wedge (failover off). Every round runs each measurement on every target in
 * turn, the order rotated per round, each after a warm-up of its own; ratios are taken within a
 * round and reported as the median with min–max over the rounds.
 *
 * Measurements: added p50 latency of a 1 KiB GET on a new connection (wrk -c1, Connection: close,
 * minus direct's in the same round); req/s and CPU per request with 32 connections, new ones
 * (Connection: close) and keep-alive; one 256 MiB download (curl): throughput and CPU per GiB.
 * CPU is utime + stime of all the relay's threads. HAProxy's copy path is measured only to check
 * that its splice path really splices (its CPU per GiB must be well below).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../config/package.js';
import { download, wrk } from './load.js';
import { checkPeersInstalled, cpuSeconds, startHaproxy, startNginxStream, startOrigin } from './peers.js';
import { freePorts, waitForPort } from '../support/ports.js';
import { median, spread, type BenchRow } from './report.js';

const BIG_MIB = 256;
const ROUNDS = Number(process.env.BENCH_RELAY_ROUNDS ?? 5);
const WARMUP_S = 1;
const MEASURE_S = 3;
const REFERENCE = 'haproxy-splice';

interface Target {
  name: string;
  port: number;
  pid?: number;
}

/* One measurement: what it reports per target per round (µs, req/s, GB/s...). */
interface Measure {
  name: string;
  unit: string;
  /* Lower is better: ratios below 1 favour the wedge. */
  lowerIsBetter: boolean;
  run(target: Target): Promise<{ value: number; cpu?: number; errors?: number }>;
}

export default async function bench(): Promise<BenchRow[]> {
  checkPeersInstalled();
  const dir = mkdtempSync(join(tmpdir(), 'wedge-bench-relay-'));
  const children: ChildProcess[] = [];
  try {
    writeFileSync(join(dir, 'small.bin'), Buffer.alloc(1024, 7));
    execFileSync('dd', ['if=/dev/urandom', `of=${join(dir, 'big.bin')}`, 'bs=1M', `count=${BIG_MIB}`, 'status=none']);
    const [originPort, wedgePort, splicePort, copyPort, streamPort, adminPort] = (await freePorts(6)) as [number, number, number, number, number, number];
    const start = (child: ChildProcess): ChildProcess => (children.push(child), child);
    start(startOrigin(dir, originPort));
    const wedge = start(spawn(process.execPath, [join(PACKAGE_ROOT, 'dist/cli/cli.js'), 'serve', '--listen', `127.0.0.1:${wedgePort}`,
      '--origin', `http://127.0.0.1:${originPort}`, '--admin', `127.0.0.1:${adminPort}`, '--log-level', 'error'], { stdio: 'inherit' }));
    const splicing = start(startHaproxy(dir, 'splice', splicePort, originPort, true));
    const copying = start(startHaproxy(dir, 'copy', copyPort, originPort, false));
    const stream = start(startNginxStream(dir, streamPort, originPort));
    for (const port of [originPort, wedgePort, splicePort, copyPort, streamPort]) await waitForPort(port);
    const targets: Target[] = [
      { name: 'direct', port: originPort },
      { name: REFERENCE, port: splicePort, pid: splicing.pid! },
      { name: 'haproxy-copy', port: copyPort, pid: copying.pid! },
      { name: 'nginx-stream', port: streamPort, pid: stream.pid! },
      { name: 'wedge', port: wedgePort, pid: wedge.pid! },
    ];
    return await measureAll(targets);
  } finally {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

const url = (target: Target, path: string) => `http://127.0.0.1:${target.port}${path}`;

/* wrk after a warm-up of the same kind; CPU of the target during the measured part only. */
async function requests(target: Target, connections: number, close: boolean) {
  await wrk(url(target, '/small.bin'), { connections, seconds: WARMUP_S, close });
  const before = target.pid ? cpuSeconds(target.pid) : 0;
  const result = await wrk(url(target, '/small.bin'), { connections, seconds: MEASURE_S, close });
  const cpu = target.pid ? ((cpuSeconds(target.pid) - before) * 1e6) / result.requests : undefined;
  return { result, cpu };
}

const MEASURES: Measure[] = [
  { name: 'p50 latency, 1 KiB GET, new connection (wrk -c1)', unit: 'µs', lowerIsBetter: true,
    run: async (t) => { const { result } = await requests(t, 1, true); return { value: result.p50Us, errors: result.errors }; } },
  { name: 'req/s, new connection per request (wrk -c32)', unit: 'req/s', lowerIsBetter: false,
    run: async (t) => { const { result, cpu } = await requests(t, 32, true); return { value: result.perSecond, errors: result.errors, ...(cpu !== undefined ? { cpu } : {}) }; } },
  { name: 'req/s, keep-alive (wrk -c32)', unit: 'req/s', lowerIsBetter: false,
    run: async (t) => { const { result, cpu } = await requests(t, 32, false); return { value: result.perSecond, errors: result.errors, ...(cpu !== undefined ? { cpu } : {}) }; } },
  { name: `${BIG_MIB} MiB download (curl)`, unit: 'GB/s', lowerIsBetter: false,
    run: async (t) => {
      const bytes = BIG_MIB * 1024 * 1024;
      await download(url(t, '/big.bin'), bytes);
      const before = t.pid ? cpuSeconds(t.pid) : 0;
      const speed = await download(url(t, '/big.bin'), bytes);
      return { value: speed / 1e9, ...(t.pid ? { cpu: ((cpuSeconds(t.pid) - before) * 1024) / BIG_MIB } : {}) };
    } },
];

async function measureAll(targets: Target[]): Promise<BenchRow[]> {
  // values[measure][target] = one figure per round
  const values = MEASURES.map(() => new Map(targets.map((t) => [t.name, [] as number[]])));
  const cpus = MEASURES.map(() => new Map(targets.map((t) => [t.name, [] as number[]])));
  const errors = new Map(targets.map((t) => [t.name, 0]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const [m, measure] of MEASURES.entries()) {
      for (const target of order) {
        const got = await measure.run(target);
        values[m]!.get(target.name)!.push(got.value);
        if (got.cpu !== undefined) cpus[m]!.get(target.name)!.push(got.cpu);
        errors.set(target.name, errors.get(target.name)! + (got.errors ?? 0));
      }
    }
    process.stderr.write(`bench: relay round ${round + 1}/${ROUNDS} done\n`);
  }
  const rows: BenchRow[] = [];
  const row = (name: string, series: number[], unit: string, digits = 2): BenchRow => ({ suite: 'relay', name, value: median(series), unit, note: `min–max ${spread(series, digits)}` });
  const direct = values[0]!.get('direct')!;
  const added = (name: string) => values[0]!.get(name)!.map((v, r) => v - direct[r]!);
  for (const target of targets) {
    const tag = target.name;
    rows.push(row(`added p50 latency, new connection: ${tag}`, tag === 'direct' ? direct : added(tag), 'µs', 0));
    rows.push(row(`req/s, new connections (c32): ${tag}`, values[1]!.get(tag)!, 'req/s', 0));
    rows.push(row(`req/s, keep-alive (c32): ${tag}`, values[2]!.get(tag)!, 'req/s', 0));
    rows.push(row(`${BIG_MIB} MiB download: ${tag}`, values[3]!.get(tag)!, 'GB/s'));
    if (!target.pid) continue;
    rows.push(row(`CPU per request, new connections: ${tag}`, cpus[1]!.get(tag)!, 'µs', 1));
    rows.push(row(`CPU per request, keep-alive: ${tag}`, cpus[2]!.get(tag)!, 'µs', 1));
    rows.push(row(`CPU per GiB downloaded: ${tag}`, cpus[3]!.get(tag)!, 'CPU-s', 3));
  }
  const perRound = (a: number[], b: number[]) => a.map((v, r) => v / b[r]!);
  const ratio = (label: string, a: number[], b: number[]) => row(`wedge ÷ ${REFERENCE}: ${label}`, perRound(a, b), 'x');
  rows.push(ratio('added p50 latency, new connection', added('wedge'), added(REFERENCE)));
  rows.push(ratio('req/s, new connections', values[1]!.get('wedge')!, values[1]!.get(REFERENCE)!));
  rows.push(ratio('req/s, keep-alive', values[2]!.get('wedge')!, values[2]!.get(REFERENCE)!));
  rows.push(ratio('CPU per request, new connections', cpus[1]!.get('wedge')!, cpus[1]!.get(REFERENCE)!));
  rows.push(ratio('CPU per request, keep-alive', cpus[2]!.get('wedge')!, cpus[2]!.get(REFERENCE)!));
  rows.push(ratio('download throughput', values[3]!.get('wedge')!, values[3]!.get(REFERENCE)!));
  rows.push(ratio('CPU per GiB downloaded', cpus[3]!.get('wedge')!, cpus[3]!.get(REFERENCE)!));
  const spliceCheck = perRound(cpus[3]!.get(REFERENCE)!, cpus[3]!.get('haproxy-copy')!);
  rows.push({ ...row(`splice check: CPU per GiB, ${REFERENCE} ÷ haproxy-copy`, spliceCheck, 'x'),
    note: `min–max ${spread(spliceCheck)}; ${median(spliceCheck) < 0.8 ? 'splicing' : 'NOT splicing: the HAProxy rows compare against a copying proxy'}` });
  for (const [name, count] of errors) if (count > 0) rows.push({ suite: 'relay', name: `errors seen by wrk: ${name}`, value: count, unit: 'errors', note: 'connect/write/timeout errors or non-2xx: its figures are suspect' });
  return rows;
}
