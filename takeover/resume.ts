/*
 * Theory of operation: the last steps of every takeover, whatever moved the endpoint.
 *
 * Once a client's kernel has answered the probe (address takeover: on the adopted address; TCP
 * Migrate: through the client agent's rewrite, on this server's own address), the probe's
 * worker has already rebuilt the endpoint with TCP_REPAIR at exactly the client's position
 * (native/probe-restore, off the event loop); the probe's sequence numbers are mapped through
 * the stream map (relay/resume.ts) and:
 *   resume   the relay continues from there with the local origin (a connection that turns
 *            out to be over already is dropped in repair mode: nothing reaches the client);
 *   publish  the record is advertised with migration + 1, so the old owner, if it is in fact
 *            alive, steps back without a word to the client.
 * A connection that cannot be resumed exactly is reset and counted by reason.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { closeQuietly, NativeError, sendTcpSegment, TCP_ACK, TCP_RST, type ConnectionDump, type ProbeAnswer, type ProbeRestoreResult } from '../native/index.js';
import type { ConnectionRecord, Endpoint } from '../softstate/index.js';
import { planResume } from '../relay/resume.js';
import type { WedgeMetrics } from '../daemon/metrics.js';
import { parseReplicatedStream, transportOf, type Replication } from '../replication/replication.js';
import { RESTORED_MARK } from './guard.js';
import type { WedgeServer } from '../daemon/server.js';

/* TCP Migrate outcomes of a candidate that did not take the connection: another one did. */
const TAKEN_ELSEWHERE = new Set(['lost-race', 'stood-down']);

/* A connection to take over: its record, its stream map and its transport as probeAndRestore() wants it. */
export interface Adoptee {
  record: ConnectionRecord;
  stream: NonNullable<ReturnType<typeof parseReplicatedStream>>;
  state: ConnectionDump;
}

export class Resumer {
  constructor(
    private readonly server: WedgeServer,
    private readonly replication: Replication,
    private readonly metrics: WedgeMetrics,
    private readonly logger: Logger,
  ) {}

  /*
   * The records as adoptees whose socket will live at `local` (default: the record's service
   * endpoint, i.e. address takeover); records with an unusable stream map are counted and left out.
   */
  adoptees(records: readonly ConnectionRecord[], local?: Endpoint): Adoptee[] {
    const adoptees: Adoptee[] = [];
    for (const record of records) {
      const stream = parseReplicatedStream(record.streamMap);
      if (stream) adoptees.push({ record, stream, state: dumpOf(record, local ?? record.service) });
      else this.count('bad-record', 0);
    }
    return adoptees;
  }

  /* Counts one connection's takeover; `ms` is its probe and restore (the batch's) and resume. */
  count(result: string, ms: number): string {
    const elsewhere = TAKEN_ELSEWHERE.has(result);
    const aborted = !elsewhere && result !== 'resumed' && result !== 'finished';
    this.metrics.takeovers.inc({ result: aborted ? 'aborted' : result });
    if (!elsewhere) this.metrics.takeoverSeconds.observe(ms / 1000);
    if (aborted) this.metrics.abort(`takeover: ${result}`);
    return result;
  }

