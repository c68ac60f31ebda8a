import { SynAckCapture, type CapturedSegment } from '../native/migrate.js';
import type { NativeError } from '../native/errors.js';
import type { ConnectionBinding, ConnectionKeys, TrustedServiceKeys } from '../migrate/negotiation.js';
import { isRefusal, negotiateConnectionKey } from '../migrate/transport.js';
import { readOpenSockets, socketKey } from './client-sockets.js';
import type { AgentConnection } from './agent.js';
import type { Endpoint } from '../migrate/option.js';

/*
 * Theory of operation: how the agent finds the client host's connections to Wedge services by
 * itself, and notices when they end.
 *
 * Start: every connection the client opens to a service port shows as the server's SYN-ACK,
 * captured natively (SynAckCapture, its own thread). It names the connection as the client
 * socket sees it and carries both ISNs: client = its destination, server = its source,
 * clientIsn = ack - 1, serverIsn = seq. The agent then runs the key exchange with that server
 * (negotiateConnectionKey, signed by a trusted service key) and registers the negotiated
 * connection with the MigrateAgent. A server that does not answer (not a Wedge, or a Wedge
 * without a migrate key) leaves the connection unnegotiated: counted and logged, never an error.
 * The client's connection itself is never touched either way; the agent only watches.
 * Connections are keyed by their 4-tuple: a SYN-ACK with the ISNs of a known connection is a
 * retransmission (the client's ACK was lost) and starts nothing.
 *
 * A SYN-ACK is only a claim (anyone on the path can send one), so it is checked before it moves
 * anything: a 4-tuple the client has no socket for starts nothing (else a spoofed SYN-ACK would
 * make the agent send key-exchange datagrams to whatever address it names: an amplifier), and one
 * with other ISNs than a known connection replaces it only once its server has answered the key
 * exchange for exactly those ISNs (a reused 4-tuple): a forged one must not make the agent forget
 * a live connection or drop its rewrite. Both are reported as ignored, with the reason.
 *
 * End: every pollMs the agent reads the client's own sockets (/proc/net/tcp, client-sockets.ts)
 * and forgets each connection whose socket is gone or in TIME_WAIT / CLOSE, which removes its
 * rewrite rules. Unnegotiated connections are remembered until then too (so that retransmitted
 * SYN-ACKs stay ignored), but they were never registered. A connection learned while a poll was
 * reading is judged by the next poll, not by a list read before it existed.
 *
 * Silent servers: a server whose host refuses the key exchange's port is no Wedge with TCP
 * Migrate, and its connections are left alone. One that does not answer at all may have died
 * before the exchange finished (the connection's first milliseconds): then no replica holds the
 * connection's key and none can move it. Such connections are listed by silent() for the
 * OrphanWatch, which retries the exchange (retry()) before it gives up on one. And the replica
 * that adopts such a connection invites the agent (a Migrate SYN with the all-zero token,
 * migrate/option.ts) to run the exchange with it instead: invited(). The replica signs its
 * answer with the service key like the server would have, so the connection gets its key after
 * all and moves normally.
 */

export type LearnerEvent =
  | { kind: 'learned'; binding: ConnectionBinding }
  | { kind: 'negotiated'; binding: ConnectionBinding; keys: ConnectionKeys }
  | { kind: 'unnegotiated'; binding: ConnectionBinding; error: Error }
  | { kind: 'forgotten'; binding: ConnectionBinding; keys: ConnectionKeys }
  | { kind: 'ignored'; binding: ConnectionBinding; reason: 'no-socket' | 'not-a-reuse' }
  | { kind: 'invitation'; binding: ConnectionBinding; via: string; accepted: boolean }
  | { kind: 'error'; error: Error };

/** Where negotiated connections go (the MigrateAgent). */
export interface ConnectionRegistry {
  register(connection: AgentConnection): void;
  forget(token: Buffer): Promise<void>;
}

