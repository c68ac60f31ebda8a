/*
 * The one harness over the `wedge lab` CLI (lab/README.md), for the lab tests under vitest and
 * for the lab benchmarks compiled in dist/: the CLI is found from the package root
 * (lab/project.ts), so it runs from either tree. In: `lab up` options and commands for lab hosts;
 * out: the lab's JSON documents, command results, background processes, /metrics parsed, log
 * lines. The client host shares this filesystem, so what it writes is read from here.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADMIN_PORT, AGENT_METRICS, CLIENT_HOST, nsPrefix, ROUTER_HOST } from '../../lab/plan.js';
import { COMPILED_CLI } from '../../config/package.js';
import type { ConnectionView as ConnectionRow } from '../../daemon/server.js';
import { labDeclareDead } from '../../lab/crash.js';
import { runIn } from '../../lab/run.js';
import { linksOf, type LabState, type ServerState } from '../../lab/state.js';

export const CLI = COMPILED_CLI;
export const IS_ROOT = process.getuid?.() === 0;

export interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs `wedge ARGS...`; never rejects on a non-zero exit. */
export function wedge(args: readonly string[], timeoutMs = 120_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      if (code === -1) reject(err);
      else resolve({ code, stdout, stderr: stderr.toString('utf8') });
    });
  });
}

/** Runs `wedge ARGS...` and fails with its stderr unless it exits 0. */
export async function wedgeOk(args: readonly string[]): Promise<Result> {
  const result = await wedge(args);
  if (result.code !== 0) throw new Error(`wedge ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result;
}

/** A lab name of this process: test files running side by side never share one. */
export function uniqueLab(tag: string): string {
  return `t${process.pid}-${tag}`;
}

export async function labNamespaces(lab: string): Promise<string[]> {
  const names = await readdir('/run/netns').catch(() => [] as string[]);
  return names.filter((name) => name.startsWith(nsPrefix(lab)));
}

/** PIDs of live (non-zombie) processes whose command line contains `text`. */
export async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.replaceAll('\0', ' ').includes(text)) found.push(Number(entry));
  }
  return found;
}

/**
 * Starts tcpdump on `iface` in namespace `ns` for TCP segments from `source` carrying FIN or RST.
 * `stop()` ends it and returns the lines it printed (one per such segment).
 */
export async function watchFinRst(ns: string, iface: string, source: string): Promise<{ stop(): Promise<string[]> }> {
  const filter = `tcp and src host ${source} and (tcp[tcpflags] & (tcp-fin|tcp-rst) != 0)`;
  const tcpdump = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-l', '-U', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  tcpdump.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<void>((resolve) => tcpdump.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    tcpdump.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes('listening on')) resolve();
    });
    tcpdump.on('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${err}`)));
  });
  return {
    async stop() {
      if (tcpdump.exitCode === null && tcpdump.signalCode === null) tcpdump.kill('SIGINT');
      await exited;
      return out.split('\n').filter((line) => line.trim().length > 0);
    },
  };
}

export interface LabFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface LabServer {
  name: string;
  /* Own (soft-state) address, e.g. 10.77.0.11. */
  address: string;
  /* Service address (with --subnets the server's own subnet address, e.g. 10.78.1.10). */
  vip: string;
  /* Its origin's document root. */
  root: string;
}

/** The part of `lab up --json` every lab has (lab/README.md); a test reads more through its own type. */
export interface UpDocument {
  lab: string;
  client: string;
  servers: { name: string; service: string; address: string; admin: string }[];
  files: LabFile[];
}

export interface UpOptions {
  servers?: number;
  origin?: 'builtin' | 'apache';
  /* `--origin-cmd`: the user's own origin command instead. */
  originCmd?: string;
  files: string[];
  /* `--rate`: one lab-wide RATE and/or SERVER=RATE specs. */
  rate?: string | string[];
  /* Each server on its own subnet behind a router (TCP Migrate). */
  subnets?: boolean;
  /* The client agent (wedge agent) on the client host. */
  agent?: boolean;
  /*
   * The client's net.ipv4.tcp_rmem; null keeps the kernel's. By default at most 64 KiB: a client
   * that reads slowly then holds back the server on the wire too, instead of taking the whole
   * file into its kernel at once.
   */
  clientRmem?: string | null;
}

const CLIENT_TCP_RMEM = '4096 65536 65536';

