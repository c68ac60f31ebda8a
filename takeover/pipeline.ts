/*
 * Theory of operation: taking connections over, written once.
 *
 *   detect   takeover/detect.ts: a peer reported dead (silent, restarted, or declared dead, maybe
 *            by mistake), or a live owner handing a connection off; the records to take;
 *   choose   the mover decides which of them are this server's (takeover/choose.ts: rendezvous
 *            hashing, so every member computes the same answer without talking);
 *   guard    our own stack's RSTs to those clients are dropped until their sockets exist here
 *            (takeover/guard.ts); then the mover claims the endpoint (address takeover: adds the
 *            address and announces it; TCP Migrate: nothing to claim);
 *   probe and restore
 *            one native batch on a worker thread (native/probe-restore): each client's kernel is
 *            made to tell its next wanted byte and its own next byte (TCP Migrate: through the
 *            agent's rewrite, led by the Migrate SYN), and the endpoint is rebuilt with TCP_REPAIR
 *            at that point as soon as the answer is in;
 *   resume   connection by connection, up to resumesPerTurn per event-loop turn
 *            (takeover/resume.ts);
 *   publish  each resumed connection's record goes out with migration + 1
 *            (replication/replication.ts), so an old owner that is in fact alive steps back
 *            without a word to the client;
 *   watch    the watchdog (takeover/watchdog.ts) re-probes each resumed connection once the old
 *            owner must be quiet, and any connection served here that stops making progress;
 *            a client found ahead of our socket (the live old owner's last bytes reached it) is
 *            fast-forwarded: the endpoint rebuilt at its position, the resume step restarted
 *            from there (fastForward()).
 * One adoption per connection: a connection being taken over, or served here, is not taken
 * again, however many death notices arrive.
 * The two transports plug in as Movers (takeover/movers/): a mover is the whole difference.
 * Every connection ends in one typed result (errors/reasons.ts), counted.
 */
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { takeoverOutcome, type AbortReason, type TakeoverResult } from '../errors/reasons.js';
import { closeQuietly, dump, NativeError, probeAndRestore, quietClose, restore, type ConnectionDump, type ProbeAnswer, type RestoredSocket, type RestoreRequest } from '../native/index.js';
import type { AdoptedStream, RelayConnection } from '../relay/connection.js';
import type { Replication } from '../replication/replication.js';
import type { ConnectionRecord, Endpoint } from '../softstate/index.js';
import { RESTORED_MARK, type RstGuard } from './guard.js';
import { adopteeOf, resumeConnection, type Adoptee } from './resume.js';
import { Watchdog, type WatchedConnections } from './watchdog.js';

/* How one transport moves a connection's endpoint here. */
export interface Mover {
  /* Where the restored socket lives: the record's service address, or this server's own. */
  local(record: ConnectionRecord): Endpoint;
  /* Makes the endpoint ours once the clients are guarded (add the address), if there is one. */
  claim(): Promise<void>;
  /* The probe of one connection, as the native worker sends it (plain, or led by a Migrate SYN). */
  request(adoptee: Adoptee): RestoreRequest;
}

/* The connections this server serves, and where adopted ones join them. */
export interface ServedConnections extends WatchedConnections {
  serves(id: string): boolean;
  readonly load: number;
  adopt(socket: Socket, adopted: AdoptedStream, id: string): RelayConnection;
}

export interface TakeoverObserver {
  takeover(result: TakeoverResult, seconds: number | undefined): void;
  /* A connection of `owner` was resumed here just now (for the client-stall estimate). */
  resumed(owner: string): void;
  abort(reason: AbortReason): void;
}

export interface PipelineConfig {
  /* Capture probe answers only here ('' = every interface). */
  iface: string;
  probeTimeoutMs: number;
  probeRetries: number;
  /* Connections resumed in one turn of the event loop, between yields. Large turns finish a mass
   * takeover sooner (the I/O of connections already resumed waits meanwhile, but their bodies move
   * in the kernel, and heartbeats come from their own thread). */
  resumesPerTurn: number;
}

/* Connections probed in one batch, at most: each holds a placeholder fd while it waits. */
const MAX_PROBE_BATCH = 2048;

/* A quietly closed socket may hold its 4-tuple a moment longer (a kernel splice being cancelled
 * still has it): its rebuild waits for it, as native/src/probe.cc's does. */
const RESTORE_RETRIES = 20;
const RESTORE_RETRY_MS = 5;

async function restoreOnceFree(state: ConnectionDump, answer: ProbeAnswer): Promise<RestoredSocket | NativeError> {
  for (let attempt = 0; ; attempt++) {
    const started = performance.now();
    let fd: number | undefined;
    try {
      fd = restore(state, answer, { mark: RESTORED_MARK });
      return { fd, state: dump(fd), restoreMs: performance.now() - started };
    } catch (err) {
      if (fd !== undefined) closeQuietly(fd);
      if (!(err instanceof NativeError)) throw err;
      if (err.code !== 'EADDRNOTAVAIL' || attempt === RESTORE_RETRIES) return err;
    }
    await sleep(RESTORE_RETRY_MS);
  }
}

export interface Taken {
  record: ConnectionRecord;
  result: TakeoverResult;
}

export class TakeoverPipeline {
  /* Ids of the connections being taken over now. */
  private readonly adopting = new Set<string>();
  private readonly watchdog: Watchdog;

