/*
 * Theory of operation: address takeover (clients completely unmodified).
 *
 *   detect   the soft-state member reports a peer dead (silent, restarted, or declared dead by
 *            an operator, possibly by mistake);
 *   choose   for each service address the dead peer answered for, every live member computes
 *            the same adopter by rendezvous hashing (wedge/adoption.ts); only the adopter acts;
 *   guard    our stack's RSTs to the clients being adopted are dropped (wedge/rst-guard.ts)
 *            until their sockets exist here;
 *   address  the adopter adds the address and announces it with gratuitous ARP;
 *   probe    for all advertised connections of the address at once, right after it is
 *            announced and while the link is still idle, one old segment each makes the client's
 *            kernel tell its next wanted byte and its own next byte (native/probe, one batch);
 *   restore  then connection by connection, yielding to the event loop every few: TCP_REPAIR
 *            rebuilds the endpoint at exactly that point (native/repair);
 *   resume   the stream map says what that byte is (splice/resume.ts) and the relay continues
 *            from there with the local origin; the record is advertised with migration + 1, so
 *            the old owner, if it is in fact alive, steps back without a word to the client.
 * A connection that cannot be resumed exactly is reset and counted by reason.
 */
import net from 'node:net';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  addAddress,
  dump,
  gratuitousArp,
  NativeError,
  probeMany,
  removeAddress,
  restore,
  sendTcpSegment,
  socketFd,
  TCP_ACK,
  TCP_RST,
  type ConnectionDump,
  type ProbeAnswer,
  type ProbeResult,
} from '../native/index.js';
import { planResume } from '../splice/resume.js';
import type { ConnectionRecord, SoftStateMember } from '../softstate/index.js';
import { chooseAdopter } from './adoption.js';
import type { WedgeMetrics } from './metrics.js';
import { parseReplicatedStream, transportOf, type Replication } from './replication.js';
import { RESTORED_MARK, type RstGuard } from './rst-guard.js';
import type { WedgeServer } from './server.js';

/* restore() attempts while a forked child may still hold the probe's placeholder (restoreSoon). */
const RESTORE_ATTEMPTS = 10;
const RESTORE_RETRY_MS = 5;

/* How long after an erroneous death report to watch for peers adopting our addresses. */
const STEP_BACK_WATCH_MS = 5000;

/* Connections probed in one batch, at most: each holds a placeholder fd while it waits. */
const MAX_PROBE_BATCH = 2048;

export interface TakeoverConfig {
  self: string;
  iface: string;
  prefixLength: number;
  probeTimeoutMs: number;
  probeRetries: number;
  /* Connections restored and resumed in one turn of the event loop, between yields. Large turns
   * finish a mass takeover sooner (the I/O of connections already resumed waits meanwhile, but
   * their bodies move in the kernel, and heartbeats come from their own thread). */
  resumesPerTurn: number;
}

/* A connection to take over: its record, its stream map and its transport as restore() wants it. */
interface Adoptee {
  record: ConnectionRecord;
  stream: NonNullable<ReturnType<typeof parseReplicatedStream>>;
  state: ConnectionDump;
}

export class Takeover {
  /* Service addresses this server answers for: its own and those it adopted. */
  private readonly services = new Set<string>();

  constructor(
    private readonly config: TakeoverConfig,
    private readonly member: SoftStateMember,
    private readonly server: WedgeServer,
    private readonly replication: Replication,
    private readonly guard: RstGuard,
    private readonly metrics: WedgeMetrics,
    private readonly logger: Logger,
  ) {}

  start(ownServices: readonly string[]): void {
    for (const address of ownServices) this.services.add(address);
    this.publishServices();
    this.member.on('peer-dead', (peer, reason) => void this.onPeerDead(peer, reason));
    this.member.on('declared-dead-self', (declarer, reason) => this.stepBack(declarer, reason));
  }

