/*
 * During a takeover the adopter's kernel has, for a moment, no socket for a connection it is
 * adopting: between adding the dead server's address and restoring the socket, any segment from
 * that client (a retransmission, a window probe, the answer to our own probe) would be answered
 * with RST by the local stack, killing the very connection being saved. A netfilter set of the
 * clients being adopted drops our own RSTs to them until each socket is restored.
 *
 * One table per daemon (`wedge_guard_<pid>`), removed when the daemon stops.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WedgeError } from './errors.js';

const run = promisify(execFile);

export interface ClientEndpoint {
  address: string;
  port: number;
}

export class RstGuard {
  private readonly table = `wedge_guard_${process.pid}`;
  private installed = false;
  /* Elements in the set now, so that a release never names one twice (nft would fail). */
  private readonly guarded = new Set<string>();

  /* Creates the (empty) table ahead of time, so that a takeover only adds elements. */
  async install(): Promise<void> {
    if (this.installed) return;
    await this.nft(
      `table ip ${this.table} {\n` +
        `  set adopting { type ipv4_addr . inet_service; }\n` +
        `  chain out { type filter hook output priority -300; tcp flags & rst == rst ip daddr . tcp dport @adopting drop; }\n` +
        `}\n`,
    );
    this.installed = true;
  }

  async guard(clients: readonly ClientEndpoint[]): Promise<void> {
    const fresh = elements(clients).filter((e) => !this.guarded.has(e));
    if (fresh.length === 0) return;
    await this.install();
    for (const e of fresh) this.guarded.add(e);
    await this.nft(`add element ip ${this.table} adopting { ${fresh.join(', ')} }\n`);
  }

  async release(clients: readonly ClientEndpoint[]): Promise<void> {
    const present = elements(clients).filter((e) => this.guarded.delete(e));
    if (present.length === 0) return;
    await this.nft(`delete element ip ${this.table} adopting { ${present.join(', ')} }\n`);
  }

  async uninstall(): Promise<void> {
    if (!this.installed) return;
    this.installed = false;
    this.guarded.clear();
    await this.nft(`delete table ip ${this.table}\n`);
  }

  private async nft(script: string): Promise<void> {
    try {
      const child = run('nft', ['-f', '-']);
      child.child.stdin!.end(script);
      await child;
    } catch (err) {
      throw new WedgeError('WEDGE_ERR_TAKEOVER', `nft failed (${(err as Error).message.trim()}); is nftables installed?`);
    }
  }
}

function elements(clients: readonly ClientEndpoint[]): string[] {
  return clients.map((c) => `${c.address} . ${c.port}`);
}
