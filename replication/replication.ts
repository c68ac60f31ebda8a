/*
 * Theory of operation: this server's connections as soft state.
 *
 * In: the connections this server serves (accepted, or adopted by a takeover: track()), each
 * with its typed stream of changes (relay/connection.ts); newer versions of them heard from the
 * group (the member's 'superseded'). Out: their records to the support group (softstate/), and
 * the silent release of a connection someone else took over.
 *
 * The soft state follows each connection by construction: softStateOn() (relay/lifecycle.ts)
 * says what every lifecycle change means for the group, and every stream-map change is
 * advertised. Changes made in one turn of the event loop leave as one record (coalesced on a
 * microtask), sent at once and repeated shortly after. The record carries:
 *   transport  the TCP state: sequence *anchors* (the sequence numbers of byte 0 of each stream,
 *              i.e. the two ISN+1s), options, and the timestamp clock;
 *   streamMap  a ReplicatedStream (replication/records.ts): the stream map plus the byte counts of
 *              both streams, which resolve the 32-bit sequence numbers of the probe, and the
 *              origin's latest snapshot (state contract, at most 4 KiB; advertised on each new one);
 *   migrate    the TCP Migrate key and token, once the client's agent negotiated them
 *              (daemon/migrate-serving.ts), and the server endpoint the client's socket names;
 *   handoff    set when this server asks its group to take the connection (load shedding, or
 *              the client asked to move); the members race for it as for a dead server's.
 * When the group hears a newer version of a connection we serve (a higher migration number:
 * someone took it over, rightly or not), we let it go without a byte to the client.
 */
import type { Logger } from 'pino';
import { dump, quietClose, socketFd, type ConnectionDump } from '../native/index.js';
import type { ConnectionChange, RelayConnection } from '../relay/connection.js';
import { softStateOn, type SoftStateAction } from '../relay/lifecycle.js';
import type { ConnectionRecord, MigrateSecrets, SoftStateMember, TransportState } from '../softstate/index.js';
import { transportOf, type ReplicatedStream } from './records.js';

/* What replication needs of the soft-state member. */
export type ReplicaGroup = Pick<SoftStateMember, 'upsert' | 'readvertise' | 'remove' | 'on'>;

interface Tracked {
  connection: RelayConnection;
  transport: TransportState;
  migration: number;
  /* A coalesced advert is due at the end of this turn. */
  due: boolean;
  repeat?: NodeJS.Timeout;
  /* bytesToClient in the last advert. */
  advertisedSent: number;
  migrate?: MigrateSecrets;
  /* Why the last advert could not go out: the connection is served but not protected. */
  unprotected?: string;
}

/* A change is advertised at once and once more shortly after: multicast has no retransmission,
 * and a lost triggered advert would otherwise leave the change unknown until the next round. */
const REPEAT_ADVERT_MS = 250;

/*
 * The member re-sends every record on its periodic round; a record needs re-making only when
 * its byte counts could no longer resolve the probe's 32-bit sequence numbers (they must stay
 * within 2 GiB of the truth). Re-making every record every round costs a stall of hundreds of
 * milliseconds with a thousand connections, which peers read as death.
 */
const REFRESH_AFTER_BYTES = 2 ** 30;

/* Exchanges a record carries at most (pipelined requests not yet answered, and those the client
 * has not acknowledged yet). */
const MAX_ADVERTISED_EXCHANGES = 64;