  /*
   * Someone declared this server dead while it lives (an erroneous report). Its connections
   * come back as 'superseded' records and are let go one by one (wedge/replication.ts); its
   * addresses are released once a live peer says it has adopted them, so that one address is
   * answered by one host again.
   */
  private stepBack(declarer: string, reason: string): void {
    this.logger.warn({ declarer, reason }, 'declared dead while alive: releasing what peers adopt');
    const until = performance.now() + STEP_BACK_WATCH_MS;
    const timer = setInterval(() => {
      for (const peer of this.member.peers()) {
        if (!peer.alive) continue;
        for (const address of peer.services) if (this.services.has(address)) void this.release(address);
      }
      if (performance.now() > until) clearInterval(timer);
    }, 50);
    timer.unref();
  }

  /* detect → choose */
  private async onPeerDead(peer: string, reason: string): Promise<void> {
    const peers = this.member.peers();
    const live = [this.config.self, ...peers.filter((p) => p.alive && p.address !== peer).map((p) => p.address)];
    // A peer can be reported dead again (late heartbeats made it look alive for a moment):
    // connections already taken over here are served here, not taken again.
    const records = this.member.recordsOwnedBy(peer).filter((r) => !this.server.connections.has(r.id));
    const addresses = new Set([...(peers.find((p) => p.address === peer)?.services ?? []), ...records.map((r) => r.service.address)]);
    const mine = [...addresses].filter(
      (address) => chooseAdopter(address, live) === this.config.self && (!this.services.has(address) || records.some((r) => r.service.address === address)),
    );
    this.logger.warn({ peer, reason, addresses: [...addresses], adopting: mine, connections: records.length }, 'peer dead');
    await Promise.all(mine.map((address) => this.adoptAddress(address, records.filter((r) => r.service.address === address))));
  }

  /* guard → address → probe all → (restore → resume) for each connection */
  private async adoptAddress(address: string, records: ConnectionRecord[]): Promise<void> {
    const started = performance.now();
    const clients = records.map((r) => r.client);
    const steps: Record<string, number> = {};
    const lap = (name: string) => (steps[name] = +(performance.now() - started).toFixed(1));
    try {
      await this.guard.guard(clients);
      lap('guardMs');
      await addAddress(this.config.iface, `${address}/${this.config.prefixLength}`);
      lap('addressMs');
    } catch (err) {
      this.logger.error({ address, err: (err as Error).message }, 'cannot adopt address');
      this.metrics.takeovers.inc({ result: 'address-failed' }, records.length);
      return;
    }
    this.services.add(address);
    this.publishServices();
    this.announce(address);
    const results: string[] = [];
    for (let first = 0; first < records.length; first += MAX_PROBE_BATCH) {
      results.push(...(await this.adoptBatch(records.slice(first, first + MAX_PROBE_BATCH))));
    }
    lap('resumedMs');
    const resumed = results.filter((r) => r === 'resumed').length;
    this.logger.info({ address, connections: records.length, resumed, ...steps }, 'address adopted');
  }

  /* probe (the whole batch at once) → restore → resume, connection by connection */
  private async adoptBatch(records: ConnectionRecord[]): Promise<string[]> {
    const started = performance.now();
    const results: string[] = [];
    const adoptees: Adoptee[] = [];
    for (const record of records) {
      const stream = parseReplicatedStream(record.streamMap);
      if (stream) adoptees.push({ record, stream, state: dumpOf(record) });
      else results.push(this.count('bad-record', 0));
    }
    const probes = await probeMany(
      adoptees.map(({ state, stream }) => ({ ...state, ack: (state.recvSeq + stream.received) >>> 0 })),
      { ifname: this.config.iface, timeoutMs: this.config.probeTimeoutMs, retries: this.config.probeRetries },
    );
    const probeMs = performance.now() - started;
    for (const [i, adoptee] of adoptees.entries()) {
      // Let timers and I/O run between turns: the connections served meanwhile wait at most one
      // turn (a few hundred milliseconds for 256).
      if (i > 0 && i % this.config.resumesPerTurn === 0) await setImmediate();
      const resumeStarted = performance.now();
      const result = await this.resumeConnection(adoptee, probes[i], probeMs).catch((err: Error) => {
        this.logger.warn({ conn: adoptee.record.id, err: err.message }, 'takeover failed');
        return 'failed';
      });
      results.push(this.count(result, probeMs + performance.now() - resumeStarted));
    }
    return results;
  }

