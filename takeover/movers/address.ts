/*
 * Theory of operation: address takeover (clients completely unmodified).
 *
 *   detect   the soft-state member reports a peer dead (silent, restarted, or declared dead by
 *            an operator, possibly by mistake);
 *   choose   for each service address the dead peer answered for, every live member computes
 *            the same adopter by rendezvous hashing (takeover/choose.ts); only the adopter acts;
 *   guard    our stack's RSTs to the clients being adopted are dropped (takeover/guard.ts)
 *            until their sockets exist here;
 *   address  the adopter adds the address and announces it with gratuitous ARP;
 *   probe    for all advertised connections of the address at once, right after it is
 *            announced and while the link is still idle, one old segment each makes the client's
 *            kernel tell its next wanted byte and its own next byte, and the same native worker
 *            restores each answered connection at once (native/probe-restore, one batch);
 *   resume   then connection by connection, yielding to the event loop every few: resume and
 *            publish (takeover/resume.ts).
 * One address, one host: heartbeats say which addresses a server answers for, each with its
 * generation (0: its own, n + 1: adopted from a holder at n). A server that hears a live peer
 * claim an address it holds at a higher generation (or the same one, and the peer wins the
 * rendezvous between the two) releases it. So a server wrongly found dead, by a report or by
 * silence, gives its address to whoever adopted it, as it gives up its connections.
 */
import { setImmediate } from 'node:timers/promises';
import type { Logger } from 'pino';
import { addAddress, gratuitousArp, probeAndRestore, removeAddress } from '../../native/index.js';
import type { ConnectionRecord, SoftStateMember } from '../../softstate/index.js';
import { chooseAdopter } from '../choose.js';
import type { Resumer } from '../resume.js';
import { RESTORED_MARK, type RstGuard } from '../guard.js';
import type { WedgeServer } from '../../daemon/server.js';

/* How often held addresses are checked against peers' claims. */
const CLAIM_CHECK_MS = 100;

/* Connections probed in one batch, at most: each holds a placeholder fd while it waits. */
const MAX_PROBE_BATCH = 2048;

export interface TakeoverConfig {
  self: string;
  iface: string;
  prefixLength: number;
  probeTimeoutMs: number;
  probeRetries: number;
  /* Connections resumed in one turn of the event loop, between yields. Large turns
   * finish a mass takeover sooner (the I/O of connections already resumed waits meanwhile, but
   * their bodies move in the kernel, and heartbeats come from their own thread). */
  resumesPerTurn: number;
}

export class Takeover {
  /* Service addresses this server answers for, its own and those it adopted, by generation. */
  private readonly services = new Map<string, number>();

  constructor(
    private readonly config: TakeoverConfig,
    private readonly member: SoftStateMember,
    private readonly server: WedgeServer,
    private readonly resumer: Resumer,
    private readonly guard: RstGuard,
    private readonly logger: Logger,
  ) {}

  start(ownServices: readonly string[]): void {
    for (const address of ownServices) this.services.set(address, 0);
    this.publishServices();
    this.member.on('peer-dead', (peer, reason) => void this.onPeerDead(peer, reason));
    // Its connections come back as 'superseded' records and are let go one by one
    // (replication/replication.ts); its addresses go once peers claim them (yieldClaims).
    this.member.on('declared-dead-self', (declarer, reason) => this.logger.warn({ declarer, reason }, 'declared dead while alive: stepping back'));
    setInterval(() => this.yieldClaims(), CLAIM_CHECK_MS).unref();
  }

  /* Releases every held address a live peer holds by a newer claim. */
  private yieldClaims(): void {
    for (const peer of this.member.peers()) {
      if (!peer.alive) continue;
      for (const claim of peer.services) {
        const mine = this.services.get(claim.address);
        if (mine === undefined || claim.generation < mine) continue;
        if (claim.generation > mine || chooseAdopter(claim.address, [this.config.self, peer.address]) !== this.config.self) {
          void this.release(claim.address, peer.address);
        }
      }
    }
  }