export type LogLine = Record<string, unknown> & { time: number; msg: string };

/** One lab: `up` in beforeAll, `down` in afterAll (always). */
export class Lab {
  readonly name: string;
  files: LabFile[] = [];
  servers: LabServer[] = [];
  runDir = '';
  clientAddress = '';
  /** What `lab up` printed on stderr (its warnings). */
  upStderr = '';
  /** A scratch directory for the client's output files. */
  scratch = '';
  private state: LabState | undefined;

  constructor(tag: string) {
    this.name = uniqueLab(tag);
  }

  /** Builds the lab; returns `lab up --json` (typed T by the caller that reads more of it). */
  async up<T extends UpDocument = UpDocument>(options: UpOptions): Promise<T> {
    this.scratch = await mkdtemp(join(tmpdir(), `wedge-${this.name}-`));
    const args = ['lab', 'up', '--json', '--lab', this.name, '--servers', String(options.servers ?? 3), '--origin', options.origin ?? 'builtin'];
    for (const file of options.files) args.push('--file', file);
    for (const rate of [options.rate ?? []].flat()) args.push('--rate', rate);
    if (options.originCmd !== undefined) args.push('--origin-cmd', options.originCmd);
    if (options.subnets) args.push('--subnets');
    if (options.agent) args.push('--agent');
    const result = await wedgeOk(args);
    this.upStderr = result.stderr;
    const up = JSON.parse(result.stdout.toString('utf8')) as T;
    this.files = up.files;
    this.runDir = (await this.status<{ runDir: string }>()).runDir;
    this.state = JSON.parse(await readFile(join(this.runDir, 'state.json'), 'utf8')) as LabState;
    this.servers = this.state.servers.map(({ name, address, vip, root }) => ({ name, address, vip, root }));
    this.clientAddress = this.state.client.address;
    const rmem = options.clientRmem === undefined ? CLIENT_TCP_RMEM : options.clientRmem;
    if (rmem !== null) await this.execOk('client', ['sysctl', '-qw', `net.ipv4.tcp_rmem=${rmem}`]);
    return up;
  }

  /** `lab status --json`, typed T by the caller. */
  async status<T>(): Promise<T> {
    return JSON.parse((await wedgeOk(['lab', 'status', '--json', '--lab', this.name])).stdout.toString('utf8')) as T;
  }

  /** Idempotent; also cleans a half-built lab. */
  async down(): Promise<void> {
    await wedge(['lab', 'down', '--lab', this.name]);
    if (this.scratch) await rm(this.scratch, { recursive: true, force: true });
  }

  file(path: string): LabFile {
    const file = this.files.find((f) => f.path === path);
    if (!file) throw new Error(`lab has no file ${path}`);
    return file;
  }

  server(name: string): LabServer {
    const server = this.servers.find((s) => s.name === name);
    if (!server) throw new Error(`lab has no server ${name}`);
    return server;
  }

  /** `http://<sN's service address><path>` */
  url(server: string, path: string): string {
    return `http://${this.server(server).vip}${path}`;
  }

  /** A path in the scratch directory. */
  out(name: string): string {
    return join(this.scratch, name);
  }

  /** The network namespace of HOST (`client`, `sN`, `router`), as the lab's state names it. */
  namespace(host: string): string {
    const state = this.upState();
    if (host === CLIENT_HOST) return state.client.ns;
    if (host === ROUTER_HOST && state.router) return state.router.ns;
    return this.serverState(host).ns;
  }

  /** Runs CMD on HOST; never rejects on a non-zero exit. */
  exec(host: string, command: readonly string[]): Promise<Result> {
    return wedge(['lab', 'exec', host, '--lab', this.name, '--', ...command]);
  }

  /** Runs CMD on HOST and fails with its stderr unless it exits 0. */
  execOk(host: string, command: readonly string[]): Promise<Result> {
    return wedgeOk(['lab', 'exec', host, '--lab', this.name, '--', ...command]);
  }

  /** CMD on HOST straight through `ip netns exec` (no CLI start-up: for timed steps); its stdout. */
  async execNow(host: string, command: readonly string[]): Promise<string> {
    return (await runIn(this.namespace(host), command[0]!, command.slice(1), { timeoutMs: 60_000 })).stdout;
  }

