/*
 * A three-host lab in network namespaces, like the reference recipe, built with the lab's
 * namespace primitives (lab/netns.ts). Not `wedge lab`: it starts origins and wedges on every
 * server, and these tests want bare hosts with chosen TCP options and the VIP unassigned:
 *
 *     client ns (br0 10.77.0.1) ── bridge ── pa ═ va  server A ns (10.77.0.11, + VIP 10.77.0.100)
 *                                        └── pb ═ vb  server B ns (10.77.0.12)
 *
 * Names are random per lab, so parallel test files never collide; close() kills every process
 * the lab started (by PID) and deletes the namespaces, also after a failure. Fixture scripts
 * (test/native/fixtures/*.mjs, *.py) run inside a namespace and talk JSON lines on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addAddress, addBridge, addNamespace, deleteNamespace, plugHost, sysctl } from '../../lab/netns.js';
import { run } from '../../lab/run.js';
import { PACKAGE_ROOT } from '../../config/package.js';

/* From the package root, so the compiled copy of this file (dist/, used by the bench) finds them too. */
export const FIXTURES = join(PACKAGE_ROOT, 'test', 'native', 'fixtures') + '/';
export const PORT = 8080;

export interface LabOptions {
  timestamps: boolean;
}

export class NsProcess {
  readonly events: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private stderr = '';
  private readonly listeners = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    let pending = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim()) this.events.push(JSON.parse(line) as Record<string, unknown>);
      }
      this.listeners.forEach((notify) => notify());
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => child.on('exit', (code) => { resolve(code); this.listeners.forEach((n) => n()); }));
  }

  /** The first event (past or future) matching `match`; fails after timeoutMs or at exit. */
  waitFor(match: (event: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.find(match);
        if (found) return finish(() => resolve(found));
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          finish(() => reject(new Error(`process exited (${this.child.exitCode ?? this.child.signalCode}) before the event; stderr: ${this.stderr}`)));
        }
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`timed out waiting for an event; events: ${JSON.stringify(this.events).slice(0, 2000)}; stderr: ${this.stderr}`))), timeoutMs);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  event(name: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.waitFor((e) => e.event === name, timeoutMs);
  }

  get errors(): string {
    return this.stderr;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

export class Lab {
  readonly client: string;
  readonly serverA: string;
  readonly serverB: string;
  readonly clientAddress = '10.77.0.1';
  readonly addressA = '10.77.0.11';
  readonly addressB = '10.77.0.12';
  readonly vip = '10.77.0.100';
  readonly prefix = 24;
  readonly ifA = 'va';
  readonly ifB = 'vb';
  readonly ifClient = 'br0';
  private readonly processes: NsProcess[] = [];

  private constructor(tag: string) {
    this.client = `${tag}-c`;
    this.serverA = `${tag}-a`;
    this.serverB = `${tag}-b`;
  }

  static async create(options: LabOptions): Promise<Lab> {
    const lab = new Lab(`wn${randomBytes(3).toString('hex')}`);
    try {
      await lab.build(options);
    } catch (error) {
      await lab.close();
      throw error;
    }
    return lab;
  }

  private async build({ timestamps }: LabOptions): Promise<void> {
    for (const ns of [this.client, this.serverA, this.serverB]) {
      await addNamespace(ns);
      await sysctl(ns, 'net.ipv4.tcp_timestamps', timestamps ? '1' : '0');
      await sysctl(ns, 'net.ipv4.tcp_window_scaling', '1');
      await sysctl(ns, 'net.ipv4.tcp_sack', '1');
    }
    await addBridge(this.client, this.ifClient);
    await addAddress(this.client, this.ifClient, `${this.clientAddress}/${this.prefix}`);
    for (const [ns, inside, outside, address] of [
      [this.serverA, this.ifA, 'pa', this.addressA],
      [this.serverB, this.ifB, 'pb', this.addressB],
    ] as const) {
      await plugHost(this.client, this.ifClient, outside, ns, inside);
      await addAddress(ns, inside, `${address}/${this.prefix}`);
    }
  }

  /** Runs `ip` in namespace `ns`. */
  async ip(ns: string, ...args: string[]): Promise<void> {
    await run('ip', ['-n', ns, ...args]);
  }

  /** Starts a fixture inside `ns`: .mjs with node, .py with python3. */
  start(ns: string, fixture: string, ...args: (string | number)[]): NsProcess {
    const started = startFixture(['ip', 'netns', 'exec', ns], fixture, args);
    this.processes.push(started);
    return started;
  }

  async close(): Promise<void> {
    for (const p of this.processes) p.kill();
    await Promise.all(this.processes.map((p) => p.exited));
    for (const ns of [this.client, this.serverA, this.serverB]) await deleteNamespace(ns);
  }
}

/** Starts a fixture script (.mjs with this node, .py with python3) behind an optional prefix command. */
export function startFixture(prefix: string[], fixture: string, args: (string | number)[]): NsProcess {
  const program = fixture.endsWith('.py') ? 'python3' : process.execPath;
  const command = [...prefix, program, FIXTURES + fixture, ...args.map(String)];
  return new NsProcess(spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }));
}

/** Fixtures import the compiled API from dist/: `npm run build` (npm test does it) must have run. */
export function assertBuilt(): void {
  const compiled = join(PACKAGE_ROOT, 'dist', 'native', 'index.js');
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run npm run build first`);
}

/** Byte i of every test stream is i mod 251 (a period prime to every chunk size). */
export function pattern(start: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = (start + i) % 251;
  return out;
}
