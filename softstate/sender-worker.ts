/*
 * The member's sender thread (see sender.ts): seals and sends every datagram the member hands
 * it, in order, and sends the heartbeats itself, so that a busy main thread does not fall silent.
 * Heartbeats stop when the main thread has not checked in for leaseMs: a daemon whose event
 * loop is wedged must still be found dead. A long burst of frames (a mass takeover advertises a
 * thousand records at once) would hold the heartbeat timer back, so the burst sends any
 * heartbeat that falls due meanwhile.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { Outbox } from './channel.js';
import type { KeyRing } from './crypto.js';
import type { Heartbeat, ServiceClaim } from './records.js';
import type { SenderCommand, SenderReport, SenderSetup } from './sender.js';
import { MulticastTransport } from './transport.js';

const STATS_INTERVAL_MS = 250;

const setup = workerData as SenderSetup;
const port = parentPort!;
const outbox = new Outbox({ ring: keyRingOf(setup.ring), self: setup.self, epoch: BigInt(setup.epoch), lastSeq: setup.lastSeq, mtu: setup.mtu });
const transport = new MulticastTransport({ ...setup.transport, receive: false });
let beat: { load: Heartbeat['load']; services: ServiceClaim[] } = setup.beat;
let checkedInAt = performance.now();
let heartbeatsSent = 0;
let lastHeartbeatAt = 0;
let silenced = false;
let heartbeats: NodeJS.Timeout | undefined;
let stats: NodeJS.Timeout | undefined;

/* Structured clone turns the ring's Buffers into Uint8Arrays. */
function keyRingOf(ring: { current: number; keys: ReadonlyMap<number, Uint8Array> }): KeyRing {
  return { current: ring.current, keys: new Map([...ring.keys].map(([id, key]) => [id, Buffer.from(key)])) };
}

function report(message: SenderReport): void {
  port.postMessage(message);
}

function sendHeartbeat(): void {
  if (silenced || performance.now() - checkedInAt > setup.leaseMs) return;
  transport.send(outbox.heartbeat(beat.load, beat.services));
  lastHeartbeatAt = performance.now();
  heartbeatsSent++;
}

/* Due at 90 % of the interval, so that the timer's own ticks are never skipped for jitter. */
function heartbeatIfDue(): void {
  if (performance.now() - lastHeartbeatAt >= setup.heartbeatIntervalMs * 0.9) sendHeartbeat();
}

function reportStats(): void {
  report({ kind: 'stats', stats: { ...transport.stats }, heartbeatsSent, lastSeq: outbox.lastSeq });
}

function onCommand(command: SenderCommand): void {
  switch (command.kind) {
    case 'frames': {
      const payload = Buffer.from(command.payload.buffer, command.payload.byteOffset, command.payload.byteLength);
      let at = 0;
      for (const length of command.lengths) {
        transport.send(outbox.seal(payload.subarray(at, at + length)), command.to);
        at += length;
        heartbeatIfDue();
      }
      return;
    }
    case 'beat':
      checkedInAt = performance.now();
      beat = { load: command.load, services: command.services };
      if (command.now) sendHeartbeat();
      return;
    case 'silence':
      silenced = true;
      return;
    case 'keys':
      outbox.setKeyRing(keyRingOf(command.ring));
      return;
    case 'stop':
      clearInterval(heartbeats);
      clearInterval(stats);
      reportStats();
      void transport.stop().then(() => port.close());
      return;
  }
}

transport.on('error', (err) => report({ kind: 'error', message: err.message }));
transport.start().then(
  () => {
    heartbeats = setInterval(heartbeatIfDue, setup.heartbeatIntervalMs);
    stats = setInterval(reportStats, STATS_INTERVAL_MS);
    port.on('message', onCommand);
    sendHeartbeat();
    report({ kind: 'ready' });
  },
  (err: Error) => {
    report({ kind: 'failed', message: err.message });
    port.close();
  },
);
