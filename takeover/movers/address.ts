/*
 * The address-takeover mover (clients completely unmodified): the servers share service
 * addresses, and a dead server's address moves with its connections.
 *
 * Ownership. Heartbeats say which service addresses a server answers for, each with its
 * generation (0: its own, n + 1: adopted from a holder at n); the last claims of a dead peer are
 * remembered. An address is orphaned when no live member claims it. Whenever a peer dies, each
 * member looks at every address, not only the dead peer's:
 *   choose   an orphaned address falls to the first live member in rendezvous order
 *            (takeover/choose.ts): every member computes the same one without talking. If that
 *            adopter dies too before its claim is heard (a quick cascade: s2 dies 0.3 s after s1),
 *            its death leaves s1's address orphaned still, and the next candidate takes it;
 *   with it  go the connections on that address whose owner is dead and that are not served
 *            here: the dead holder's, and those a dead adopter took and published already (the
 *            table keeps the newer version). Records outlive their owner by up to the soft-state
 *            expiry (10 s), so a cascade finds them. A holder takes such connections on the
 *            addresses it holds, too; each record version is tried once;
 *   claim    once the clients are guarded, the adopter adds the address and announces it with
 *            gratuitous ARP; restored sockets live on the adopted address itself;
 *   then the pipeline (takeover/pipeline.ts) probes right away, while the link is still idle.
 * Only service addresses move. The wedge listens on every address, so a client may use a
 * server's own one; a connection whose address its owner does not claim (or, adopted before, no
 * member claims) is not taken ('not-service-address'), and no server's own address is added.
 * One address, one host: a server that hears a live peer claim an address it holds at a higher
 * generation (or the same one, and the peer wins the rendezvous between the two) releases it. So
 * a server wrongly found dead gives its address to whoever adopted it, as it gives up its
 * connections (replication/replication.ts), and of two adopters that acted at once (each thought
 * the other dead) one keeps it.
 */
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import { addAddress, gratuitousArp, removeAddress } from '../../native/index.js';
import type { ConnectionRecord, ServiceClaim, SoftStateMember } from '../../softstate/index.js';
import { chooseAdopter } from '../choose.js';
import { detect, type Trigger } from '../detect.js';
import type { Mover, TakeoverPipeline } from '../pipeline.js';

/* How often held addresses are checked against peers' claims. */
const CLAIM_CHECK_MS = 100;
/* A record version tried here is not tried again (more deaths may follow while it is in the
 * table): remembered well past the table's expiry. */
const TRIED_FOR_MS = 60_000;

export interface AddressTakeoverConfig {
  self: string;
  iface: string;
  prefixLength: number;
}

/* Every claim heard for one address: the highest generation, and whether a live member makes one. */
interface Claimed {
  generation: number;
  live: boolean;
}

export class AddressTakeover {
  /* Service addresses this server answers for, its own and those it adopted, by generation. */
  private readonly services = new Map<string, number>();
  /* Addresses whose adoption is under way (claimed once their clients are guarded). */
  private readonly adopting = new Set<string>();
  /* `${id}#${migration}` of the record versions taken (or refused) here. */
  private readonly tried = new Set<string>();

  constructor(
    private readonly config: AddressTakeoverConfig,
    private readonly member: SoftStateMember,
    private readonly pipeline: TakeoverPipeline,
    private readonly logger: Logger,
  ) {}

  /*
   * Own service addresses present on the interface are claimed at once. One that is not (this
   * server drained or died, and a peer holds it now) is left to its holder; if, once the peers
   * have been heard, no live one claims it, this server takes it back.
   */
  start(ownServices: readonly string[], inherited?: readonly ServiceClaim[]): void {
    const present = new Set(addressesOn(this.config.iface));
    // An in-place upgrade carries the predecessor's claims on, at their generations.
    for (const claim of inherited ?? []) this.services.set(claim.address, claim.generation);
    for (const address of inherited ? [] : ownServices) {
      if (present.has(address)) this.services.set(address, 0);
      else setTimeout(() => void this.reclaim(address).catch((err: Error) => this.logger.error({ address, err: err.message }, 'cannot take back own service address')), this.member.deadAfterMs + 2 * this.member.heartbeatIntervalMs).unref();
    }
    this.publishServices();
    detect(this.member, this.config.self, this.pipeline.served, (trigger) => void this.onTrigger(trigger));
    setInterval(() => this.yieldClaims(), CLAIM_CHECK_MS).unref();
  }

  /* The service addresses this server holds now (its own and adopted ones). */
  held(): string[] {
    return [...this.services.keys()];
  }

  /* The same, with their generations (what an in-place upgrade carries on). */
  claims(): ServiceClaim[] {
    return [...this.services].map(([address, generation]) => ({ address, generation }));
  }

  private async onTrigger(trigger: Trigger): Promise<void> {
    // Declared dead while alive: its connections come back as 'superseded' records and are let
    // go one by one; its addresses go once peers claim them (yieldClaims).
    if (trigger.kind === 'self') this.logger.warn({ declarer: trigger.declarer, reason: trigger.reason }, 'declared dead while alive: stepping back');
    if (trigger.kind === 'death') await this.onPeerDead(trigger.peer, trigger.reason);
  }

