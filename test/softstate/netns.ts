/*
 * A throw-away L2 segment for the soft-state network tests: one bridge namespace and one
 * namespace per server, each with a veth into the bridge and a multicast route on it, built
 * with the lab's namespace primitives (lab/netns.ts). Not `wedge lab`: these tests run bare
 * soft-state members (fixtures/member.mjs), not daemons. Names carry a random prefix; destroy()
 * removes every namespace this lab created and ends only the processes it started, by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { addAddress, addBridge, addNamespace, addRoute, deleteNamespace, plugHost, setLinkDown, setLinkUp } from '../../lab/netns.js';

export const FIXTURE = fileURLToPath(new URL('./fixtures/member.mjs', import.meta.url));

/* nft reads its rules on stdin, which lab/run.ts does not feed. */
function inNs(ns: string, command: string, args: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', ns, command, ...args], {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export interface Event {
  ev: string;
  t: number;
  [field: string]: unknown;
}

export class MemberProcess {
  readonly events: Event[] = [];
  readonly stderr: string[] = [];
  private readonly waiters = new Set<() => void>();
  exited = false;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as Event);
      } catch {
        this.stderr.push(`stdout: ${line}`);
      }
      for (const w of this.waiters) w();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => this.stderr.push(line));
    child.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin!.write(JSON.stringify(command) + '\n');
  }

  /* Resolves with the first event (at or after index `from`) matching, or rejects on timeout. */
  waitFor(match: (e: Event) => boolean, timeoutMs = 10_000, from = 0): Promise<Event> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.events.slice(from).find(match);
        if (found) {
          cleanup();
          resolve(found);
        } else if (this.exited) {
          cleanup();
          reject(new Error(`${this.name} exited; stderr: ${this.stderr.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no matching event within ${timeoutMs} ms; stderr: ${this.stderr.slice(-5).join('\n')}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  async dump(): Promise<Event> {
    const from = this.events.length;
    this.send({ cmd: 'dump' });
    return this.waitFor((e) => e.ev === 'dump', 5000, from);
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

export class SegmentLab {
  readonly prefix = `ws${randomBytes(3).toString('hex')}`;
  readonly bridge = `${this.prefix}-br`;
  readonly servers: { ns: string; address: string }[] = [];
  private readonly processes: MemberProcess[] = [];

  /* Builds the bridge and one namespace per address (addresses in 10.77.0.0/24); on failure
   * removes what it built before rethrowing. */
  async create(addresses: string[]): Promise<void> {
    try {
      await this.build(addresses);
    } catch (err) {
      await this.removeNamespaces();
      throw err;
    }
  }

  private async build(addresses: string[]): Promise<void> {
    await addNamespace(this.bridge);
    await addBridge(this.bridge, 'br0');
    for (const [i, address] of addresses.entries()) {
      const ns = `${this.prefix}-s${i}`;
      this.servers.push({ ns, address });
      await addNamespace(ns);
      await plugHost(this.bridge, 'br0', `p${i}`, ns, 'eth0');
      await addAddress(ns, 'eth0', `${address}/24`);
      await addRoute(ns, '224.0.0.0/4', 'eth0');
    }
  }

  nsOf(address: string): string {
    const server = this.servers.find((s) => s.address === address);
    if (!server) throw new Error(`no server ${address}`);
    return server.ns;
  }

  async spawnMember(address: string, keyHex: string, options: Record<string, unknown>): Promise<MemberProcess> {
    const child = spawn('ip', ['netns', 'exec', this.nsOf(address), process.execPath, FIXTURE, JSON.stringify({ self: address, keyHex, options })], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const member = new MemberProcess(address, child);
    this.processes.push(member);
    await member.waitFor((e) => e.ev === 'ready');
    return member;
  }

  /* Drops `percent`% of the soft-state datagrams arriving in this server's namespace. */
  addLoss(address: string, percent: number, port = 7077): void {
    const rules = [
      'table inet wsloss {',
      '  chain input {',
      '    type filter hook input priority 0; policy accept;',
      `    meta l4proto udp udp dport ${port} numgen random mod 100 < ${percent} counter drop`,
      '  }',
      '}',
    ].join('\n');
    inNs(this.nsOf(address), '/usr/sbin/nft', ['-f', '-'], rules);
  }

  /* Packets the loss rule dropped so far. */
  lossCount(address: string): number {
    const listing = inNs(this.nsOf(address), '/usr/sbin/nft', ['list', 'table', 'inet', 'wsloss']);
    return Number(/counter packets (\d+)/.exec(listing)?.[1] ?? 0);
  }

  linkDown(address: string): Promise<void> {
    return setLinkDown(this.nsOf(address), 'eth0');
  }

  linkUp(address: string): Promise<void> {
    return setLinkUp(this.nsOf(address), 'eth0');
  }

  async stopMembers(): Promise<void> {
    const running = this.processes.splice(0).filter((p) => !p.exited);
    await Promise.all(
      running.map(
        (p) =>
          new Promise<void>((resolve) => {
            p.child.once('exit', () => resolve());
            p.kill();
          }),
      ),
    );
  }

  async destroy(): Promise<void> {
    await this.stopMembers();
    await this.removeNamespaces();
  }

  /* Also when creation failed half-way (deleting a missing namespace is no error). */
  private async removeNamespaces(): Promise<void> {
    for (const ns of [...this.servers.map((s) => s.ns), this.bridge]) await deleteNamespace(ns);
  }
}
