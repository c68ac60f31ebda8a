/*
 * The watchdog: no client served here waits forever.
 *
 * In: every connection served here (accepted or adopted), one TCP_INFO read each per pass
 * (native progress(); a connection idle between exchanges with nothing left in its socket is
 * skipped until it works again). Out: a fast-forward (the pipeline rebuilds the endpoint) or a
 * reset counted with its reason (errors/reasons.ts).
 *
 *   suspect       bytes for the client are queued or in flight and none has been acknowledged
 *                 for STALL_MS; also, once, RECHECK_MS after an adoption: a live old owner sends
 *                 until it hears the migration, and its last bytes (its egress queue drains
 *                 anyway) may put the client ahead of our restore point;
 *   re-probe      the suspects of a pass in one native batch, on their live sockets (probeLive):
 *                 the client's next wanted byte;
 *   fast-forward  the client is ahead of everything our socket sent: our kernel discards its
 *                 ACKs (they acknowledge unsent data) and neither side would move again. The
 *                 endpoint is rebuilt at the client's position and resumed from there (a Range
 *                 from that body offset), so no byte is sent twice or skipped;
 *   reset         a client that waits with an open window (or no longer answers) and acknowledges
 *                 nothing for GIVE_UP_MS: 'stalled'.
 * A client that has closed its window is not waiting (a paused reader): it is never reset for it.
 * An origin that goes silent mid-response is the relay's own response deadline (relay/deadlines.ts).
 */
import type { Logger } from 'pino';
import { NativeError, probeLive, progress, socketFd, type ProbeAnswer, type ProbeBatchOptions, type Progress } from '../native/index.js';
import type { RelayConnection } from '../relay/connection.js';
import { unwrap } from './resume.js';

/* One pass over the connections this often. */
const PASS_MS = 250;
/* No acknowledgment for this long with bytes waiting: re-probe (a restored socket's first RTO is 1 s). */
const STALL_MS = 1000;
/* An adopted connection is re-probed once this long after its resume (the old owner is quiet by then). */
const RECHECK_MS = 100;
/* A stall that no fast-forward explains is reset after this long (nginx's send_timeout default). */
const GIVE_UP_MS = 60_000;

export interface WatchedConnections {
  readonly connections: ReadonlyMap<string, RelayConnection>;
}

export interface WatchdogHooks {
  /* Sequence anchors (ISN+1 of each side) of a connection served here, if it is tracked. */
  anchors(id: string): { sendSeq: number; recvSeq: number } | undefined;
  /* Rebuilds the connection at the client's position (`answer`) and resumes it from there. */
  fastForward(connection: RelayConnection, answer: ProbeAnswer): Promise<void>;
}

interface Watch {
  /* Stream offset of the socket's first byte: its bytesAcked counts from there. */
  base: number;
  acked: number;
  received: number;
  /* When it last made progress (performance.now()). */
  since: number;
  /* Bytes were queued or in flight at the last read. */
  waiting: boolean;
  recheckAt?: number;
  probedAt: number;
  probing: boolean;
}

interface Suspect {
  connection: RelayConnection;
  watch: Watch;
  anchors: { sendSeq: number; recvSeq: number };
}

export class Watchdog {
  private readonly watches = new WeakMap<RelayConnection, Watch>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly served: WatchedConnections,
    private readonly hooks: WatchdogHooks,
    private readonly probeOptions: ProbeBatchOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.pass(), PASS_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /* A connection just resumed here: its socket starts at its current offset; re-probe it soon. */
  adopted(connection: RelayConnection): void {
    const now = performance.now();
    this.watches.set(connection, { ...this.fresh(connection, now), base: connection.bytesToClient, recheckAt: now + RECHECK_MS });
  }

