/*
 * Theory of operation: the rest of a response, from this server's origin, for a peer whose own
 * origin is away (relay/origin-recovery.ts asks for it).
 *
 * In: TCP connections on this server's cluster address (--address, port --peer-port), each one
 * range request (the client's original request, Range + If-Range, as relay/resume.ts writes it)
 * whose last header line is `x-wedge-peer-auth: v1 kid=K ts=MS mac=B64URL`: an HMAC-SHA256, with
 * a key derived from the cluster key K, over the timestamp and every byte of the head before that
 * line. Out: the request, without that line, to the local origin, and the origin's answer,
 * byte for byte, back to the peer (whose relay checks it is the 206 of the same representation).
 *
 * Besides, `GET /wedge-time` answers this host's wall clock (no key: nothing secret), so that a
 * peer's `wedge check` can measure the clock offset the TCP timestamps depend on.
 *
 * Scope: only GETs with Range and If-Range, signed within the last 30 s by a holder of the
 * cluster key; anything else gets a 403 and is closed, logged, without reaching the origin. A
 * stranger can learn nothing the service address would not tell it; a replayed signed request
 * (within 30 s) only fetches the same range again.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import net, { type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { PeerOrigin } from '../relay/origin-recovery.js';
import type { KeyRing } from '../softstate/index.js';

export const DEFAULT_PEER_PORT = 7078;
const AUTH_HEADER = 'x-wedge-peer-auth';
const MAX_SKEW_MS = 30_000;
const MAX_HEAD_BYTES = 32 * 1024;
const HEAD_TIMEOUT_MS = 5000;
/* `GET /wedge-time`: this host's wall clock, for a peer's `wedge check` (not secret, no key). */
export const TIME_PATH = '/wedge-time';

function macKey(ring: KeyRing, keyId: number): Buffer | undefined {
  const key = ring.keys.get(keyId);
  return key && Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'wedge peer range v1', 32));
}

function mac(key: Buffer, timestamp: number, head: Buffer): Buffer {
  return createHmac('sha256', key).update(`${timestamp}\n`).update(head).digest();
}

/* The header line that authorises `request` (the head's lines, each ending CRLF) at a peer. */
export function authorizeRange(ring: KeyRing, request: Buffer, now = Date.now()): Buffer {
  const key = macKey(ring, ring.current)!;
  return Buffer.from(`${AUTH_HEADER}: v1 kid=${ring.current} ts=${now} mac=${mac(key, now, request).toString('base64url')}\r\n`, 'latin1');
}

/* The head without its auth line, if the line is valid for it; else why not. */
export function verifyRange(ring: KeyRing, head: Buffer, now = Date.now()): { ok: true; request: Buffer } | { ok: false; why: string } {
  const text = head.toString('latin1');
  if (!text.endsWith('\r\n\r\n')) return { ok: false, why: 'incomplete head' };
  const lines = text.slice(0, -4).split('\r\n');
  const last = lines.pop() ?? '';
  const auth = /^x-wedge-peer-auth:\s*v1 kid=(\d+) ts=(\d+) mac=([A-Za-z0-9_-]+)$/i.exec(last);
  if (!auth) return { ok: false, why: 'no auth line last' };
  const request = Buffer.from(lines.join('\r\n') + '\r\n', 'latin1');
  const timestamp = Number(auth[2]);
  if (Math.abs(now - timestamp) > MAX_SKEW_MS) return { ok: false, why: 'stale signature' };
  const key = macKey(ring, Number(auth[1]));
  if (!key) return { ok: false, why: 'unknown key' };
  const given = Buffer.from(auth[3]!, 'base64url');
  const expected = mac(key, timestamp, request);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: 'bad signature' };
  const names = lines.slice(1).map((line) => line.slice(0, line.indexOf(':')).trim().toLowerCase());
  if (!lines[0]!.startsWith('GET ') || !names.includes('range') || !names.includes('if-range')) return { ok: false, why: 'not a range request' };
  return { ok: true, request: Buffer.concat([request, Buffer.from('\r\n')]) };
}

/* The live peers' origins, as origin recovery asks them. */
export function peerOrigins(addresses: readonly string[], port: number, ring: KeyRing): PeerOrigin[] {
  return addresses.map((host) => ({ name: host, endpoint: { host, port }, authorize: (request: Buffer) => authorizeRange(ring, request) }));
}

export class PeerRangeService {
  private server: Server | undefined;

  constructor(
    private readonly listen: { host: string; port: number },
    private readonly origin: { host: string; port: number },
    private readonly ring: KeyRing,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listen, () => resolve());
    });
    this.server = server;
    this.log.info({ listen: this.listen }, 'serving ranges to peers');
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private serve(peer: Socket): void {
    let head = Buffer.alloc(0);
    peer.setTimeout(HEAD_TIMEOUT_MS, () => peer.destroy());
    peer.on('error', () => peer.destroy());
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 && head.length <= MAX_HEAD_BYTES) return;
      peer.off('data', onData);
      peer.setTimeout(0);
      if (head.subarray(0, TIME_PATH.length + 5).toString('latin1') === `GET ${TIME_PATH} `) {
        const body = JSON.stringify({ now: Date.now() });
        peer.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
      const verdict = end < 0 ? { ok: false as const, why: 'head too long' } : verifyRange(this.ring, head.subarray(0, end + 4));
      if (!verdict.ok) {
        this.log.warn({ peer: peer.remoteAddress, why: verdict.why }, 'peer range request refused');
        peer.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      this.log.info({ peer: peer.remoteAddress }, 'serving a range to a peer');
      this.relay(peer, verdict.request, head.subarray(end + 4));
    };
    peer.on('data', onData);
  }

  /* The request to the local origin, then bytes both ways as they come, until either side closes. */
  private relay(peer: Socket, request: Buffer, rest: Buffer): void {
    const origin = net.connect(this.origin);
    // A failing origin resets the peer's request (it then asks elsewhere); a clean end ends it.
    origin.on('error', () => peer.destroy());
    peer.on('close', () => origin.destroy());
    origin.write(request);
    if (rest.length > 0) origin.write(rest);
    origin.pipe(peer);
    peer.pipe(origin);
  }
}
