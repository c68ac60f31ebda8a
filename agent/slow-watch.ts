import type { ConnectionKeys } from '../migrate/negotiation.js';
import { readReceiveState, type ReceiveState } from './receive-counters.js';
import { SlowDetector, type SlowDetectorOptions } from './slow-detector.js';
import { PollLoop } from './poll-loop.js';

/*
 * Client-triggered migration: every pollMs, reads how many bytes each negotiated connection's
 * client socket has received, and whether its application is behind (receive-counters.ts), and
 * feeds one SlowDetector per connection.
 * When a detector asks for a move, onSlow gets the connection; the caller sends the MOVE. The
 * poll only runs while there are connections, and never overlaps itself.
 */

export interface WatchedConnection {
  keys: ConnectionKeys;
}

export interface SlowWatchOptions {
  ports: readonly number[];
  detector: SlowDetectorOptions;
  /** Default 500 ms. */
  pollMs?: number;
  /** The negotiated connections now, by socket key. */
  connections: () => Iterable<[string, WatchedConnection]>;
  onSlow: (connection: WatchedConnection, bestBytesPerSecond: number) => void;
  onError: (error: Error) => void;
}

const DEFAULT_POLL_MS = 500;

export class SlowWatch {
  private readonly detectors = new Map<string, SlowDetector>();
  private readonly loop: PollLoop;

  constructor(private readonly options: SlowWatchOptions) {
    this.loop = new PollLoop(options.pollMs ?? DEFAULT_POLL_MS, () => this.poll());
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  /** The connection was migrated: measure its new path from scratch. */
  migrated(token: string): void {
    this.detectors.get(token)?.restart();
  }

  private async poll(): Promise<void> {
    const connections = [...this.options.connections()];
    const live = new Set(connections.map(([, c]) => c.keys.token.toString('hex')));
    for (const token of this.detectors.keys()) if (!live.has(token)) this.detectors.delete(token);
    if (connections.length === 0) return;
    let received: Map<string, ReceiveState>;
    try {
      received = await readReceiveState(this.options.ports);
    } catch (error) {
      this.options.onError(error as Error);
      return;
    }
    const now = performance.now();
    for (const [key, connection] of connections) {
      const state = received.get(key);
      if (state === undefined) continue;
      const token = connection.keys.token.toString('hex');
      let detector = this.detectors.get(token);
      if (!detector) this.detectors.set(token, (detector = new SlowDetector(this.options.detector)));
      if (detector.sample(state.received, now, state.queued > 0)) this.options.onSlow(connection, detector.bestRate * 1000);
    }
  }
}
