import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ConnectionBinding } from '../migrate/negotiation.js';
import { readReceiveState } from './receive-counters.js';
import { PollLoop } from './poll-loop.js';

/*
 * Connections nobody can save, ended loudly instead of left hanging.
 *
 * A connection whose server died before their key exchange finished cannot be moved by any
 * replica (none holds its key), and under TCP Migrate no replica holds its address either: its
 * client would wait for its own timeout, often forever. The learner lists such connections (their
 * server never answered: silent()). Every pollMs this watch reads how many bytes each has
 * received; one that received nothing for quietMs gets one more key exchange (retry): a live
 * server answers it, and the connection is protected from then on. If the server stays silent,
 * the client's socket is destroyed (`ss -K`, SOCK_DESTROY: the client sees ECONNABORTED at once)
 * and onReset reports it. A silent server that keeps sending keeps its connection.
 */

const run = promisify(execFile);

export interface OrphanWatchOptions {
  ports: readonly number[];
  /** Nothing received for this long, and the server silent: reset. */
  quietMs: number;
  /** Default 1000 ms. */
  pollMs?: number;
  /** The connections whose server never answered, by socket key. */
  connections: () => Iterable<[string, { binding: ConnectionBinding }]>;
  /** One more key exchange; true if the server answered. */
  retry: (key: string) => Promise<boolean>;
  onReset: (binding: ConnectionBinding, quietMs: number) => void;
  onError: (error: Error) => void;
}

const DEFAULT_POLL_MS = 1000;

/** Destroys the client's socket of BINDING (needs CAP_NET_ADMIN); true if one was found. */
export async function destroyClientSocket({ client, server }: ConnectionBinding): Promise<boolean> {
  const { stdout } = await run('ss', ['-K', '-4tnH', 'state', 'established', 'src', `${client.address}:${client.port}`, 'dst', `${server.address}:${server.port}`]);
  return stdout.trim().length > 0;
}

export class OrphanWatch {
  /* Bytes received and since when, per socket key. */
  private readonly progress = new Map<string, { received: number; sinceMs: number }>();
  private readonly loop: PollLoop;

  constructor(private readonly options: OrphanWatchOptions) {
    this.loop = new PollLoop(options.pollMs ?? DEFAULT_POLL_MS, () => this.poll());
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  private async poll(): Promise<void> {
    const connections = new Map(this.options.connections());
    for (const key of this.progress.keys()) if (!connections.has(key)) this.progress.delete(key);
    if (connections.size === 0) return;
    try {
      const received = await readReceiveState(this.options.ports);
      const now = performance.now();
      const quiet: Array<{ key: string; binding: ConnectionBinding; sinceMs: number }> = [];
      for (const [key, { binding }] of connections) {
        const state = received.get(key);
        if (!state) continue;
        const seen = this.progress.get(key);
        if (!seen || seen.received !== state.received) this.progress.set(key, { received: state.received, sinceMs: now });
        else if (now - seen.sinceMs >= this.options.quietMs) quiet.push({ key, binding, sinceMs: seen.sinceMs });
      }
      await Promise.all(quiet.map(async ({ key, binding, sinceMs }) => {
        this.progress.delete(key);
        if (await this.options.retry(key)) return;
        if (await destroyClientSocket(binding)) this.options.onReset(binding, Math.round(performance.now() - sinceMs));
      }));
    } catch (error) {
      this.options.onError(error as Error);
    }
  }
}
