import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { socketKey } from './client-sockets.js';

/*
 * How many bytes each of the client's established TCP sockets has received (tcpi_bytes_received)
 * and how many wait unread in its receive queue (Recv-Q), read with `ss -tinH` (iproute2), which
 * prints per socket a line with Recv-Q and the 4-tuple and an indented line of TCP_INFO fields.
 * Keys are the client socket's own 4-tuple (socketKey).
 */

export interface ReceiveState {
  received: number;
  /* Bytes the application has not read yet: while there are any, the reader, not the path, sets the pace. */
  queued: number;
}

const run = promisify(execFile);

/** Receive state by socket key, from `ss -tinH` output; a socket with no bytes_received listed has 0. */
export function parseReceiveState(ssOutput: string): Map<string, ReceiveState> {
  const states = new Map<string, ReceiveState>();
  let current: string | undefined;
  for (const line of ssOutput.split('\n')) {
    if (!line.trim()) continue;
    if (!/^\s/.test(line)) {
      // "[State] Recv-Q Send-Q Local:Port Peer:Port": the last two fields are the endpoints.
      const fields = line.trim().split(/\s+/);
      const local = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(fields.at(-2) ?? '');
      const peer = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(fields.at(-1) ?? '');
      current = local && peer ? socketKey({ address: local[1]!, port: Number(local[2]) }, { address: peer[1]!, port: Number(peer[2]) }) : undefined;
      if (current) states.set(current, { received: 0, queued: Number(fields.at(-4)) || 0 });
      continue;
    }
    const bytes = /\bbytes_received:(\d+)/.exec(line);
    if (current && bytes) states.get(current)!.received = Number(bytes[1]);
  }
  return states;
}

/** Runs ss for the established IPv4 sockets to any of `ports` (the services' ports). */
export async function readReceiveState(ports: readonly number[]): Promise<Map<string, ReceiveState>> {
  const filter = ['(', ...ports.flatMap((port, i) => (i ? ['or'] : []).concat(['dport', '=', `:${port}`])), ')'];
  const { stdout } = await run('ss', ['-4tinH', 'state', 'established', ...filter], { maxBuffer: 64 << 20 });
  return parseReceiveState(stdout);
}
