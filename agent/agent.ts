import { MigrateSynCapture, sendTcpSegment, TCP_ACK, TCP_RST, TCP_SYN, type CapturedSyn } from '../native/migrate.js';
import type { ConnectionBinding, ConnectionKeys } from '../migrate/negotiation.js';
import { findMigrateOption, isInvitation, MIGRATE_EXID, verifyMigrateOption, type Endpoint } from '../migrate/option.js';
import {
  agentTableName,
  baseTableText,
  deleteTableText,
  removeRewriteText,
  rewriteText,
  runNft,
} from './rules.js';

/*
 * Theory of operation: the TCP Migrate client agent's core (`wedge agent`; the process around
 * it is agent/run-agent.ts).
 *
 * The agent keeps a table of negotiated connections (binding + key + token, from
 * migrate/negotiation.ts) keyed by token. It captures Migrate SYNs to the client address
 * (native MigrateSynCapture) and, for each, in this order:
 *   1. parses the option (malformed / absent: reject); an invitation (all-zero token) is only
 *      reported: the learner may run that connection's key exchange with its sender;
 *   2. looks the token up (unknown: reject);
 *   3. checks the SYN is addressed to that connection's client port;
 *   4. verifies the MAC with the connection's key over: client, the server the connection
 *      currently talks to (the "old server"), the SYN's source (the "new server"), token,
 *      request number, the SYN's seq and ack (wrong: reject);
 *   5. at-most-once: the request number must exceed the last accepted one (else: duplicate).
 * Only then, the first valid request wins: the agent records at once the request number and the
 * new current server (so that competing candidates' SYNs, arriving meanwhile, are refused), then
 * installs the rewrite (agent/rules.ts) so the unmodified client socket now talks to the
 * new server, and answers SYN-ACK (seq = the SYN's ack - 1, ack = the SYN's seq + 1, confirming
 * both positions the server claimed). The new server learns the client's exact state by
 * probing through the rewrite (native/probe), as in address takeover. Rewrites accepted while
 * nft runs are installed together in the next transaction: a dead server's hundreds of
 * connections cost a few nft runs, not one each, so every winner hears back before it gives up.
 * The winner resends its SYN while it waits; a SYN equal to the accepted one (same sender,
 * request, MAC) is answered with the same SYN-ACK again once the rewrite is in place, and changes
 * nothing: it is a retransmission, and a replay of it gains nobody anything. A later SYN valid for
 * the connection as it was before the accepted move is a candidate that lost: 'duplicate-request'.
 * Every rejection is answered with a RST (sequence 0, ack = the SYN's seq + 1) from the client
 * address to the SYN's sender, counted by reason, and changes nothing else: the client socket and
 * the rules are untouched, and even if the sender is the connection's current peer (a replay from
 * its address), a RST with sequence 0 is outside its receive window and is ignored there
 * (RFC 5961). The client kernel never sees Migrate SYNs (the base table drops them after capture).
 * Connections come from agent/learner.ts (register), which also ends them (forget).
 * Not yet: authenticating the SYN-ACK.
 */

export type SynRejection = 'bad-option' | 'unknown-token' | 'wrong-port' | 'bad-mac' | 'duplicate-request';

export interface AgentConnection {
  binding: ConnectionBinding;
  keys: ConnectionKeys;
}

interface Tracked {
  binding: ConnectionBinding;
  keys: ConnectionKeys;
  current: Endpoint;
  /* The server before the last accepted move (the original one before any). */
  previous: Endpoint;
  lastRequest: number;
  /* The last accepted Migrate SYN, answered again if it is retransmitted. */
  accepted?: CapturedSyn;
  mark: number;
  rewritten: boolean;
  /* Its rewrite waits for the next nft transaction. */
  installing: boolean;
}

/* An accepted move whose rewrite is not installed yet. */
interface Accepted {
  id: string;
  tracked: Tracked;
  syn: CapturedSyn;
  from: Endpoint;
}

export type AgentEvent =
  | { kind: 'rejected'; reason: SynRejection; syn: CapturedSyn }
  | { kind: 'migrated'; token: string; request: number; from: Endpoint; to: Endpoint }
  | { kind: 'repeated'; token: string; request: number; to: Endpoint }
  /* A replica asks to run a connection's key exchange with it (migrate/option.ts: invitations). */
  | { kind: 'invited'; syn: CapturedSyn }
  | { kind: 'error'; error: Error };

export interface AgentOptions {
  /** The client host's IPv4 address (the one its connections use). */
  address: string;
  ifname?: string;
  table?: string;
  onEvent?: (event: AgentEvent) => void;
}

const MARK_BASE = 0x57450000;

export class MigrateAgent {
  readonly table: string;
  readonly rejected = new Map<SynRejection, number>();
  private readonly connections = new Map<string, Tracked>();
  private capture: MigrateSynCapture | undefined;
  private nextMark = 1;
  /** Accepted moves waiting for the next nft transaction. */
  private accepted: Accepted[] = [];
  /** Serialises nft transactions (rule installs, removals, the table's end). */
  private work: Promise<void> = Promise.resolve();

  constructor(private readonly options: AgentOptions) {
    this.table = options.table ?? agentTableName();
  }

  async start(): Promise<void> {
    await runNft(baseTableText(this.table, this.options.address));
    this.capture = MigrateSynCapture.start(
      { address: this.options.address, exid: MIGRATE_EXID, ifname: this.options.ifname },
      (syn) => this.handle(syn),
      (error) => this.options.onEvent?.({ kind: 'error', error }),
    );
  }

