import { MigrateSynCapture, sendTcpSegment, TCP_ACK, TCP_RST, TCP_SYN, type CapturedSyn } from '../../native/migrate.js';
import type { ConnectionBinding, ConnectionKeys } from '../migrate/negotiation.js';
import { findMigrateOption, MIGRATE_EXID, verifyMigrateOption, type Endpoint } from '../migrate/option.js';
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
 * it is wedge/agent/run-agent.ts).
 *
 * The agent keeps a table of negotiated connections (binding + key + token, from
 * wedge/migrate/negotiation.ts) keyed by token. It captures Migrate SYNs to the client address
 * (native MigrateSynCapture) and, for each, in this order:
 *   1. parses the option (malformed / absent: reject);
 *   2. looks the token up (unknown: reject);
 *   3. checks the SYN is addressed to that connection's client port;
 *   4. verifies the MAC with the connection's key over: client, the server the connection
 *      currently talks to (the "old server"), the SYN's source (the "new server"), token,
 *      request number, the SYN's seq and ack (wrong: reject);
 *   5. at-most-once: the request number must exceed the last accepted one (else: duplicate).
 * Only then, the first valid request wins: the agent installs the rewrite (wedge/agent/rules.ts)
 * so the unmodified client socket now talks to the new server, records the request number and
 * the new current server, and answers SYN-ACK (seq = the SYN's ack - 1, ack = the SYN's seq + 1,
 * confirming both positions the server claimed). The new server learns the client's exact
 * state by probing through the rewrite (native/probe), as in address takeover.
 * Every rejection is answered with a RST (sequence 0, ack = the SYN's seq + 1) from the client
 * address to the SYN's sender, counted by reason, and changes nothing else: the client socket and
 * the rules are untouched, and even if the sender is the connection's current peer (a replay from
 * its address), a RST with sequence 0 is outside its receive window and is ignored there
 * (RFC 5961). The client kernel never sees Migrate SYNs (the base table drops them after capture).
 * Connections come from wedge/agent/learner.ts (register), which also ends them (forget).
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
  lastRequest: number;
  mark: number;
  rewritten: boolean;
}

export type AgentEvent =
  | { kind: 'rejected'; reason: SynRejection; syn: CapturedSyn }
  | { kind: 'migrated'; token: string; request: number; from: Endpoint; to: Endpoint }
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
  /** Serialises SYN handling: a second SYN waits until the first one's rules are in place. */
  private work: Promise<void> = Promise.resolve();

  constructor(private readonly options: AgentOptions) {
    this.table = options.table ?? agentTableName();
  }

  async start(): Promise<void> {
    await runNft(baseTableText(this.table, this.options.address));
    this.capture = MigrateSynCapture.start(
      { address: this.options.address, exid: MIGRATE_EXID, ifname: this.options.ifname },
      (syn) => {
        this.work = this.work.then(() => this.handle(syn)).catch((error: Error) => this.options.onEvent?.({ kind: 'error', error }));
      },
      (error) => this.options.onEvent?.({ kind: 'error', error }),
    );
  }

  /** Adds a negotiated connection. */
  register(connection: AgentConnection): void {
    this.connections.set(connection.keys.token.toString('hex'), {
      binding: connection.binding,
      keys: connection.keys,
      current: connection.binding.server,
      lastRequest: 0,
      mark: MARK_BASE | (this.nextMark++ & 0xffff),
      rewritten: false,
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
    if (tracked?.rewritten) await runNft(removeRewriteText(this.table, id));
  }

  /** Stops capturing and removes the agent's table. */
  async stop(): Promise<void> {
    this.capture?.stop();
    this.capture = undefined;
    await this.work;
    await runNft(deleteTableText(this.table));
  }

  private async handle(syn: CapturedSyn): Promise<void> {
    const decoded = findMigrateOption(syn.options);
    if (!decoded.ok) return this.reject(syn, 'bad-option');
    const { option } = decoded;
    const id = option.token.toString('hex');
    const tracked = this.connections.get(id);
    if (!tracked) return this.reject(syn, 'unknown-token');
    if (syn.destinationPort !== tracked.binding.client.port) return this.reject(syn, 'wrong-port');
    const newServer = { address: syn.sourceAddress, port: syn.sourcePort };
    const fields = { client: tracked.binding.client, oldServer: tracked.current, newServer, seq: syn.seq, ack: syn.ack };
    if (!verifyMigrateOption(tracked.keys.key, fields, option)) return this.reject(syn, 'bad-mac');
    if (option.request <= tracked.lastRequest) return this.reject(syn, 'duplicate-request');

    await runNft(rewriteText(this.table, { id, client: tracked.binding.client, original: tracked.binding.server, current: newServer, mark: tracked.mark }));
    const from = tracked.current;
    tracked.lastRequest = option.request;
    tracked.current = newServer;
    tracked.rewritten = true;
    sendTcpSegment({
      localAddress: tracked.binding.client.address,
      localPort: tracked.binding.client.port,
      remoteAddress: newServer.address,
      remotePort: newServer.port,
      seq: (syn.ack - 1) >>> 0,
      ack: (syn.seq + 1) >>> 0,
      flags: TCP_SYN | TCP_ACK,
    });
    this.options.onEvent?.({ kind: 'migrated', token: id, request: option.request, from, to: newServer });
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