  constructor(
    private readonly config: PipelineConfig,
    readonly served: ServedConnections,
    private readonly guard: RstGuard,
    private readonly replication: Replication,
    private readonly observer: TakeoverObserver,
    private readonly logger: Logger,
  ) {
    this.watchdog = new Watchdog(
      served,
      { anchors: (id) => replication.anchors(id), fastForward: (connection, answer) => this.fastForward(connection, answer) },
      { ifname: config.iface, timeoutMs: config.probeTimeoutMs, retries: config.probeRetries },
      logger,
    );
    this.watchdog.start();
  }

  /* guard → claim → probe and restore → resume → publish, for records this server chose. */
  async take(mover: Mover, records: readonly ConnectionRecord[]): Promise<Taken[]> {
    const fresh = records.filter((r) => !this.adopting.has(r.id) && !this.served.serves(r.id));
    if (fresh.length < records.length) this.logger.info({ connections: records.length - fresh.length }, 'already taken or being taken over: not taken again');
    for (const record of fresh) this.adopting.add(record.id);
    try {
      return await this.takeFresh(mover, fresh);
    } finally {
      for (const record of fresh) this.adopting.delete(record.id);
    }
  }

  /*
   * The client of a connection served here is ahead of everything its socket sent (`answer`, from
   * the watchdog's re-probe): the socket goes quietly (repair mode: nothing reaches the client),
   * and the endpoint is rebuilt at the client's position from the connection's record as it
   * stands, so the resume step restarts from that offset. Not counted as a takeover: the
   * connection was already taken; a failure is counted as the abort 'stalled'.
   */
  async fastForward(connection: RelayConnection, answer: ProbeAnswer): Promise<void> {
    // Between the quiet close and the restore, our stack has no socket for the client.
    await this.guard.guard([{ address: connection.client.remoteAddress!, port: connection.client.remotePort! }]);
    if (this.served.connections.get(connection.id) !== connection) return;
    const record = this.replication.record(connection.id);
    const current = record && adopteeOf(record, record.service);
    if (!current) {
      connection.reset('stalled');
      return;
    }
    connection.relinquish(quietClose, 'rebuilt-here');
    // Not served for a moment: a death notice meanwhile must not take it.
    this.adopting.add(connection.id);
    const restored = await restoreOnceFree(current.state, answer).finally(() => this.adopting.delete(connection.id));
    const outcome = resumeConnection(current, { answer, restored }, this.served, this.logger, 0);
    if (outcome.result === 'resumed') {
      this.watchdog.adopted(outcome.connection);
      this.replication.track(outcome.connection, outcome.transport, current.record.migration, current.record.migrate);
      this.logger.info({ conn: connection.id, serverOffset: outcome.connection.bytesToClient }, 'connection fast-forwarded');
    } else {
      // Relinquished, so its record was not withdrawn: the group must forget it now.
      this.replication.withdraw(connection.id);
      this.logger.warn({ conn: connection.id, result: outcome.result }, 'cannot fast-forward; the client is reset');
      this.observer.abort('stalled');
    }
  }

  private async takeFresh(mover: Mover, records: readonly ConnectionRecord[]): Promise<Taken[]> {
    const taken: Taken[] = [];
    const adoptees: Adoptee[] = [];
    for (const record of records) {
      const adoptee = adopteeOf(record, mover.local(record));
      if (adoptee) adoptees.push(adoptee);
      else taken.push({ record, result: this.count('bad-record') });
    }
    try {
      await this.guard.guard(adoptees.map((a) => a.record.client));
      await mover.claim();
    } catch (err) {
      this.logger.error({ connections: adoptees.length, err: (err as Error).message }, 'cannot claim the endpoint');
      return taken.concat(adoptees.map(({ record }) => ({ record, result: this.count('address-failed') })));
    }
    for (let first = 0; first < adoptees.length; first += MAX_PROBE_BATCH) {
      taken.push(...(await this.probeAndResume(mover, adoptees.slice(first, first + MAX_PROBE_BATCH))));
    }
    return taken;
  }

  /* Counts one connection's takeover; `ms` is its probe and restore (the batch's) and resume. */
  count(result: TakeoverResult, ms?: number): TakeoverResult {
    this.observer.takeover(result, takeoverOutcome(result) === 'elsewhere' || ms === undefined ? undefined : ms / 1000);
    return result;
  }

  private async probeAndResume(mover: Mover, adoptees: Adoptee[]): Promise<Taken[]> {
    const started = performance.now();
    const probes = await probeAndRestore(
      adoptees.map((a) => mover.request(a)),
      { ifname: this.config.iface, timeoutMs: this.config.probeTimeoutMs, retries: this.config.probeRetries, mark: RESTORED_MARK },
    );
    const probeMs = performance.now() - started;
    const taken: Taken[] = [];
    for (const [i, adoptee] of adoptees.entries()) {
      // Let timers and I/O run between turns: the connections served meanwhile wait one turn.
      if (i > 0 && i % this.config.resumesPerTurn === 0) await setImmediate();
      const resumeStarted = performance.now();
      let result: TakeoverResult;
      try {
        const outcome = resumeConnection(adoptee, probes[i]!, this.served, this.logger, probeMs);
        if (outcome.result === 'resumed') {
          this.watchdog.adopted(outcome.connection);
          this.replication.track(outcome.connection, outcome.transport, adoptee.record.migration + 1, adoptee.record.migrate);
          this.observer.resumed(adoptee.record.owner);
        }
        result = outcome.result;
      } catch (err) {
        this.logger.warn({ conn: adoptee.record.id, err: (err as Error).message }, 'takeover failed');
        result = 'failed';
      }
      taken.push({ record: adoptee.record, result: this.count(result, probeMs + performance.now() - resumeStarted) });
    }
    return taken;
  }
}
