/*
 * The data path, side by side in one run on loopback: a client straight to the origin (nginx),
 * through the wedge, and through HAProxy in TCP mode with splice (the reference proxy).
 * Figures: added latency of a 1 KiB GET on a new connection, throughput of one 256 MiB download
 * (curl), and CPU seconds the relay process spends per GiB. Ratios are against HAProxy.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../config/package.js';
import type { BenchRow } from './report.js';

const BIG_MIB = 256;
const LATENCY_REQUESTS = 1500;
const DOWNLOAD_REPEATS = 3;

interface Target {
  name: string;
  port: number;
  pid?: number;
}

export default async function bench(): Promise<BenchRow[]> {
  for (const [binary, pkg] of [['/usr/sbin/nginx', 'nginx-light'], ['/usr/sbin/haproxy', 'haproxy']] as const) {
    if (!existsSync(binary)) throw new Error(`${binary} is missing: apt-get install ${pkg}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'wedge-bench-relay-'));
  const children: ChildProcess[] = [];
  try {
    writeFileSync(join(dir, 'small.bin'), Buffer.alloc(1024, 7));
    execFileSync('dd', ['if=/dev/urandom', `of=${join(dir, 'big.bin')}`, 'bs=1M', `count=${BIG_MIB}`, 'status=none']);
    const ports = await freePorts(4);
    const [originPort, wedgePort, haproxyPort, adminPort] = ports as [number, number, number, number];
    children.push(startNginx(dir, originPort));
    const wedge = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist/cli/cli.js'), 'serve', '--listen', `127.0.0.1:${wedgePort}`,
      '--origin', `http://127.0.0.1:${originPort}`, '--admin', `127.0.0.1:${adminPort}`, '--log-level', 'warn'], { stdio: 'inherit' });
    children.push(wedge);
    const haproxy = startHaproxy(dir, haproxyPort, originPort);
    children.push(haproxy);
    for (const port of [originPort, wedgePort, haproxyPort]) await waitForPort(port);

    const targets: Target[] = [
      { name: 'direct', port: originPort },
      { name: 'wedge', port: wedgePort, pid: wedge.pid! },
      { name: 'haproxy', port: haproxyPort, pid: haproxy.pid! },
    ];
    const rows: BenchRow[] = [];
    const latency = new Map<string, number>();
    for (const t of targets) latency.set(t.name, await medianNewConnectionLatency(t.port, '/small.bin'));
    const direct = latency.get('direct')!;
    for (const t of targets) {
      const added = latency.get(t.name)! - direct;
      rows.push({ suite: 'relay', name: `1 KiB GET, new connection, median latency: ${t.name}`, value: latency.get(t.name)!, unit: 'µs',
        ...(t.name === 'direct' ? {} : { note: `adds ${added.toFixed(0)} µs` }) });
    }
    const addedWedge = latency.get('wedge')! - direct;
    const addedHaproxy = latency.get('haproxy')! - direct;
    rows.push({ suite: 'relay', name: 'added latency ratio wedge / haproxy', value: addedWedge / addedHaproxy, unit: 'x' });

    const throughput = new Map<string, number>();
    for (const t of targets) {
      const speeds: number[] = [];
      const cpu: number[] = [];
      for (let i = 0; i < DOWNLOAD_REPEATS; i++) {
        const before = t.pid ? cpuSeconds(t.pid) : 0;
        speeds.push(download(t.port, '/big.bin'));
        if (t.pid) cpu.push(((cpuSeconds(t.pid) - before) * 1024) / BIG_MIB);
      }
      throughput.set(t.name, median(speeds));
      rows.push({ suite: 'relay', name: `${BIG_MIB} MiB download throughput: ${t.name}`, value: median(speeds) / 1e9, unit: 'GB/s' });
      if (t.pid) rows.push({ suite: 'relay', name: `CPU per GiB relayed: ${t.name}`, value: median(cpu), unit: 'CPU-s/GiB' });
    }
    rows.push({ suite: 'relay', name: 'throughput ratio wedge / haproxy', value: throughput.get('wedge')! / throughput.get('haproxy')!, unit: 'x' });
    rows.push({ suite: 'relay', name: 'throughput ratio wedge / direct', value: throughput.get('wedge')! / throughput.get('direct')!, unit: 'x' });
    return rows;
  } finally {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function startNginx(dir: string, port: number): ChildProcess {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, `master_process off; user root; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path ${dir}/ct; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft; uwsgi_temp_path ${dir}/ut; scgi_temp_path ${dir}/st;
  server { listen 127.0.0.1:${port}; root ${dir}; } }
`);
  return spawn('/usr/sbin/nginx', ['-c', conf, '-g', 'daemon off;'], { stdio: 'inherit' });
}

function startHaproxy(dir: string, port: number, originPort: number): ChildProcess {
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(conf, `global
  maxconn 4000
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:${port}
  default_backend b
backend b
  server origin 127.0.0.1:${originPort}
`);
  return spawn('/usr/sbin/haproxy', ['-f', conf, '-db'], { stdio: 'inherit' });
}

/* One GET per new connection, sequentially; median of the time from connect to the last byte. */
async function medianNewConnectionLatency(port: number, path: string): Promise<number> {
  const samples: number[] = [];
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`);
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const started = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
      socket.on('data', () => undefined);
      socket.on('error', reject);
      socket.on('close', () => resolve());
    });
    samples.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  return median(samples.slice(LATENCY_REQUESTS / 10)); // the first tenth warms up
}

/* Bytes per second curl saw for one download to /dev/null. */
function download(port: number, path: string): number {
  const out = execFileSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `http://127.0.0.1:${port}${path}`]).toString();
  const [speed, size] = out.split(' ').map(Number);
  if (size !== BIG_MIB * 1024 * 1024) throw new Error(`download through port ${port} was ${size} bytes`);
  return speed!;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 10 ms
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}
