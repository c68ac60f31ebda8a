/*
 * Helpers for the takeover tests (issue 5): a lab, a download running in the background on the
 * client host, and questions to the servers (who holds a connection, what /metrics counts, what
 * the logs say). The client host shares this filesystem, so what it writes is read from here.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, uniqueLab, wedge, wedgeOk } from '../lab/lab-cli.js';

export { IS_ROOT, sha256 } from '../lab/lab-cli.js';

export interface LabFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface LabServer {
  name: string;
  address: string;
  vip: string;
  root: string;
}

export interface UpOptions {
  servers?: number;
  origin?: 'builtin' | 'apache';
  files: string[];
  rate?: string;
  /* Each server on its own subnet behind a router (TCP Migrate). */
  subnets?: boolean;
  /* The client agent (wedge agent) on the client host. */
  agent?: boolean;
}

/*
 * The client's TCP receive buffer, at most: a client that reads slowly then holds back the
 * server on the wire too, instead of taking the whole file into its kernel at once.
 */
const CLIENT_TCP_RMEM = '4096 65536 65536';

/** One lab for one test file: `up` in beforeAll, `down` in afterAll (always). */
export class Lab {
  readonly name: string;
  files: LabFile[] = [];
  servers: LabServer[] = [];
  runDir = '';
  clientAddress = '';
  /** A scratch directory for the client's output files. */
  scratch = '';

  constructor(tag: string) {
    this.name = uniqueLab(tag);
  }

  async up(options: UpOptions): Promise<void> {
    this.scratch = await mkdtemp(join(tmpdir(), `wedge-${this.name}-`));
    const args = ['lab', 'up', '--json', '--lab', this.name, '--servers', String(options.servers ?? 3), '--origin', options.origin ?? 'builtin'];
    for (const file of options.files) args.push('--file', file);
    if (options.rate) args.push('--rate', options.rate);
    if (options.subnets) args.push('--subnets');
    if (options.agent) args.push('--agent');
    const up = JSON.parse((await wedgeOk(args)).stdout.toString('utf8')) as { files: LabFile[] };
    this.files = up.files;
    const status = JSON.parse((await wedgeOk(['lab', 'status', '--json', '--lab', this.name])).stdout.toString('utf8')) as { runDir: string };
    this.runDir = status.runDir;
    const state = JSON.parse(await readFile(join(this.runDir, 'state.json'), 'utf8')) as { servers: LabServer[]; client: { address: string } };
    this.servers = state.servers.map(({ name, address, vip, root }) => ({ name, address, vip, root }));
    this.clientAddress = state.client.address;
    const rmem = await this.exec('client', ['sysctl', '-qw', `net.ipv4.tcp_rmem=${CLIENT_TCP_RMEM}`]);
    if (rmem.code !== 0) throw new Error(`cannot set the client's tcp_rmem: ${rmem.stderr}`);
  }

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

  out(name: string): string {
    return join(this.scratch, name);
  }

  /** Runs CMD on HOST; never rejects on a non-zero exit. */
  exec(host: string, command: readonly string[]) {
    return wedge(['lab', 'exec', host, '--lab', this.name, '--', ...command]);
  }

  /** Starts CMD on HOST in the background (the test's own child process). */
  background(host: string, command: readonly string[]): Background {
    return new Background(spawn(process.execPath, [CLI, 'lab', 'exec', host, '--lab', this.name, '--', ...command], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  async crash(server: string): Promise<void> {
    await wedgeOk(['lab', 'crash', server, '--lab', this.name]);
  }

  async declareDead(server: string): Promise<void> {
    await wedgeOk(['lab', 'declare-dead', server, '--lab', this.name]);
  }

  /** The connections `wedge status --json` on SERVER lists. */
  async connections(server: string): Promise<ConnectionRow[]> {
    const result = await wedgeOk(['lab', 'exec', server, '--lab', this.name, '--', 'wedge', 'status', '--json']);
    return (JSON.parse(result.stdout.toString('utf8')) as { connections: ConnectionRow[] }).connections;
  }

  /** SERVER's /metrics, parsed. */
  async metrics(server: string): Promise<Metrics> {
    const result = await wedgeOk(['lab', 'exec', server, '--lab', this.name, '--', 'curl', '-fsS', 'http://127.0.0.1:9090/metrics']);
    return new Metrics(result.stdout.toString('utf8'));
  }

  /** Hands up to COUNT of SERVER's connections to its group (TCP Migrate load shedding). */
  async shed(server: string, count: number): Promise<{ handedOff: number }> {
    const result = await wedgeOk(['lab', 'exec', server, '--lab', this.name, '--', 'curl', '-fsS', '-X', 'POST', `http://127.0.0.1:9090/shed?count=${count}`]);
    return JSON.parse(result.stdout.toString('utf8')) as { handedOff: number };
  }

  /** The client agent's /metrics, parsed. */
  async agentMetrics(): Promise<Metrics> {
    const result = await wedgeOk(['lab', 'exec', 'client', '--lab', this.name, '--', 'curl', '-fsS', 'http://127.0.0.1:9191/metrics']);
    return new Metrics(result.stdout.toString('utf8'));
  }

  /** SERVER's wedge log lines whose msg is MSG ('client-agent' for the agent's log). */
  async logged(server: string, msg: string): Promise<Record<string, unknown>[]> {
    const log = server === 'client-agent' ? 'client-agent.log' : `${server}-wedge.log`;
    const text = await readFile(join(this.runDir, log), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((line) => line.includes(`"msg":"${msg}"`))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** Waits until SERVER's log has COUNT lines whose msg is MSG; returns them. */
  async waitLogged(server: string, msg: string, count = 1, timeoutMs = 10_000): Promise<Record<string, unknown>[]> {
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
  'connection not advertised',
  'connection aborted',
  'shedding load: connections handed to the group',
];
const AGENT_STORY = ['negotiated', 'migrated', 'rejected Migrate SYN', 'move requested'];

export interface ConnectionRow {
  id: string;
  state: string;
  requests: number;
  bytes: { fromClient: number; toClient: number };
}

/** Prometheus text exposition, enough to read counters. */
export class Metrics {
  constructor(readonly text: string) {}

  /** The value of NAME{LABELS} (0 when absent); labels must match exactly those given. */
  value(name: string, labels: Record<string, string> = {}): number {
    const wanted = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .sort()
      .join(',');
    for (const line of this.text.split('\n')) {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+)$/.exec(line);
      if (!match || match[1] !== name) continue;
      const have = (match[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter(Boolean).sort().join(',');
      if (have === wanted) return Number(match[3]);
    }
    return 0;
  }

  /** Sum of NAME over every label set. */
  total(name: string): number {
    let sum = 0;
    for (const line of this.text.split('\n')) {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? ([0-9.eE+-]+)$/.exec(line);
      if (match && match[1] === name) sum += Number(match[2]);
    }
    return sum;
  }
}

/** A command running on a lab host in the background. */
export class Background {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;

  constructor(private readonly child: ReturnType<typeof spawn>) {
    child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : 9))));
  }

  /** Resolves with the exit code, or fails after TIMEOUT_MS (and kills this child). */
  async done(timeoutMs = 60_000): Promise<number> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the command if it still runs (only this child; the lab kills its own). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
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
