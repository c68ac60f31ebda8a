/*
 * The resume step of a takeover, for one connection, whatever moved its endpoint.
 *
 * In: the connection's record (its stream map and transport), and what the probe's worker
 * returned: the client's answer (its next wanted byte and its own next byte) and the endpoint
 * already rebuilt with TCP_REPAIR at exactly that point (native/probe-restore, off the event
 * loop). Out: a typed result (errors/reasons.ts) and, when resumed, the connection now served
 * here with the transport to publish.
 *
 * The probe's sequence numbers are mapped through the stream map (stream-map/resume-plan.ts);
 * the relay then continues from there with the local origin. A connection that turns out to be
 * over already is dropped in repair mode (nothing reaches the client); one that cannot be
 * resumed exactly is reset.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { TakeoverResult } from '../errors/reasons.js';
import { closeQuietly, NativeError, sendTcpSegment, TCP_ACK, TCP_RST, type ConnectionDump, type ProbeAnswer, type ProbeRestoreResult } from '../native/index.js';
import type { AdoptedStream, RelayConnection } from '../relay/connection.js';
import { parseReplicatedStream, transportOf } from '../replication/records.js';
import type { ConnectionRecord, Endpoint, TransportState } from '../softstate/index.js';
import { planResume } from '../stream-map/resume-plan.js';
import { RESTORED_MARK } from './guard.js';

/* A connection to take over: its record, its stream map and its transport as probeAndRestore() wants it. */
export interface Adoptee {
  record: ConnectionRecord;
  stream: NonNullable<ReturnType<typeof parseReplicatedStream>>;
  state: ConnectionDump;
}

/* Where adopted connections go on being served. */
export interface AdoptingServer {
  adopt(socket: net.Socket, adopted: AdoptedStream, id: string): RelayConnection;
}

export type ResumeOutcome = { result: Exclude<TakeoverResult, 'resumed'> } | { result: 'resumed'; connection: RelayConnection; transport: TransportState };

/* The record as an adoptee whose socket will live at `local`; undefined if its stream map is unusable. */
export function adopteeOf(record: ConnectionRecord, local: Endpoint): Adoptee | undefined {
  const stream = parseReplicatedStream(record.streamMap);
  return stream && { record, stream, state: dumpOf(record, local) };
}

export function resumeConnection(
  { record, stream, state }: Adoptee,
  probed: ProbeRestoreResult,
  server: AdoptingServer,
  logger: Logger,
  probeMs: number,
): ResumeOutcome {
  if (probed instanceof NativeError) {
    if (probed.code === 'ECONNREFUSED') return { result: 'lost-race' };
    logger.warn({ conn: record.id, err: probed.message }, 'probe failed');
    return { result: probed.code === 'ECONNRESET' ? 'client-gone' : 'probe-failed' };
  }
  const { answer, restored } = probed;
  const serverOffset = unwrap((answer.ack - state.sendSeq) >>> 0, stream.sent);
  const clientOffset = unwrap((answer.seq - state.recvSeq) >>> 0, stream.received);
  const plan = planResume(stream.map, serverOffset, clientOffset, stream.received, stream.snapshot);
  if (plan.kind === 'closed') {
    if (!(restored instanceof NativeError)) closeQuietly(restored.fd);
    logger.info({ conn: record.id, serverOffset }, 'connection already closed: nothing to take over');
    return { result: 'finished' };
  }
  if (restored instanceof NativeError) {
    logger.warn({ conn: record.id, err: restored.message }, 'restore failed; resetting the client');
    resetClient(state, answer);
    return { result: 'restore-failed' };
  }
  const socket = new net.Socket({ fd: restored.fd, readable: true, writable: true, allowHalfOpen: true });
  if (plan.kind === 'abort') {
    logger.warn({ conn: record.id, reason: plan.reason, serverOffset }, 'cannot resume exactly; resetting');
    socket.resetAndDestroy();
    return { result: 'unresumable' };
  }
  if (plan.kind === 'finish') {
    socket.end(() => socket.destroy());
    return { result: 'finished' };
  }
  const connection = server.adopt(
    socket,
    { streamMap: stream.map, bytesFromClient: clientOffset, bytesToClient: serverOffset, steps: plan.steps, replay: plan.replay, clientFinished: plan.clientFinished, ...(stream.snapshot ? { snapshot: stream.snapshot } : {}) },
    record.id,
  );
  logger.info(
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
  // Same anchors as before (the sequence space continues); the clock is the new socket's.
  return { result: 'resumed', connection, transport: { ...transportOf(restored.state, serverOffset), sendSeq: state.sendSeq, recvSeq: state.recvSeq } };
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