export interface LearnerOptions {
  /** The client host's IPv4 address. */
  address: string;
  /** The services' TCP ports. */
  ports: number[];
  ifname?: string;
  trusted: TrustedServiceKeys;
  registry: ConnectionRegistry;
  /** How often to look for ended connections (default 1000 ms). */
  pollMs?: number;
  onEvent: (event: LearnerEvent) => void;
}

/** A connection the agent knows, negotiated or not. */
export interface LearnedConnection {
  binding: ConnectionBinding;
  keys?: ConnectionKeys;
  /* Unnegotiated because its server never answered (not refused): no replica can move it. */
  silent?: boolean;
  learnedAtMs: number;
}

const DEFAULT_POLL_MS = 1000;
/* An invited exchange sends one HELLO and waits this long: the replica repeats its invitation. */
const INVITATION_ANSWER_MS = 300;

/** What a server's SYN-ACK to the client says about the connection. */
export function bindingFromSynAck(synAck: CapturedSegment): ConnectionBinding {
  return {
    client: { address: synAck.destinationAddress, port: synAck.destinationPort },
    server: { address: synAck.sourceAddress, port: synAck.sourcePort },
    clientIsn: (synAck.ack - 1) >>> 0,
    serverIsn: synAck.seq >>> 0,
  };
}

export class ConnectionLearner {
  private readonly learned = new Map<string, LearnedConnection>();
  /* SYN-ACKs (4-tuple and ISNs) being checked now. */
  private readonly checking = new Set<string>();
  /* Socket keys of connections running an invited key exchange. */
  private readonly invitations = new Set<string>();
  private capture: SynAckCapture | undefined;
  private poller: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();

  constructor(private readonly options: LearnerOptions) {}

  /** Starts capturing SYN-ACKs and polling for ends; throws NativeError without CAP_NET_RAW. */
  start(): void {
    const { address, ports, ifname } = this.options;
    this.capture = SynAckCapture.start(
      { address, ports, ...(ifname ? { ifname } : {}) },
      (synAck) => this.onSynAck(synAck),
      (error: NativeError) => this.options.onEvent({ kind: 'error', error }),
    );
    this.poller = setInterval(() => {
      this.polling = this.polling.then(() => this.forgetEnded()).catch((error: Error) => this.options.onEvent({ kind: 'error', error }));
    }, this.options.pollMs ?? DEFAULT_POLL_MS);
  }

  async stop(): Promise<void> {
    this.capture?.stop();
    this.capture = undefined;
    clearInterval(this.poller);
    await this.polling;
  }

  /** The negotiated connections, by socket key (client endpoint > original server endpoint). */
  *negotiated(): IterableIterator<[string, LearnedConnection & { keys: ConnectionKeys }]> {
    for (const [key, connection] of this.learned) {
      if (connection.keys) yield [key, connection as LearnedConnection & { keys: ConnectionKeys }];
    }
  }

  /** The connections whose server never answered the key exchange, by socket key. */
  *silent(): IterableIterator<[string, LearnedConnection]> {
    for (const [key, connection] of this.learned) if (connection.silent && !connection.keys) yield [key, connection];
  }

  /**
   * A replica invited the agent to run the key exchange of the connection of CLIENT with it (VIA:
   * the invitation's sender): for a connection without a key whose server did not refuse, one
   * HELLO to VIA, one at a time per connection; a valid signed answer protects the connection.
   */
  invited(client: Endpoint, via: Endpoint): void {
    const found = [...this.learned].find(([, c]) => c.binding.client.address === client.address && c.binding.client.port === client.port);
    if (!found) return;
    const [key, connection] = found;
    if (connection.keys || connection.silent === false || this.invitations.has(key)) return;
    this.invitations.add(key);
    negotiateConnectionKey({ connection: connection.binding, trusted: this.options.trusted, via: via.address, port: via.port, timeoutMs: INVITATION_ANSWER_MS, retryMs: 2 * INVITATION_ANSWER_MS })
      .then(
        (keys) => {
          const current = this.learned.get(key) === connection && !connection.keys;
          if (current) this.protect(connection, keys);
          this.options.onEvent({ kind: 'invitation', binding: connection.binding, via: via.address, accepted: current });
        },
        () => this.options.onEvent({ kind: 'invitation', binding: connection.binding, via: via.address, accepted: false }),
      )
      .finally(() => this.invitations.delete(key));
  }

