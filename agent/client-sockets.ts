import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Endpoint } from '../migrate/option.js';

/*
 * The client host's own TCP sockets, as its kernel lists them in /proc/net/tcp (the agent runs
 * in the client's network namespace, so that file is exactly the client's). How the agent
 * notices that a connection ended: its socket is gone, or only a TIME_WAIT / CLOSE entry is
 * left. Keys are the 4-tuple as the client socket sees it: after a migration that is still the
 * ORIGINAL server's endpoint, because the rewrite happens below the socket.
 */

/** Kernel TCP states by the hex code /proc/net/tcp prints (include/net/tcp_states.h). */
const ENDED_STATES = new Set(['06' /* TIME_WAIT */, '07' /* CLOSE */]);

/** "client addr:port>server addr:port": one connection as the client socket names it. */
export function socketKey(client: Endpoint, server: Endpoint): string {
  return `${client.address}:${client.port}>${server.address}:${server.port}`;
}

/** /proc/net/tcp prints an address as the 32-bit word in host byte order, in hex. */
function procAddress(hex: string, littleEndian: boolean): string {
  const bytes = Buffer.alloc(4);
  const word = Number.parseInt(hex, 16);
  if (littleEndian) bytes.writeUInt32LE(word);
  else bytes.writeUInt32BE(word);
  return [...bytes].join('.');
}

function procEndpoint(text: string, littleEndian: boolean): Endpoint | undefined {
  const match = /^([0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})$/.exec(text);
  if (!match) return undefined;
  return { address: procAddress(match[1]!, littleEndian), port: Number.parseInt(match[2]!, 16) };
}

/**
 * The keys of the sockets that are still open (any state but TIME_WAIT and CLOSE), from the text
 * of /proc/net/tcp. Lines it does not understand are skipped.
 */
export function openSocketKeys(procNetTcp: string, littleEndian = endianness() === 'LE'): Set<string> {
  const open = new Set<string>();
  for (const line of procNetTcp.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [local, remote, state] = [fields[1], fields[2], fields[3]];
    if (!local || !remote || !state || ENDED_STATES.has(state)) continue;
    const client = procEndpoint(local, littleEndian);
    const server = procEndpoint(remote, littleEndian);
    if (client && server) open.add(socketKey(client, server));
  }
  return open;
}

/** Reads this namespace's IPv4 TCP sockets now. */
export async function readOpenSockets(): Promise<Set<string>> {
  return openSocketKeys(await readFile('/proc/net/tcp', 'utf8'));
}
