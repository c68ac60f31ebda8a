/*
 * The address-takeover mover (clients completely unmodified): the servers share service
 * addresses, and a dead server's address moves with its connections.
 *
 *   choose   for each service address the dead peer answered for, every live member computes
 *            the same adopter by rendezvous hashing (takeover/choose.ts); only the adopter acts;
 *   claim    once the clients are guarded, the adopter adds the address and announces it with
 *            gratuitous ARP; restored sockets live on the adopted address itself;
 *   then the pipeline (takeover/pipeline.ts) probes right away, while the link is still idle.
 * One address, one host: heartbeats say which addresses a server answers for, each with its
 * generation (0: its own, n + 1: adopted from a holder at n). A server that hears a live peer
 * claim an address it holds at a higher generation (or the same one, and the peer wins the
 * rendezvous between the two) releases it. So a server wrongly found dead, by a report or by
 * silence, gives its address to whoever adopted it, as it gives up its connections
 * (replication/replication.ts).
 */
import type { Logger } from 'pino';
import { addAddress, gratuitousArp, removeAddress } from '../../native/index.js';
import type { ConnectionRecord, SoftStateMember } from '../../softstate/index.js';
import { chooseAdopter } from '../choose.js';
import { detect, type Trigger } from '../detect.js';
import type { Mover, TakeoverPipeline } from '../pipeline.js';

/* How often held addresses are checked against peers' claims. */
const CLAIM_CHECK_MS = 100;

export interface AddressTakeoverConfig {
  self: string;
  iface: string;
  prefixLength: number;
}

export class AddressTakeover {
  /* Service addresses this server answers for, its own and those it adopted, by generation. */
  private readonly services = new Map<string, number>();

  constructor(
    private readonly config: AddressTakeoverConfig,
    private readonly member: SoftStateMember,
    private readonly pipeline: TakeoverPipeline,
    private readonly logger: Logger,
  ) {}

  start(ownServices: readonly string[]): void {
    for (const address of ownServices) this.services.set(address, 0);
    this.publishServices();
    detect(this.member, this.config.self, this.pipeline.served, (trigger) => void this.onTrigger(trigger));
    setInterval(() => this.yieldClaims(), CLAIM_CHECK_MS).unref();
  }

  private async onTrigger(trigger: Trigger): Promise<void> {
    // Declared dead while alive: its connections come back as 'superseded' records and are let
    // go one by one; its addresses go once peers claim them (yieldClaims).
    if (trigger.kind === 'self') this.logger.warn({ declarer: trigger.declarer, reason: trigger.reason }, 'declared dead while alive: stepping back');
    if (trigger.kind === 'death') await this.onPeerDead(trigger.peer, trigger.reason, trigger.records);
  }

  /* choose: the addresses (and their connections) that fall to this server. */
  private async onPeerDead(peer: string, reason: string, records: ConnectionRecord[]): Promise<void> {
    const peers = this.member.peers();
    const live = [this.config.self, ...peers.filter((p) => p.alive && p.address !== peer).map((p) => p.address)];
    const claims = new Map((peers.find((p) => p.address === peer)?.services ?? []).map((c) => [c.address, c.generation]));
    const addresses = new Set([...claims.keys(), ...records.map((r) => r.service.address)]);
    const mine = [...addresses].filter(
      (address) => chooseAdopter(address, live) === this.config.self && (!this.services.has(address) || records.some((r) => r.service.address === address)),
    );
    this.logger.warn({ peer, reason, addresses: [...addresses], adopting: mine, connections: records.length }, 'peer dead');
    await Promise.all(mine.map((address) => this.adopt(address, (claims.get(address) ?? 0) + 1, records.filter((r) => r.service.address === address))));
  }

  private async adopt(address: string, generation: number, records: ConnectionRecord[]): Promise<void> {
    const started = performance.now();
    const steps: Record<string, number> = {};
    const lap = (name: string) => (steps[name] = +(performance.now() - started).toFixed(1));
    const mover: Mover = {
      local: (record) => record.service,
      claim: async () => {
        lap('guardMs');
        await addAddress(this.config.iface, `${address}/${this.config.prefixLength}`);
        lap('addressMs');
        this.services.set(address, generation);
        this.publishServices();
        this.announce(address);
      },
      request: ({ state, stream }) => ({ ...state, ack: (state.recvSeq + stream.received) >>> 0 }),
    };
    const taken = await this.pipeline.take(mover, records);
    lap('resumedMs');
    const resumed = taken.filter((t) => t.result === 'resumed').length;
    this.logger.info({ address, connections: records.length, resumed, ...steps }, 'address adopted');
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