  /* One pass: read every working connection's progress; re-probe the suspects in one batch. */
  pass(): void {
    const now = performance.now();
    const suspects: Suspect[] = [];
    for (const connection of this.served.connections.values()) {
      let watch = this.watches.get(connection);
      if (!watch) this.watches.set(connection, (watch = this.fresh(connection, now)));
      if (watch.probing || (connection.state === 'idle' && !watch.waiting && watch.recheckAt === undefined)) continue;
      const read = this.read(connection);
      if (!read) continue;
      if (read.bytesAcked !== watch.acked || connection.bytesFromClient !== watch.received) {
        watch.acked = read.bytesAcked;
        watch.received = connection.bytesFromClient;
        watch.since = now;
      }
      watch.waiting = read.inFlight > 0 || read.notSent > 0;
      const stalledMs = now - watch.since;
      const recheck = watch.recheckAt !== undefined && now >= watch.recheckAt;
      if (recheck || (watch.waiting && stalledMs >= STALL_MS && now - watch.probedAt >= STALL_MS)) {
        const anchors = this.hooks.anchors(connection.id);
        if (anchors) suspects.push({ connection, watch, anchors });
      }
    }
    if (suspects.length > 0) {
      this.reprobe(suspects, now)
        .catch((err: Error) => this.logger.warn({ connections: suspects.length, err: err.message }, 're-probe failed'))
        .finally(() => suspects.forEach(({ watch }) => (watch.probing = false)));
    }
  }

  private async reprobe(suspects: Suspect[], now: number): Promise<void> {
    for (const { watch } of suspects) {
      watch.probing = true;
      watch.probedAt = now;
      watch.recheckAt = undefined;
    }
    const answers = await probeLive(
      suspects.map(({ connection, anchors }) => ({
        localAddress: connection.client.localAddress!,
        localPort: connection.client.localPort!,
        remoteAddress: connection.client.remoteAddress!,
        remotePort: connection.client.remotePort!,
        ...anchors,
        ack: (anchors.recvSeq + connection.bytesFromClient) >>> 0,
      })),
      this.probeOptions,
    );
    for (const [i, suspect] of suspects.entries()) {
      if (this.served.connections.get(suspect.connection.id) !== suspect.connection) continue;
      await this.judge(suspect, answers[i]!);
    }
  }

  /* What the client's answer says about one suspect: fast-forward, wait on, or reset. */
  private async judge({ connection, watch, anchors }: Suspect, answer: ProbeAnswer | NativeError): Promise<void> {
    const stalledMs = performance.now() - watch.since;
    const read = answer instanceof NativeError ? undefined : this.read(connection);
    if (read && !(answer instanceof NativeError)) {
      // Read after the answer: what our socket has sent only grows, so "ahead" is never a guess.
      const sentEnd = watch.base + read.bytesAcked + read.inFlight;
      const wanted = unwrap((answer.ack - anchors.sendSeq) >>> 0, sentEnd);
      if (wanted > sentEnd) {
        this.logger.warn({ conn: connection.id, ahead: wanted - sentEnd, serverOffset: wanted }, 'client ahead of the restored socket: fast-forwarding');
        await this.hooks.fastForward(connection, answer).catch((err: Error) => {
          this.logger.warn({ conn: connection.id, err: err.message }, 'cannot fast-forward');
          connection.reset('stalled');
        });
        return;
      }
      if (answer.window === 0) {
        watch.since = performance.now(); // a paused reader is not waiting for us
        return;
      }
    }
    if (watch.waiting && stalledMs >= GIVE_UP_MS) this.reset(connection, 'stalled', stalledMs);
  }

  private reset(connection: RelayConnection, reason: 'stalled', stalledMs: number): void {
    this.logger.warn({ conn: connection.id, reason, stalledMs: Math.round(stalledMs) }, 'no progress: resetting');
    connection.reset(reason);
  }

  private read(connection: RelayConnection): Progress | undefined {
    try {
      const read = progress(socketFd(connection.client));
      return read.established ? read : undefined;
    } catch {
      return undefined; // its socket is going away
    }
  }

  private fresh(connection: RelayConnection, now: number): Watch {
    return { base: 0, acked: 0, received: connection.bytesFromClient, since: now, waiting: true, probedAt: -Infinity, probing: false };
  }
}