  /** Adds a negotiated connection. */
  register(connection: AgentConnection): void {
    this.connections.set(connection.keys.token.toString('hex'), {
      binding: connection.binding,
      keys: connection.keys,
      current: connection.binding.server,
      previous: connection.binding.server,
      lastRequest: 0,
      mark: MARK_BASE | (this.nextMark++ & 0xffff),
      rewritten: false,
      installing: false,
    });
  }

  /** The number of registered connections. */
  get size(): number {
    return this.connections.size;
  }

  /** The server a registered connection talks to now (its original one until it migrates). */
  currentServer(token: Buffer): Endpoint | undefined {
    return this.connections.get(token.toString('hex'))?.current;
  }

  /** The connection ended: drops it and its rules. */
  async forget(token: Buffer): Promise<void> {
    const id = token.toString('hex');
    const tracked = this.connections.get(id);
    this.connections.delete(id);
    // After any install still queued for it, so that no chain outlives the connection.
    const removal = this.work.then(() => (tracked?.rewritten ? runNft(removeRewriteText(this.table, id)) : undefined));
    this.work = removal.catch(() => undefined);
    await removal;
  }

  /** Stops capturing and removes the agent's table. */
  async stop(): Promise<void> {
    this.capture?.stop();
    this.capture = undefined;
    await this.work;
    await runNft(deleteTableText(this.table));
  }

  private handle(syn: CapturedSyn): void {
    const decoded = findMigrateOption(syn.options);
    if (!decoded.ok) return this.reject(syn, 'bad-option');
    const { option } = decoded;
    if (isInvitation(option)) {
      this.options.onEvent?.({ kind: 'invited', syn });
      return;
    }
    const id = option.token.toString('hex');
    const tracked = this.connections.get(id);
    if (!tracked) return this.reject(syn, 'unknown-token');
    if (syn.destinationPort !== tracked.binding.client.port) return this.reject(syn, 'wrong-port');
    const newServer = { address: syn.sourceAddress, port: syn.sourcePort };
    const macFor = (oldServer: Endpoint) =>
      verifyMigrateOption(tracked.keys.key, { client: tracked.binding.client, oldServer, newServer, seq: syn.seq, ack: syn.ack }, option);
    if (!macFor(tracked.current)) {
      if (tracked.lastRequest === 0 || !macFor(tracked.previous)) return this.reject(syn, 'bad-mac');
      if (isRetransmission(syn, tracked.accepted)) {
        if (!tracked.installing) this.answer(tracked, syn);
        this.options.onEvent?.({ kind: 'repeated', token: id, request: option.request, to: newServer });
        return;
      }
      return this.reject(syn, 'duplicate-request');
    }
    if (option.request <= tracked.lastRequest) return this.reject(syn, 'duplicate-request');

    this.accepted.push({ id, tracked, syn, from: tracked.current });
    tracked.previous = tracked.current;
    tracked.current = newServer;
    tracked.lastRequest = option.request;
    tracked.accepted = syn;
    tracked.installing = true;
    if (this.accepted.length === 1) this.work = this.work.then(() => this.install()).catch((error: Error) => this.options.onEvent?.({ kind: 'error', error }));
  }

  /* One nft transaction for every move accepted so far, then their SYN-ACKs. */
  private async install(): Promise<void> {
    const batch = this.accepted;
    this.accepted = [];
    const rewrites = batch.map(({ id, tracked }) =>
      rewriteText(this.table, { id, client: tracked.binding.client, original: tracked.binding.server, current: tracked.current, mark: tracked.mark }),
    );
    await runNft(rewrites.join(''));
    for (const { id, tracked, syn, from } of batch) {
      tracked.rewritten = true;
      tracked.installing = false;
      this.answer(tracked, syn);
      this.options.onEvent?.({ kind: 'migrated', token: id, request: tracked.lastRequest, from, to: tracked.current });
    }
  }

  private answer(tracked: Tracked, syn: CapturedSyn): void {
    sendTcpSegment({
      localAddress: tracked.binding.client.address,
      localPort: tracked.binding.client.port,
      remoteAddress: syn.sourceAddress,
      remotePort: syn.sourcePort,
      seq: (syn.ack - 1) >>> 0,
      ack: (syn.seq + 1) >>> 0,
      flags: TCP_SYN | TCP_ACK,
    });
  }

  private reject(syn: CapturedSyn, reason: SynRejection): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    sendTcpSegment({
      localAddress: syn.destinationAddress,
      localPort: syn.destinationPort,
      remoteAddress: syn.sourceAddress,
      remotePort: syn.sourcePort,
      seq: 0,
      ack: (syn.seq + 1) >>> 0,
      flags: TCP_RST | TCP_ACK,
    });
    this.options.onEvent?.({ kind: 'rejected', reason, syn });
  }
}

/* The same segment as the accepted Migrate SYN, from the same sender: its retransmission. */
function isRetransmission(syn: CapturedSyn, accepted: CapturedSyn | undefined): boolean {
  return (
    accepted !== undefined &&
    syn.sourceAddress === accepted.sourceAddress &&
    syn.sourcePort === accepted.sourcePort &&
    syn.seq === accepted.seq &&
    syn.ack === accepted.ack &&
    syn.options.equals(accepted.options)
  );
}
