/*
 * During a takeover the adopter's kernel has, for a moment, no socket for a connection it is
 * adopting: between adding the dead server's address and restoring the socket, any segment from
 * that client (a retransmission, a window probe, the answer to our own probe) would be answered
 * with RST by the local stack, killing the very connection being saved. A netfilter set of the
 * clients being adopted drops such resets.
 *
 * Only the stack's own resets are dropped: sockets the adopter restores carry RESTORED_MARK
 * (SO_MARK), and the resets they send on purpose (a connection that cannot be resumed exactly)
 * pass. So nothing has to be released per connection: the set's elements simply time out, and a
 * takeover of a thousand connections costs one `nft` call.
 *
 * One table per daemon (`wedge_guard_<pid>`), removed when the daemon stops.
 */
import { nft } from './nft.js';

/* SO_MARK of restored sockets ("WE"). */
export const RESTORED_MARK = 0x5745;
/* How long a client stays guarded: well beyond the time to probe and restore it. */
const GUARD_SECONDS = 10;

export interface ClientEndpoint {
  address: string;
  port: number;
}

export class RstGuard {
  private readonly table = `wedge_guard_${process.pid}`;
  private installed = false;

  /* Creates the (empty) table ahead of time, so that a takeover only adds elements. */
  async install(): Promise<void> {
    if (this.installed) return;
    await nft(
      `table ip ${this.table} {\n` +
        `  set adopting { type ipv4_addr . inet_service; flags timeout; timeout ${GUARD_SECONDS}s; }\n` +
        `  chain out { type filter hook output priority -300; tcp flags & rst == rst meta mark != ${RESTORED_MARK} ip daddr . tcp dport @adopting drop; }\n` +
        `}\n`,
    );
    this.installed = true;
  }

  async guard(clients: readonly ClientEndpoint[]): Promise<void> {
    if (clients.length === 0) return;
    await this.install();
    await nft(`add element ip ${this.table} adopting { ${clients.map((c) => `${c.address} . ${c.port}`).join(', ')} }\n`);
  }

  async uninstall(): Promise<void> {
    if (!this.installed) return;
    this.installed = false;
    await nft(`delete table ip ${this.table}\n`);
  }
}