  /* resume → publish, for one probed and restored connection; returns its outcome. */
  resume({ record, stream, state }: Adoptee, result: ProbeRestoreResult, probeMs: number): string {
    if (result instanceof NativeError) {
      if (result.code === 'ECONNREFUSED') return 'lost-race';
      this.logger.warn({ conn: record.id, err: result.message }, 'probe failed');
      return result.code === 'ECONNRESET' ? 'client-gone' : 'probe-failed';
    }
    const { answer, restored } = result;
    const serverOffset = unwrap((answer.ack - state.sendSeq) >>> 0, stream.sent);
    const clientOffset = unwrap((answer.seq - state.recvSeq) >>> 0, stream.received);
    const plan = planResume(stream.map, serverOffset, clientOffset, stream.received);
    if (plan.kind === 'closed') {
      if (!(restored instanceof NativeError)) closeQuietly(restored.fd);
      this.logger.info({ conn: record.id, serverOffset }, 'connection already closed: nothing to take over');
      return 'finished';
    }
    if (restored instanceof NativeError) {
      this.logger.warn({ conn: record.id, err: restored.message }, 'restore failed; resetting the client');
      resetClient(state, answer);
      return 'restore-failed';
    }
    const socket = new net.Socket({ fd: restored.fd, readable: true, writable: true, allowHalfOpen: true });
    if (plan.kind === 'abort') {
      this.logger.warn({ conn: record.id, reason: plan.reason, serverOffset }, 'cannot resume exactly; resetting');
      socket.resetAndDestroy();
      return 'unresumable';
    }
    if (plan.kind === 'finish') {
      socket.end(() => socket.destroy());
      return 'finished';
    }
    const adopted = {
      streamMap: stream.map,
      bytesFromClient: clientOffset,
      bytesToClient: serverOffset,
      steps: plan.steps,
      replay: plan.replay,
      clientFinished: plan.clientFinished,
    };
    const connection = this.server.adopt(socket, adopted, record.id);
    // Same anchors as before (the sequence space continues); the clock is the new socket's.
    const transport = { ...transportOf(restored.state, serverOffset), sendSeq: state.sendSeq, recvSeq: state.recvSeq };
    this.replication.track(connection, transport, record.migration + 1, record.migrate);
    this.logger.info(
      {
        conn: record.id,
        serverOffset,
        probeMs: +probeMs.toFixed(2),
        probeRttMs: +answer.rttMs.toFixed(2),
        ...(answer.moveMs !== undefined ? { moveMs: +answer.moveMs.toFixed(2) } : {}),
        probes: answer.attempts,
        restoreMs: +restored.restoreMs.toFixed(2),
        steps: plan.steps.length,
        replay: plan.replay.length,
      },
      'connection resumed',
    );
    return 'resumed';
  }
}

/*
 * Without a socket, the client is told by hand: a RST at exactly its next wanted byte (so it is
 * in its window), marked like restored sockets' resets so that the guard lets it pass. Otherwise
 * a client that is only waiting for data would wait forever.
 */
function resetClient(state: ConnectionDump, answer: ProbeAnswer): void {
  sendTcpSegment({
    localAddress: state.localAddress,
    localPort: state.localPort,
    remoteAddress: state.remoteAddress,
    remotePort: state.remotePort,
    seq: answer.ack,
    ack: answer.seq,
    flags: TCP_RST | TCP_ACK,
    window: 0,
    mark: RESTORED_MARK,
  });
}

/* The record's transport as the native restore wants it, on `local`: byte 0 of each stream as anchors. */
function dumpOf(record: ConnectionRecord, local: Endpoint): ConnectionDump {
  const t = record.transport;
  return {
    localAddress: local.address,
    localPort: local.port,
    remoteAddress: record.client.address,
    remotePort: record.client.port,
    sendSeq: t.sendSeq,
    recvSeq: t.recvSeq,
    timestamp: t.tsClock,
    clockReadAt: t.tsReadAt,
    mss: t.mss,
    windowScaling: t.sndWscale > 0 || t.rcvWscale > 0,
    sndWscale: t.sndWscale,
    rcvWscale: t.rcvWscale,
    sack: t.sack,
    timestamps: t.timestamps,
    window: { sndWl1: 0, sndWnd: t.sndWnd, maxWindow: t.sndWnd, rcvWnd: t.rcvWnd, rcvWup: 0 },
    bytesReceived: 0,
  };
}

/* The stream offset congruent to `low32` modulo 2^32 that is nearest to `near`. */
export function unwrap(low32: number, near: number): number {
  const span = 2 ** 32;
  const base = near - (near % span);
  let best = base + low32;
  for (const candidate of [best - span, best + span]) {
    if (candidate >= 0 && Math.abs(candidate - near) < Math.abs(best - near)) best = candidate;
  }
  return best;
}
