/*
 * Origins for relay tests on loopback: a real node:http file server with strong ETags and byte
 * ranges, and a raw socket origin that answers every request with literal bytes (for framings a
 * well-behaved server library would never produce).
 */
import http from 'node:http';
import net from 'node:net';
import { sha256 } from './bytes.js';

export interface TestFile {
  path: string;
  body: Buffer;
  sha256: string;
  etag: string;
}

/* Deterministic pseudo-random content, so that every copy has the same bytes. */
export function makeFile(path: string, size: number, seed = 1): TestFile {
  const body = Buffer.allocUnsafe(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    body[i] = x & 0xff;
  }
  const digest = sha256(body);
  return { path, body, sha256: digest, etag: `"${digest.slice(0, 32)}"` };
}

export async function startFileOrigin(files: TestFile[]): Promise<{ port: number; close(): Promise<void> }> {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 64 });
        res.end(sha256(body));
      });
      return;
    }
    const file = byPath.get(req.url ?? '');
    if (!file) {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    const start = range && (!ifRange || ifRange === file.etag) ? Number(range[1]) : 0;
    const headers = { etag: file.etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (range && start === Number(range[1])) {
      res.writeHead(206, { ...headers, 'content-length': file.body.length - start, 'content-range': `bytes ${start}-${file.body.length - 1}/${file.body.length}` });
    } else {
      res.writeHead(200, { ...headers, 'content-length': file.body.length });
    }
    res.end(req.method === 'HEAD' ? undefined : file.body.subarray(start));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/* Answers each request head (read up to CRLFCRLF) with `respond(requestHead)`'s bytes; `end` closes after. */
export async function startLiteralOrigin(
  respond: (requestHead: string) => { bytes: Buffer | string; end?: boolean },
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let at: number;
      while ((at = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, at + 4);
        buffered = buffered.slice(at + 4);
        const { bytes, end } = respond(head);
        if (end) socket.end(bytes);
        else socket.write(bytes);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/* Sends `bytes` on a fresh connection and collects everything until the peer closes. */
export function rawExchange(port: number, bytes: Buffer | string, halfClose = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.write(bytes);
    if (halfClose) socket.end();
  });
}
