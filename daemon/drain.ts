/*
 * A planned drain (`wedge drain`, POST /drain, SIGTERM by default): every live connection goes to
 * the support group with no failure detection in the way, and then the process may exit.
 *
 *   hold     (address takeover) the service addresses held here go still: an nftables table drops
 *            every segment to and from them on the service port, so the client sees nothing move
 *            here while the group takes over, and our stack never answers it (no RST, no stale
 *            ACK); the listener closes (a new client's SYN is dropped, and retried to the new owner)
 *   settle   one short pause: requests already in the socket buffers are read and mapped
 *   fresh    every connection's record goes out again, as it stands now
 *   leave    address takeover: the member leaves its group (softstate/liveness.ts, "Leaving"), its
 *            peers take it for dead at once and adopt its addresses and connections as after a
 *            crash, but from records made a moment ago;
 *            TCP Migrate: each connection whose client runs the agent is handed off (the group
 *            races for it), the others finish here; the member leaves at the end
 *   release  the old server lets a connection go (silently) only when it hears the new owner's
 *            record, and an address only when it hears the new holder's claim
 *   end      when nothing is left, or at --drain-timeout: what is still here then is reset (loud,
 *            counted 'drain-not-moved'), and the hold is removed first so the reset reaches it.
 * Without a live peer nothing can move: the listener closes and the connections finish here
 * (within the timeout).
 */
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { EndState } from '../relay/connection.js';
import { nft } from '../takeover/nft.js';
import type { DrainView } from './admin.js';
import type { WedgeServer } from './server.js';

/* Long enough for the loop to read and map what the clients' sockets hold. */
const SETTLE_MS = 10;
const POLL_MS = 20;

/* What a drain needs of the failover machinery (daemon.ts). */
export interface DrainFailover {
  takeover: 'address' | 'migrate';
  servicePort: number;
  /* Service addresses held here now. */
  held(): string[];
  livePeers(): number;
  advertiseAll(): void;
  /* TCP Migrate: hands every movable connection to the group; returns how many. */
  handOffAll(): number;
  leave(reason: string): void;
}

const RESULT_OF: Record<EndState, 'moved' | 'finished' | 'reset'> = { relinquished: 'moved', closed: 'finished', aborted: 'reset' };

export class Drain {
  private readonly view: DrainView = { phase: 'serving', remaining: 0, moved: 0, finished: 0, reset: 0 };
  private running: Promise<void> | undefined;
  private readonly followed = new WeakSet<object>();

  constructor(
    private readonly server: WedgeServer,
    private readonly failover: DrainFailover | undefined,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
  ) {}

  /* Starts the drain (once); resolves when it is over. */
  start(trigger: string): Promise<void> {
    this.running ??= this.run(trigger);
    return this.running;
  }

  status(): DrainView {
    return { ...this.view, remaining: this.server.connections.size };
  }

  private async run(trigger: string): Promise<void> {
    const started = performance.now();
    this.view.phase = 'draining';
    this.view.startedAt = new Date().toISOString();
    this.server.metrics.drains.inc();
    this.followAll();
    const failover = this.failover;
    const peers = failover?.livePeers() ?? 0;
    this.logger.warn({ trigger, connections: this.server.connections.size, livePeers: peers, timeoutMs: this.timeoutMs }, 'draining');
    const hold = failover?.takeover === 'address' && peers > 0 ? new Hold(failover.held(), failover.servicePort) : undefined;
    await hold?.install();
    this.server.stopAccepting();
    if (failover && peers > 0) {
      await nextTurn();
      await sleep(SETTLE_MS);
      failover.advertiseAll();
      if (failover.takeover === 'address') failover.leave(`drain (${trigger})`);
      else this.logger.info({ handedOff: failover.handOffAll() }, 'drain: connections handed to the group');
    } else {
      this.logger.warn('drain: no live peer to take over; connections finish here');
    }
    const emptied = await this.emptied(started + this.timeoutMs);
    await hold?.remove();
    if (!emptied) {
      const left = [...this.server.connections.values()];
      this.logger.error({ connections: left.length, timeoutMs: this.timeoutMs }, 'drain timed out: resetting what is left');
      for (const connection of left) connection.reset('drain-not-moved');
    }
    if (failover?.takeover === 'migrate' && peers > 0) failover.leave(`drain (${trigger})`);
    this.view.phase = 'drained';
    this.view.finishedAt = new Date().toISOString();
    this.logger.warn({ ...this.status(), ms: Math.round(performance.now() - started) }, 'drained');
  }

  /* Whether everything left in time: no connection here, and no held address a live peer could take. */
  private async emptied(deadline: number): Promise<boolean> {
    const failover = this.failover;
    const done = () =>
      this.server.connections.size === 0 && (failover?.takeover !== 'address' || failover.held().length === 0 || failover.livePeers() === 0);
    while (!done()) {
      if (performance.now() >= deadline) return false;
      this.followAll();
      await sleep(POLL_MS);
    }
    return true;
  }

  /* Counts how each connection ends, those adopted meanwhile (a peer died during the drain) too. */
  private followAll(): void {
    for (const connection of this.server.connections.values()) {
      if (this.followed.has(connection)) continue;
      this.followed.add(connection);
      connection.once('ended', (state) => {
        const result = RESULT_OF[state];
        this.view[result]++;
        this.server.metrics.drainedConnections.inc({ result });
      });
    }
  }
}

/* The nftables table that keeps the held service addresses still (one per process). */
class Hold {
  private readonly table = `wedge_drain_${process.pid}`;

  constructor(
    private readonly addresses: readonly string[],
    private readonly port: number,
  ) {}

  async install(): Promise<void> {
    if (this.addresses.length === 0) return;
    const set = `{ ${this.addresses.join(', ')} }`;
    await nft(
      `table ip ${this.table} {\n` +
        `  chain in { type filter hook input priority -300; ip daddr ${set} tcp dport ${this.port} drop; }\n` +
        `  chain out { type filter hook output priority -300; ip saddr ${set} tcp sport ${this.port} drop; }\n` +
        `}\n`,
    );
  }

  async remove(): Promise<void> {
    if (this.addresses.length === 0) return;
    await nft(`delete table ip ${this.table}\n`);
  }
}