  /* detect → choose */
  private async onPeerDead(peer: string, reason: string): Promise<void> {
    const peers = this.member.peers();
    const live = [this.config.self, ...peers.filter((p) => p.alive && p.address !== peer).map((p) => p.address)];
    // A peer can be reported dead again (late heartbeats made it look alive for a moment):
    // connections already taken over here are served here, not taken again.
    const records = this.member.recordsOwnedBy(peer).filter((r) => !this.server.connections.has(r.id));
    const claims = new Map((peers.find((p) => p.address === peer)?.services ?? []).map((c) => [c.address, c.generation]));
    const addresses = new Set([...claims.keys(), ...records.map((r) => r.service.address)]);
    const mine = [...addresses].filter(
      (address) => chooseAdopter(address, live) === this.config.self && (!this.services.has(address) || records.some((r) => r.service.address === address)),
    );
    this.logger.warn({ peer, reason, addresses: [...addresses], adopting: mine, connections: records.length }, 'peer dead');
    await Promise.all(mine.map((address) => this.adoptAddress(address, (claims.get(address) ?? 0) + 1, records.filter((r) => r.service.address === address))));
  }

  /* guard → address → probe and restore all → resume each connection */
  private async adoptAddress(address: string, generation: number, records: ConnectionRecord[]): Promise<void> {
    const started = performance.now();
    const clients = records.map((r) => r.client);
    const steps: Record<string, number> = {};
    const lap = (name: string) => (steps[name] = +(performance.now() - started).toFixed(1));
    try {
      await this.guard.guard(clients);
      lap('guardMs');
      await addAddress(this.config.iface, `${address}/${this.config.prefixLength}`);
      lap('addressMs');
    } catch (err) {
      this.logger.error({ address, err: (err as Error).message }, 'cannot adopt address');
      for (const _ of records) this.resumer.count('address-failed', 0);
      return;
    }
    this.services.set(address, generation);
    this.publishServices();
    this.announce(address);
    const results: string[] = [];
    for (let first = 0; first < records.length; first += MAX_PROBE_BATCH) {
      results.push(...(await this.adoptBatch(records.slice(first, first + MAX_PROBE_BATCH))));
    }
    lap('resumedMs');
    const resumed = results.filter((r) => r === 'resumed').length;
    this.logger.info({ address, connections: records.length, resumed, ...steps }, 'address adopted');
  }

  /* probe and restore (the whole batch at once, off the event loop) → resume, connection by connection */
  private async adoptBatch(records: ConnectionRecord[]): Promise<string[]> {
    const started = performance.now();
    const adoptees = this.resumer.adoptees(records);
    const probes = await probeAndRestore(
      adoptees.map(({ state, stream }) => ({ ...state, ack: (state.recvSeq + stream.received) >>> 0 })),
      { ifname: this.config.iface, timeoutMs: this.config.probeTimeoutMs, retries: this.config.probeRetries, mark: RESTORED_MARK },
    );
    const probeMs = performance.now() - started;
    const results: string[] = [];
    for (const [i, adoptee] of adoptees.entries()) {
      // Let timers and I/O run between turns: the connections served meanwhile wait at most one
      // turn (a few hundred milliseconds for 256).
      if (i > 0 && i % this.config.resumesPerTurn === 0) await setImmediate();
      const resumeStarted = performance.now();
      let result: string;
      try {
        result = this.resumer.resume(adoptee, probes[i]!, probeMs);
      } catch (err) {
        this.logger.warn({ conn: adoptee.record.id, err: (err as Error).message }, 'takeover failed');
        result = 'failed';
      }
      results.push(this.resumer.count(result, probeMs + performance.now() - resumeStarted));
    }
    return results;
  }

  /* Gratuitous ARP now and twice more, in case the first is lost. */
  private announce(address: string): void {
    const send = () => {
      try {
        gratuitousArp(this.config.iface, address);
      } catch (err) {
        this.logger.warn({ address, err: (err as Error).message }, 'gratuitous ARP failed');
      }
    };
    send();
    setTimeout(send, 100).unref();
    setTimeout(send, 500).unref();
  }

  private async release(address: string, holder: string): Promise<void> {
    if (!this.services.delete(address)) return;
    this.publishServices();
    this.logger.warn({ address, holder }, 'releasing a service address adopted by a peer');
    await removeAddress(this.config.iface, `${address}/${this.config.prefixLength}`).catch((err: Error) =>
      this.logger.error({ address, err: err.message }, 'cannot remove address'),
    );
  }

  private publishServices(): void {
    this.member.setServices([...this.services].map(([address, generation]) => ({ address, generation })));
  }
}