  /* choose: the orphaned addresses that fall to this server, and the dead owners' connections on
   * addresses it adopts or holds. */
  private async onPeerDead(peer: string, reason: string): Promise<void> {
    const peers = this.member.peers();
    const self = this.config.self;
    const live = [self, ...peers.filter((p) => p.alive).map((p) => p.address)];
    const claimed = new Map<string, Claimed>();
    const claim = (address: string, generation: number, byLive: boolean) => {
      const known = claimed.get(address);
      claimed.set(address, { generation: Math.max(generation, known?.generation ?? 0), live: byLive || (known?.live ?? false) });
    };
    for (const [address, generation] of this.services) claim(address, generation, true);
    for (const p of peers) for (const c of p.services) claim(c.address, c.generation, p.alive);
    const ours = (address: string) => this.services.has(address) || this.adopting.has(address);

    // Orphaned addresses this server wins adopt at the next generation; held ones keep theirs.
    const adoptions = new Map<string, { generation: number | undefined; records: ConnectionRecord[] }>();
    for (const [address, { generation, live: held }] of claimed) {
      if (!held && !ours(address) && chooseAdopter(address, live) === self) adoptions.set(address, { generation: generation + 1, records: [] });
    }
    const dead = new Set(peers.filter((p) => !p.alive).map((p) => p.address));
    const claimsOf = new Map(peers.map((p) => [p.address, new Set(p.services.map((c) => c.address))]));
    for (const record of this.member.records()) {
      const key = `${record.id}#${record.migration}`;
      if (!dead.has(record.owner) || this.tried.has(key) || this.pipeline.served.serves(record.id)) continue;
      const address = record.service.address;
      const service = claimsOf.get(record.owner)?.has(address) || (record.migration > 0 && claimed.has(address));
      if (!service) {
        if (chooseAdopter(address, live) !== self) continue;
        this.remember(key);
        this.pipeline.count('not-service-address');
        this.logger.warn({ conn: record.id, owner: record.owner, address }, 'not a service address of its owner: not taken');
        continue;
      }
      const adoption = adoptions.get(address) ?? (ours(address) ? { generation: undefined, records: [] } : undefined);
      if (!adoption) continue;
      this.remember(key);
      adoption.records.push(record);
      adoptions.set(address, adoption);
    }
    const orphaned = [...claimed].filter(([, c]) => !c.live).map(([address]) => address);
    const connections = [...adoptions.values()].reduce((n, a) => n + a.records.length, 0);
    this.logger.warn({ peer, reason, orphaned, adopting: [...adoptions.keys()], connections }, 'peer dead');
    await Promise.all([...adoptions].map(([address, { generation, records }]) => this.adopt(address, generation, records)));
  }

  private remember(key: string): void {
    this.tried.add(key);
    setTimeout(() => this.tried.delete(key), TRIED_FOR_MS).unref();
  }

  /* `generation`: the claim to make, or undefined for an address this server holds already. */
  private async adopt(address: string, generation: number | undefined, records: ConnectionRecord[]): Promise<void> {
    const started = performance.now();
    const steps: Record<string, number> = {};
    const lap = (name: string) => (steps[name] = +(performance.now() - started).toFixed(1));
    const mover: Mover = {
      local: (record) => record.service,
      claim: async () => {
        lap('guardMs');
        await addAddress(this.config.iface, `${address}/${this.config.prefixLength}`);
        lap('addressMs');
        if (generation !== undefined) this.services.set(address, generation);
        this.publishServices();
        this.announce(address);
      },
      request: ({ state, stream }) => ({ ...state, ack: (state.recvSeq + stream.received) >>> 0 }),
    };
    if (generation !== undefined) this.adopting.add(address);
    try {
      const taken = await this.pipeline.take(mover, records);
      lap('resumedMs');
      const resumed = taken.filter((t) => t.result === 'resumed').length;
      this.logger.info({ address, generation, connections: records.length, resumed, ...steps }, 'address adopted');
    } finally {
      if (generation !== undefined) this.adopting.delete(address);
    }
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

  private async reclaim(address: string): Promise<void> {
    const holder = this.member.peers().find((p) => p.alive && p.services.some((c) => c.address === address));
    if (holder || this.services.has(address) || this.adopting.has(address)) {
      this.logger.info({ address, holder: holder?.address }, 'own service address held by a peer: left there');
      return;
    }
    await addAddress(this.config.iface, `${address}/${this.config.prefixLength}`);
    this.services.set(address, 0);
    this.publishServices();
    this.announce(address);
    this.logger.warn({ address }, 'own service address held by no live peer: taken back');
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

function addressesOn(iface: string): string[] {
  return (networkInterfaces()[iface] ?? []).filter((e) => e.family === 'IPv4').map((e) => e.address);
}