  /** Starts CMD on HOST in the background (the caller's own child); STDIN: a pipe to write to. */
  background(host: string, command: readonly string[], options: { stdin?: boolean } = {}): Background {
    const stdin = options.stdin ? 'pipe' : 'ignore';
    return new Background(spawn(process.execPath, [CLI, 'lab', 'exec', host, '--lab', this.name, '--', ...command], { stdio: [stdin, 'pipe', 'pipe'] }));
  }

  async crash(server: string): Promise<void> {
    await wedgeOk(['lab', 'crash', server, '--lab', this.name]);
  }

  /**
   * Power loss of SERVER timed from its first link change: every link down in one `ip -batch`,
   * then `lab crash` kills its processes (and finds the links already down). Timing the CLI
   * would add its start-up to what a benchmark measures.
   */
  async crashNow(server: string): Promise<void> {
    const state = this.serverState(server);
    await new Promise<void>((resolve, reject) => {
      const ip = spawn('ip', ['-n', state.ns, '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      ip.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      ip.on('error', reject);
      ip.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ip -batch exited ${code}: ${err}`))));
      ip.stdin.end(linksOf(state).map((link) => `link set ${link} down\n`).join(''));
    });
    await this.crash(server);
  }

  async declareDead(server: string): Promise<void> {
    await wedgeOk(['lab', 'declare-dead', server, '--lab', this.name]);
  }

  /** `lab declare-dead SERVER` without the CLI start-up (for timed steps); the lab as it came up. */
  async declareDeadNow(server: string): Promise<void> {
    const failed = (await labDeclareDead(this.upState(), server)).filter((r) => !r.ok);
    if (failed.length > 0) throw new Error(`declare-dead ${server}: ${failed.map((r) => `${r.server} ${r.detail}`).join('; ')}`);
  }

  /** `lab shape SERVER RATE|off`. */
  async shape(server: string, rate: string): Promise<void> {
    await wedgeOk(['lab', 'shape', server, rate, '--lab', this.name]);
  }

  /** The connections `wedge status --json` on SERVER lists. */
  async connections(server: string): Promise<ConnectionRow[]> {
    const result = await this.execOk(server, ['wedge', 'status', '--json']);
    return (JSON.parse(result.stdout.toString('utf8')) as { connections: ConnectionRow[] }).connections;
  }

  /** SERVER's /metrics, parsed ('client-agent' for the agent's). */
  async metrics(server: string): Promise<Metrics> {
    const [host, url] = server === 'client-agent' ? [CLIENT_HOST, `http://${AGENT_METRICS}/metrics`] : [server, `http://127.0.0.1:${ADMIN_PORT}/metrics`];
    return new Metrics((await this.execOk(host, ['curl', '-fsS', url])).stdout.toString('utf8'));
  }

  /** Hands up to COUNT of SERVER's connections to its group (TCP Migrate load shedding). */
  async shed(server: string, count: number): Promise<{ handedOff: number }> {
    const result = await this.execOk(server, ['curl', '-fsS', '-X', 'POST', `http://127.0.0.1:${ADMIN_PORT}/shed?count=${count}`]);
    return JSON.parse(result.stdout.toString('utf8')) as { handedOff: number };
  }

  /** SERVER's JSON log lines whose msg is exactly MSG ('client-agent' for the agent's log). */
  async logged(server: string, msg: string): Promise<LogLine[]> {
    const log = server === 'client-agent' ? 'client-agent.log' : `${server}-wedge.log`;
    const text = await readFile(join(this.runDir, log), 'utf8').catch(() => '');
    const needle = `"msg":${JSON.stringify(msg)}`;
    return text
      .split('\n')
      .filter((line) => line.includes(needle))
      .map((line) => JSON.parse(line) as LogLine)
      .filter((line) => line.msg === msg);
  }

  /** Waits until SERVER's log has COUNT lines whose msg is MSG; returns them. */
  async waitLogged(server: string, msg: string, count = 1, timeoutMs = 10_000): Promise<LogLine[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = await this.logged(server, msg);
      if (lines.length >= count) return lines;
      if (Date.now() > deadline) throw new Error(`${server} logged "${msg}" ${lines.length} times, not ${count}, in ${timeoutMs} ms\n${await this.story()}`);
      await sleep(50);
    }
  }

  /** The server whose service address is ENDPOINT ("address:port"). */
  serverAt(endpoint: unknown): string {
    const server = this.servers.find((s) => `${s.vip}:80` === endpoint);
    if (!server) throw new Error(`no lab server at ${String(endpoint)}`);
    return server.name;
  }

  /** What the takeover did, from every server's log: a message for failed assertions. */
  async story(): Promise<string> {
    const lines: string[] = [];
    for (const server of this.servers) {
      for (const msg of STORY) for (const line of await this.logged(server.name, msg)) lines.push(JSON.stringify(line));
    }
    for (const msg of AGENT_STORY) for (const line of await this.logged('client-agent', msg)) lines.push(JSON.stringify(line));
    return lines.join('\n');
  }

  /**
   * Waits until one of CANDIDATES serves a connection from CLIENT_PORT (any port when omitted)
   * and returns its name: the adopter, once a takeover is done.
   */
  async holder(candidates: readonly string[], clientPort?: number, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await Promise.all(candidates.map((server) => this.connections(server).catch(() => [])));
      const index = rows.findIndex((list) => list.some((row) => clientPort === undefined || row.id.startsWith(`${this.clientAddress}:${clientPort}>`)));
      if (index >= 0) return candidates[index]!;
      if (Date.now() > deadline) throw new Error(`no server of ${candidates.join(', ')} holds the connection after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  private upState(): LabState {
    if (!this.state) throw new Error(`lab ${this.name} is not up`);
    return this.state;
  }

  private serverState(name: string): ServerState {
    const server = this.upState().servers.find((s) => s.name === name);
    if (!server) throw new Error(`lab has no server ${name}`);
    return server;
  }
}

const STORY = [
  'peer dead',
  'connection resumed',
  'address adopted',
  'cannot resume exactly; resetting',
  'takeover failed',
  'connection taken over by a peer; stepping back',
  'probe failed',
  'won the Migrate race',
  'Migrate race over',
  'peer dead: racing for its connections',
  'connection not advertised: unprotected',
  'connection aborted',
  'shedding load: connections handed to the group',
];
const AGENT_STORY = ['negotiated', 'migrated', 'rejected Migrate SYN', 'move requested'];

export type { ConnectionRow };

export interface Sample {
  name: string;
  /* Label values as the text has them. */
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition, enough to read counters and gauges. */
export class Metrics {
  readonly samples: Sample[] = [];

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+)$/.exec(line);
      if (!match) continue;
      const labels: Record<string, string> = {};
      for (const pair of (match[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter(Boolean)) {
        const at = pair.indexOf('=');
        labels[pair.slice(0, at)] = pair.slice(at + 2, -1);
      }
      this.samples.push({ name: match[1]!, labels, value: Number(match[3]) });
    }
  }

  /** The value of NAME{LABELS} (0 when absent); labels must match exactly those given. */
  value(name: string, labels: Record<string, string> = {}): number {
    const wanted = Object.entries(labels);
    const found = this.all(name).find((s) => Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v));
    return found?.value ?? 0;
  }

  /** Sum of NAME over every label set. */
  total(name: string): number {
    return this.all(name).reduce((sum, s) => sum + s.value, 0);
  }

  /** Every sample of NAME. */
  all(name: string): Sample[] {
    return this.samples.filter((s) => s.name === name);
  }
}

/** A command running on a lab host in the background (this process's own child). */
export class Background {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;

  constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : 9))));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Writes TEXT to its stdin (started with `stdin: true`). */
  write(text: string): void {
    this.child.stdin!.write(text);
  }

  /** Closes its stdin (if it still runs). */
  end(): void {
    if (this.running) this.child.stdin?.end();
  }

  /** Resolves with the exit code; kills this child after TIMEOUT_MS. */
  async done(timeoutMs = 60_000): Promise<number> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the command if it still runs (only this child; the lab kills its own). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }
}

/** Waits until FILE holds at least BYTES bytes; fails if DOWNLOAD ends first or after TIMEOUT_MS. */
export async function waitForBytes(file: string, bytes: number, download?: Background, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void download?.exited.then(() => (ended = true));
  for (;;) {
    const size = (await stat(file).catch(() => undefined))?.size ?? 0;
    if (size >= bytes) return size;
    if (ended) throw new Error(`download ended with ${size} of ${bytes} bytes before the crash point: ${download!.stderr}`);
    if (Date.now() > deadline) throw new Error(`${file} has ${size} bytes, not ${bytes}, after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Waits until CONDITION holds (polled), or fails with WHAT after TIMEOUT_MS. */
export async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