  /** Runs a silent connection's key exchange once more; true if its server answered (it is protected now). */
  async retry(key: string): Promise<boolean> {
    const connection = this.learned.get(key);
    if (!connection?.silent) return false;
    const keys = await this.negotiate(connection, false);
    if (!keys || this.learned.get(key) !== connection) return false;
    this.protect(connection, keys);
    return true;
  }

  private onSynAck(synAck: CapturedSegment): void {
    const binding = bindingFromSynAck(synAck);
    const key = socketKey(binding.client, binding.server);
    const known = this.learned.get(key);
    if (known && known.binding.clientIsn === binding.clientIsn && known.binding.serverIsn === binding.serverIsn) return;
    // A retransmission of a SYN-ACK still being checked starts nothing either.
    const claim = `${key}#${binding.clientIsn}#${binding.serverIsn}`;
    if (this.checking.has(claim)) return;
    this.checking.add(claim);
    this.learn(key, binding, known)
      .catch((error: Error) => this.options.onEvent({ kind: 'error', error }))
      .finally(() => this.checking.delete(claim));
  }

  private async learn(key: string, binding: ConnectionBinding, known: LearnedConnection | undefined): Promise<void> {
    if (!(await readOpenSockets()).has(key)) {
      this.options.onEvent({ kind: 'ignored', binding, reason: 'no-socket' });
      return;
    }
    const connection: LearnedConnection = { binding, learnedAtMs: performance.now() };
    if (!known) this.learned.set(key, connection);
    this.options.onEvent({ kind: 'learned', binding });
    const keys = await this.negotiate(connection, !known);
    if (known) {
      // A reuse only if the server vouches for the new ISNs; and only if nothing newer came meanwhile.
      if (!keys) {
        this.options.onEvent({ kind: 'ignored', binding, reason: 'not-a-reuse' });
        return;
      }
      if (this.learned.get(key) !== known) return;
      await this.end(key, known);
      this.learned.set(key, connection);
    }
    // The connection may have ended while the exchange ran (nothing to register), or an invited
    // exchange may have protected it first.
    if (!keys || this.learned.get(key) !== connection || connection.keys) return;
    this.protect(connection, keys);
  }

  private protect(connection: LearnedConnection, keys: ConnectionKeys): void {
    connection.keys = keys;
    connection.silent = false;
    this.options.registry.register({ binding: connection.binding, keys });
    this.options.onEvent({ kind: 'negotiated', binding: connection.binding, keys });
  }

  /* `report`: a failure is the connection's (unnegotiated), not a refuted reuse (reported as ignored). */
  private async negotiate(connection: LearnedConnection, report: boolean): Promise<ConnectionKeys | undefined> {
    try {
      return await negotiateConnectionKey({ connection: connection.binding, trusted: this.options.trusted });
    } catch (error) {
      if (report) {
        connection.silent = !isRefusal(error);
        this.options.onEvent({ kind: 'unnegotiated', binding: connection.binding, error: error as Error });
      }
      return undefined;
    }
  }

  private async forgetEnded(): Promise<void> {
    const readAt = performance.now();
    const open = await readOpenSockets();
    for (const [key, connection] of this.learned) {
      if (connection.learnedAtMs < readAt && !open.has(key)) await this.end(key, connection);
    }
  }

  private async end(key: string, connection: LearnedConnection): Promise<void> {
    if (this.learned.get(key) === connection) this.learned.delete(key);
    if (!connection.keys) return;
    await this.options.registry.forget(connection.keys.token);
    this.options.onEvent({ kind: 'forgotten', binding: connection.binding, keys: connection.keys });
  }
}