  /* Counts one connection's takeover; `ms` is its probe (the batch's), restore and resume. */
  private count(result: string, ms: number): string {
    this.metrics.takeovers.inc({ result: result === 'resumed' || result === 'finished' ? result : 'aborted' });
    this.metrics.takeoverSeconds.observe(ms / 1000);
    if (result !== 'resumed' && result !== 'finished') this.metrics.abort(`takeover: ${result}`);
    return result;
  }

  private async resumeConnection({ record, stream, state }: Adoptee, answer: ProbeResult, probeMs: number): Promise<string> {
    if (answer instanceof NativeError) return answer.code === 'ECONNRESET' ? 'client-gone' : 'probe-failed';
    const started = performance.now();
    const serverOffset = unwrap((answer.ack - state.sendSeq) >>> 0, stream.sent);
    const clientOffset = unwrap((answer.seq - state.recvSeq) >>> 0, stream.received);
    const plan = planResume(stream.map, serverOffset, clientOffset, stream.received);
    if (plan.kind === 'closed') {
      this.logger.info({ conn: record.id, serverOffset }, 'connection already closed: nothing to take over');
      return 'finished';
    }
    let fd: number;
    try {
      fd = await restoreSoon(state, answer);
    } catch (err) {
      this.logger.warn({ conn: record.id, err: (err as Error).message }, 'restore failed; resetting the client');
      resetClient(state, answer);
      return 'restore-failed';
    }
    const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    const restoreMs = performance.now() - started;
    if (plan.kind === 'abort') {
      this.logger.warn({ conn: record.id, reason: plan.reason, serverOffset }, 'cannot resume exactly; resetting');
      socket.resetAndDestroy();
      return 'unresumable';
    }
    if (plan.kind === 'finish') {
      socket.end(() => socket.destroy());
      return 'finished';
    }
    const connection = this.server.adopt(socket, {
      streamMap: stream.map,
      bytesFromClient: clientOffset,
      bytesToClient: serverOffset,
      steps: plan.steps,
      replay: plan.replay,
      clientFinished: plan.clientFinished,
    });
    // Same anchors as before (the sequence space continues); the clock is this socket's now.
    const transport = { ...transportOf(dump(socketFd(socket)), serverOffset), sendSeq: state.sendSeq, recvSeq: state.recvSeq };
    this.replication.track(connection, transport, record.migration + 1);
    this.logger.info({ conn: record.id, serverOffset, probeMs: +probeMs.toFixed(2), probeRttMs: +answer.rttMs.toFixed(2), probes: answer.attempts, restoreMs: +restoreMs.toFixed(2), steps: plan.steps.length, replay: plan.replay.length }, 'connection resumed');
    return 'resumed';
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

  private async release(address: string): Promise<void> {
    if (!this.services.delete(address)) return;
    this.publishServices();
    this.logger.warn({ address }, 'releasing a service address adopted by a peer');
    await removeAddress(this.config.iface, `${address}/${this.config.prefixLength}`).catch((err: Error) =>
      this.logger.error({ address, err: err.message }, 'cannot remove address'),
    );
  }

  private publishServices(): void {
    this.member.setServices([...this.services]);
  }
}

/*
 * restore(), retried briefly on EADDRNOTAVAIL. The probe has closed its placeholder for this
 * 4-tuple, but a child process forked meanwhile (nft, guarding another address adopted at once)
 * holds a copy of that fd until it execs, and until then the kernel refuses a second socket for
 * the same 4-tuple. Seen with 200 connections adopted at once.
 */
async function restoreSoon(state: ConnectionDump, answer: ProbeAnswer): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return restore(state, answer, { mark: RESTORED_MARK });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRNOTAVAIL' || attempt === RESTORE_ATTEMPTS) throw err;
      await sleep(RESTORE_RETRY_MS);
    }
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

/* The record's transport as the native restore wants it: byte 0 of each stream as anchors. */
function dumpOf(record: ConnectionRecord): ConnectionDump {
  const t = record.transport;
  return {
    localAddress: record.service.address,
    localPort: record.service.port,
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
