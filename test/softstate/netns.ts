/*
 * A throw-away L2 segment for the soft-state network tests: one bridge namespace and one
 * namespace per server, each with a veth into the bridge and a multicast route on it.
 * Names carry a random prefix; destroy() removes every namespace this lab created and ends
 * only the processes it started, by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const FIXTURE = fileURLToPath(new URL('./fixtures/member.mjs', import.meta.url));

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function inNs(ns: string, command: string, args: string[], input?: string): string {
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
  create(addresses: string[]): void {
    try {
      this.build(addresses);
    } catch (err) {
      this.removeNamespaces();
      throw err;
    }
  }

  private build(addresses: string[]): void {
    ip('netns', 'add', this.bridge);
    ip('-n', this.bridge, 'link', 'set', 'lo', 'up');
    ip('-n', this.bridge, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    ip('-n', this.bridge, 'link', 'set', 'br0', 'up');
    addresses.forEach((address, i) => {
      const ns = `${this.prefix}-s${i}`;
      ip('netns', 'add', ns);
      this.servers.push({ ns, address });
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', this.bridge);
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
      ip('-n', this.bridge, 'link', 'set', `p${i}`, 'master', 'br0');
      ip('-n', this.bridge, 'link', 'set', `p${i}`, 'up');
    });
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

  linkDown(address: string): void {
    ip('-n', this.nsOf(address), 'link', 'set', 'eth0', 'down');
  }

  linkUp(address: string): void {
    ip('-n', this.nsOf(address), 'link', 'set', 'eth0', 'up');
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
    this.removeNamespaces();
  }

  private removeNamespaces(): void {
    for (const ns of [...this.servers.map((s) => s.ns), this.bridge]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // Already gone (creation failed half-way).
      }
    }
  }
}
