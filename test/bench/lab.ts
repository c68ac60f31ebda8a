/*
 * A `wedge lab` for lab benchmarks, driven through bin/wedge from the compiled tree (the test
 * helpers in test/lab and test/takeover find the CLI relative to the TypeScript sources, which
 * only works under vitest). Up, down, run things on a host, crash, and read /metrics and logs.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../native/load.js';

const run = promisify(execFile);
export const WEDGE = join(PACKAGE_ROOT, 'bin', 'wedge');

export interface BenchLabServer {
  name: string;
  /* Own (soft-state) address, e.g. 10.77.0.11. */
  address: string;
  /* Service address (with --subnets the server's own subnet address, e.g. 10.78.1.10). */
  vip: string;
}

export interface BenchLabOptions {
  servers: number;
  files: string[];
  subnets?: boolean;
  agent?: boolean;
  rate?: string[];
}

export type LogLine = Record<string, unknown> & { time: number; msg: string };

export class BenchLab {
  files: Array<{ path: string; bytes: number; sha256: string }> = [];
  servers: BenchLabServer[] = [];
  clientAddress = '';
  runDir = '';

  constructor(readonly name: string) {}

  async up(options: BenchLabOptions): Promise<void> {
    const args = ['lab', 'up', '--json', '--lab', this.name, '--servers', String(options.servers)];
    for (const file of options.files) args.push('--file', file);
    for (const rate of options.rate ?? []) args.push('--rate', rate);
    if (options.subnets) args.push('--subnets');
    if (options.agent) args.push('--agent');
    const up = JSON.parse((await run(WEDGE, args, { maxBuffer: 1 << 20, timeout: 120_000 })).stdout) as { files: BenchLab['files'] };
    this.files = up.files;
    this.runDir = (JSON.parse((await run(WEDGE, ['lab', 'status', '--json', '--lab', this.name])).stdout) as { runDir: string }).runDir;
    const state = JSON.parse(readFileSync(join(this.runDir, 'state.json'), 'utf8')) as { servers: BenchLabServer[]; client: { address: string } };
    this.servers = state.servers.map(({ name, address, vip }) => ({ name, address, vip }));
    this.clientAddress = state.client.address;
  }

  /** Idempotent; never throws (a half-built lab is cleaned too). */
  async down(): Promise<void> {
    await run(WEDGE, ['lab', 'down', '--lab', this.name], { timeout: 60_000 }).catch(() => undefined);
  }

  file(path: string) {
    const file = this.files.find((f) => f.path === path);
    if (!file) throw new Error(`lab has no file ${path}`);
    return file;
  }

  server(name: string): BenchLabServer {
    const server = this.servers.find((s) => s.name === name);
    if (!server) throw new Error(`lab has no server ${name}`);
    return server;
  }

  url(server: string, path: string): string {
    return `http://${this.server(server).vip}${path}`;
  }

  namespace(host: string): string {
    return `wl_${this.name}_${host}`;
  }

  /** CMD on HOST (through `wedge lab exec`); its stdout, or a rejection on a non-zero exit. */
  async exec(host: string, command: readonly string[]): Promise<string> {
    return (await run(WEDGE, ['lab', 'exec', host, '--lab', this.name, '--', ...command], { maxBuffer: 64 << 20, timeout: 60_000 })).stdout;
  }

  /** CMD on HOST straight through `ip netns exec` (no CLI start-up: for timed steps). */
  execNow(host: string, command: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', this.namespace(host), ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command.join(' ')} exited ${code}: ${err}`))));
    });
  }

  /** CMD on HOST in the background, its output collected. */
  background(host: string, command: readonly string[]): BenchBackground {
    return new BenchBackground(spawn(WEDGE, ['lab', 'exec', host, '--lab', this.name, '--', ...command], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /**
   * Power loss of SERVER, timed from the first link change: every link down in one `ip -batch`
   * (`eth0`, and `eth1` with --subnets), then `wedge lab crash` kills its processes (and finds
   * the links already down). Timing the CLI would add its start-up to the detection time.
   */
  async crash(server: string, links = ['eth0', 'eth1']): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const ip = spawn('ip', ['-n', this.namespace(server), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      ip.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      ip.on('error', reject);
      ip.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ip -batch exited ${code}: ${err}`))));
      ip.stdin.end(links.map((link) => `link set ${link} down\n`).join(''));
    });
    await run(WEDGE, ['lab', 'crash', server, '--lab', this.name]);
  }

  /** SERVER's /metrics ('client-agent' for the agent's). */
  async metrics(server: string): Promise<Metrics> {
    const url = server === 'client-agent' ? 'http://127.0.0.1:9191/metrics' : 'http://127.0.0.1:9090/metrics';
    return new Metrics(await this.execNow(server === 'client-agent' ? 'client' : server, ['curl', '-fsS', url]));
  }

  /** SERVER's JSON log lines whose msg is exactly MSG ('client-agent' for the agent's log). */
  logged(server: string, msg: string): LogLine[] {
    const log = server === 'client-agent' ? 'client-agent.log' : `${server}-wedge.log`;
    let text = '';
    try {
      text = readFileSync(join(this.runDir, log), 'utf8');
    } catch {
      return [];
    }
    const needle = `"msg":${JSON.stringify(msg)}`;
    return text
      .split('\n')
      .filter((line) => line.includes(needle))
      .map((line) => JSON.parse(line) as LogLine)
      .filter((line) => line.msg === msg);
  }
}

/** Prometheus text exposition, enough to read counters. */
export class Metrics {
  constructor(readonly text: string) {}

  /** NAME{LABELS} (exactly those labels), 0 when absent. */
  value(name: string, labels: Record<string, string> = {}): number {
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
    for (const [metric, have, value] of this.samples()) if (metric === name && have === wanted) return value;
    return 0;
  }

  /** Every label set of NAME: its labels text (sorted) and value. */
  all(name: string): Array<[string, number]> {
    return this.samples().filter(([metric]) => metric === name).map(([, labels, value]) => [labels, value]);
  }

  private samples(): Array<[string, string, number]> {
    const out: Array<[string, string, number]> = [];
    for (const line of this.text.split('\n')) {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+)$/.exec(line);
      if (!match) continue;
      const labels = (match[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter(Boolean).sort().join(',');
      out.push([match[1]!, labels, Number(match[3])]);
    }
    return out;
  }
}

/** A command running on a lab host in the background (this process's own child). */
export class BenchBackground {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;
  private done_ = false;

  constructor(private readonly child: ReturnType<typeof spawn>) {
    child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        this.done_ = true;
        resolve(code ?? (signal ? 128 : 0));
      }),
    );
  }

  get running(): boolean {
    return !this.done_;
  }

  /** The exit code; kills the child after TIMEOUT_MS. */
  async done(timeoutMs: number): Promise<number> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}
