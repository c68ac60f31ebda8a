/*
 * SenderThread: the member's outgoing half, on a worker thread (sender-worker.ts).
 *
 * Why a thread: peers judge this server alive by its heartbeats, and a main thread busy for a
 * few hundred milliseconds (a thousand connections taken over at once, a GC pause) would miss
 * enough of them to be declared dead, which then cascades. The thread sends a heartbeat every
 * interval as long as the main thread checked in (beat()) within the lease; it also seals every
 * other datagram, in the order handed over, so one sender id keeps one increasing sequence and
 * receivers' replay windows see datagrams in order. Sealing (AES-GCM) leaves the main thread too.
 */
import { Worker } from 'node:worker_threads';
import { WedgeError } from '../errors/codes.js';
import type { KeyRing } from './crypto.js';
import type { Heartbeat, ServiceClaim } from './records.js';
import type { Destination, MulticastTransportOptions, TransportStats } from './transport.js';

export interface SenderSetup {
  ring: KeyRing;
  self: string;
  /* bigint as a decimal string: the member's epoch, so both threads seal as one sender. */
  epoch: string;
  /* The sequence number sealed last under this epoch (0, or the predecessor's: in-place upgrade). */
  lastSeq: number;
  mtu: number;
  transport: MulticastTransportOptions;
  heartbeatIntervalMs: number;
  leaseMs: number;
  beat: { load: Heartbeat['load']; services: ServiceClaim[] };
}

export type SenderCommand =
  /* Frames back to back in `payload` (transferred, not copied), with their lengths. */
  | { kind: 'frames'; payload: Uint8Array; lengths: number[]; to?: Destination }
  | { kind: 'beat'; load: Heartbeat['load']; services: ServiceClaim[]; now: boolean }
  | { kind: 'keys'; ring: KeyRing }
  /* This member leaves its group: no heartbeat after this one command, whatever follows. */
  | { kind: 'silence' }
  | { kind: 'stop' };

export type SenderReport =
  | { kind: 'ready' }
  | { kind: 'failed'; message: string }
  | { kind: 'error'; message: string }
  | { kind: 'stats'; stats: TransportStats; heartbeatsSent: number; lastSeq: number };

/* Under vitest this module runs from its .ts source; the worker always runs compiled (npm test
 * builds first). */
function workerScript(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? '../dist/softstate/sender-worker.js' : './sender-worker.js', import.meta.url);
}

export class SenderThread {
  stats: TransportStats = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, dropped: 0, sendErrors: 0 };
  heartbeatsSent = 0;
  /* The sequence number sealed last (exact once stop() has resolved). */
  lastSeq = 0;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  private constructor(worker: Worker, onError: (err: Error) => void) {
    this.worker = worker;
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (report: SenderReport) => {
      if (report.kind === 'stats') {
        this.stats = report.stats;
        this.heartbeatsSent = report.heartbeatsSent;
        this.lastSeq = report.lastSeq;
      } else if (report.kind === 'error') onError(new Error(`soft-state sender: ${report.message}`));
    });
    worker.on('error', onError);
  }

  static async start(setup: SenderSetup, onError: (err: Error) => void): Promise<SenderThread> {
    const worker = new Worker(workerScript(), { workerData: setup });
    worker.unref();
    const outcome = await new Promise<SenderReport | Error>((resolve) => {
      worker.once('message', resolve);
      worker.once('error', resolve);
    });
    if (outcome instanceof Error || outcome.kind !== 'ready') {
      await worker.terminate();
      const reason = outcome instanceof Error ? outcome.message : outcome.kind === 'failed' ? outcome.message : outcome.kind;
      throw new WedgeError('WEDGE_ERR_STATE_TRANSPORT', `cannot start the soft-state sender: ${reason}`);
    }
    return new SenderThread(worker, onError);
  }

  /* Datagram payloads to seal and send, in this order. */
  send(frames: readonly Buffer[], to?: Destination): void {
    if (frames.length === 0) return;
    const payload = new Uint8Array(frames.reduce((sum, f) => sum + f.length, 0));
    let at = 0;
    for (const frame of frames) {
      payload.set(frame, at);
      at += frame.length;
    }
    const command: SenderCommand = { kind: 'frames', payload, lengths: frames.map((f) => f.length), ...(to ? { to } : {}) };
    this.worker.postMessage(command, [payload.buffer]);
  }

  /* The main thread's check-in, with what the next heartbeats carry; `now` sends one at once. */
  beat(load: Heartbeat['load'], services: ServiceClaim[], now = false): void {
    this.post({ kind: 'beat', load, services, now });
  }

  /* Heartbeats end for good: frames sent after this leave after the last heartbeat. */
  silence(): void {
    this.post({ kind: 'silence' });
  }

  setKeyRing(ring: KeyRing): void {
    this.post({ kind: 'keys', ring });
  }

  async stop(): Promise<void> {
    // Unreferenced while it runs (it must not keep the process alive), but waited for now: a
    // process with nothing else left would otherwise exit with this promise unsettled.
    this.worker.ref();
    this.post({ kind: 'stop' });
    await this.exited;
  }

  private post(command: SenderCommand): void {
    this.worker.postMessage(command);
  }
}