export class Replication {
  private readonly tracked = new Map<string, Tracked>();
  /* Connection ids by TCP Migrate token (hex). */
  private readonly tokens = new Map<string, string>();
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly group: ReplicaGroup,
    private readonly self: string,
    private readonly onRelinquished: () => void,
    private readonly logger: Logger,
  ) {}

  start(refreshIntervalMs: number): void {
    this.group.on('superseded', (record) => this.onSuperseded(record));
    this.refreshTimer = setInterval(() => this.refreshAll(), refreshIntervalMs);
    this.refreshTimer.unref();
  }

  stop(): void {
    clearInterval(this.refreshTimer);
  }

  /* A connection accepted here: its anchors come from a dump of its socket, right after accept. */
  accepted(connection: RelayConnection): void {
    let state: ConnectionDump;
    try {
      state = dump(socketFd(connection.client));
    } catch (err) {
      // Served, but unprotected: say so rather than refuse the client.
      this.logger.warn({ conn: connection.id, err: (err as Error).message }, 'cannot dump TCP state; connection not protected');
      return;
    }
    this.track(connection, transportOf(state, connection.bytesToClient), 0);
  }

  /* A connection this server serves from now on, with its anchors and migration number. */
  track(connection: RelayConnection, transport: TransportState, migration: number, migrate?: MigrateSecrets): void {
    const entry: Tracked = { connection, transport, migration, due: false, advertisedSent: 0 };
    this.tracked.set(connection.id, entry);
    if (migrate) this.setMigrate(entry, migrate);
    connection.on('change', (change) => this.follow(entry, change));
    this.advertiseChange(entry);
  }

  /* Whether the group could take the connection over now, and if not why (for `wedge status`). */
  protection(id: string): { protected: true } | { protected: false; reason: string } {
    const entry = this.tracked.get(id);
    if (!entry) return { protected: false, reason: 'not replicated (its TCP state could not be read)' };
    return entry.unprotected === undefined ? { protected: true } : { protected: false, reason: entry.unprotected };
  }

  /* Sequence anchors (ISN+1 of each side) of a connection served here. */
  anchors(id: string): { sendSeq: number; recvSeq: number } | undefined {
    return this.tracked.get(id)?.transport;
  }

  /* The connection's TCP Migrate secrets were just agreed: its group must know them. */
  secure(id: string, migrate: MigrateSecrets): void {
    const entry = this.tracked.get(id);
    if (!entry) return;
    this.setMigrate(entry, migrate);
    this.advertiseChange(entry);
  }

  /* The connection (id) and secrets a TCP Migrate token names, if served here. */
  byToken(token: Buffer): { id: string; migrate: MigrateSecrets } | undefined {
    const id = this.tokens.get(token.toString('hex'));
    const migrate = id === undefined ? undefined : this.tracked.get(id)?.migrate;
    return id === undefined || !migrate ? undefined : { id, migrate };
  }

  /* Connections that could be handed off (their client runs the agent), not yet handed off. */
  movable(): string[] {
    return [...this.tracked.values()].filter((e) => e.migrate && !e.connection.handedOff).map((e) => e.connection.id);
  }

  /* Asks the group to take the connection; false if it cannot move (no agent, not served here). */
  handOff(id: string): boolean {
    const entry = this.tracked.get(id);
    if (!entry?.migrate || entry.connection.state === 'closed') return false;
    entry.connection.handOff();
    return true;
  }

  /*
   * This server was declared dead while alive: its group is about to migrate every movable
   * connection away, and their clients' agents will answer our next segments with RST.
   */
  expectMoves(): void {
    for (const entry of this.tracked.values()) if (entry.migrate) entry.connection.expectMove();
  }

  private follow(entry: Tracked, change: ConnectionChange): void {
    if (this.tracked.get(entry.connection.id) !== entry) return;
    switch (actionOf(change)) {
      case 'advertise':
        if (entry.due) return;
        entry.due = true;
        queueMicrotask(() => {
          entry.due = false;
          if (this.tracked.get(entry.connection.id) === entry) this.advertiseChange(entry);
        });
        return;
      case 'withdraw':
        this.forget(entry);
        this.group.remove(entry.connection.id);
        return;
      case 'release':
        this.forget(entry);
        // However it learnt of it (the newer record, or the agent's RST after a move): said and counted once.
        if (change.kind === 'state' && change.reason === 'taken-over') {
          this.logger.info({ conn: entry.connection.id }, 'connection taken over by a peer; stepping back');
          this.onRelinquished();
        }
        return;
      case 'none':
        return;
    }
  }

  private forget(entry: Tracked): void {
    clearTimeout(entry.repeat);
    if (entry.migrate) this.tokens.delete(entry.migrate.token.toString('hex'));
    this.tracked.delete(entry.connection.id);
  }

  private setMigrate(entry: Tracked, migrate: MigrateSecrets): void {
    entry.migrate = migrate;
    this.tokens.set(migrate.token.toString('hex'), entry.connection.id);
  }

  private advertiseChange(entry: Tracked): void {
    this.advertise(entry);
    clearTimeout(entry.repeat);
    entry.repeat = setTimeout(() => {
      if (this.tracked.get(entry.connection.id) === entry) this.group.readvertise(entry.connection.id);
    }, REPEAT_ADVERT_MS);
    entry.repeat.unref();
  }

  private onSuperseded(record: ConnectionRecord): void {
    const entry = this.tracked.get(record.id);
    if (!entry || record.owner === this.self || record.migration <= entry.migration) return;
    this.logger.info({ conn: record.id, owner: record.owner, migration: record.migration }, 'newer record heard');
    entry.connection.relinquish(quietClose, 'taken-over');
  }

  private refreshAll(): void {
    for (const entry of this.tracked.values()) {
      if (entry.connection.bytesToClient - entry.advertisedSent >= REFRESH_AFTER_BYTES) this.advertise(entry);
    }
  }

  /* Every connection's record made and sent now (a planned drain: what the group takes over must
   * be the latest). */
  advertiseAll(): void {
    for (const entry of this.tracked.values()) this.advertiseChange(entry);
  }

  /* A connection let go without a word, then lost (a failed fast-forward): the group forgets it. */
  withdraw(id: string): void {
    this.group.remove(id);
  }

  /* The record of a connection served here, as it stands now (what the group would hear). */
  record(id: string): ConnectionRecord | undefined {
    const entry = this.tracked.get(id);
    return entry && this.recordOf(entry);
  }

  private recordOf(entry: Tracked): ConnectionRecord {
    const { connection } = entry;
    const client = { address: connection.client.remoteAddress!, port: connection.client.remotePort! };
    const service = { address: connection.client.localAddress!, port: connection.client.localPort! };
    // Only what a resume can still need: exchanges the client acknowledged whole are left out.
    const stream: ReplicatedStream = { map: connection.streamMap.toJSON(connection.acknowledged()), sent: connection.bytesToClient, received: connection.bytesFromClient };
    const snapshot = connection.stateSlot?.snapshot;
    if (snapshot) stream.snapshot = snapshot;
    return {
      id: connection.id,
      client,
      service,
      owner: this.self,
      migration: entry.migration,
      transport: entry.transport,
      streamMap: stream,
      updatedAt: Date.now(),
      ...(entry.migrate ? { migrate: entry.migrate } : {}),
      ...(connection.handedOff ? { handoff: true } : {}),
    };
  }

  private advertise(entry: Tracked): void {
    const { connection } = entry;
    const inFlight = connection.streamMap.retained.length;
    if (inFlight > MAX_ADVERTISED_EXCHANGES) {
      // A deep pipeline: its record would not fit, and making it at every exchange would cost
      // time quadratic in the pipeline's length. Unprotected until it drains (a takeover meanwhile
      // finds the client ahead of the last record and resets it, loudly).
      this.unprotected(entry, `${inFlight} exchanges in flight, more than the ${MAX_ADVERTISED_EXCHANGES} a record carries`);
      return;
    }
    const record = this.recordOf(entry);
    entry.advertisedSent = connection.bytesToClient;
    try {
      // A false return means a newer version exists; the member reports it as 'superseded'.
      this.group.upsert(record);
      if (entry.unprotected !== undefined) this.logger.info({ conn: connection.id }, 'connection advertised again: protected');
      delete entry.unprotected;
    } catch (err) {
      this.unprotected(entry, (err as Error).message);
    }
  }

  /* Served on, unprotected until a later advert fits; said once, shown by `wedge status`. */
  private unprotected(entry: Tracked, reason: string): void {
    if (entry.unprotected === undefined) this.logger.warn({ conn: entry.connection.id, err: reason }, 'connection not advertised: unprotected');
    entry.unprotected = reason;
  }
}

/* What the group must hear after one change of a connection: every stream-map change and every
 * new snapshot is news. */
export function actionOf(change: ConnectionChange): SoftStateAction {
  return change.kind === 'map' || change.kind === 'snapshot' ? 'advertise' : softStateOn(change);
}
