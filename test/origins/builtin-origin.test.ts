/*
 * The built-in origin on loopback, over real HTTP: what the wedge relies on when it resumes a
 * download with `Range` + `If-Range` on another replica.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOrigin } from '../../examples/origins/server.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  reusedSocket: boolean;
}

function request(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', agent?: http.Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), reusedSocket: req.reusedSocket }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as AddressInfo).port;
}

const SIZE = 300_000;
const MTIME = new Date('2024-03-01T12:00:00Z');

describe('built-in origin', () => {
  let dirA: string;
  let dirB: string;
  let content: Buffer;
  let sha: string;
  let appA: FastifyInstance;
  let appB: FastifyInstance;
  let portA: number;
  let portB: number;

  beforeAll(async () => {
    dirA = await mkdtemp(join(tmpdir(), 'wedge-origin-a-'));
    dirB = await mkdtemp(join(tmpdir(), 'wedge-origin-b-'));
    content = randomBytes(SIZE);
    sha = createHash('sha256').update(content).digest('hex');
    for (const dir of [dirA, dirB]) {
      await writeFile(join(dir, 'file.bin'), content);
      await utimes(join(dir, 'file.bin'), MTIME, MTIME);
    }
    // Same size and mtime as file.bin, different bytes: must not share its ETag.
    await writeFile(join(dirA, 'twin.bin'), randomBytes(SIZE));
    await utimes(join(dirA, 'twin.bin'), MTIME, MTIME);
    appA = await createOrigin({ root: dirA, log: false });
    appB = await createOrigin({ root: dirB, log: false });
    portA = await listen(appA);
    portB = await listen(appB);
  });

  afterAll(async () => {
    await appA?.close();
    await appB?.close();
    await rm(dirA, { recursive: true, force: true });
    await rm(dirB, { recursive: true, force: true });
  });

  it('serves the whole file with a strong ETag, Last-Modified and Accept-Ranges', async () => {
    const r = await request(portA, '/file.bin');
    expect(r.status).toBe(200);
    expect(r.body.equals(content)).toBe(true);
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers['content-length']).toBe(String(SIZE));
    expect(r.headers['last-modified']).toBe(MTIME.toUTCString());
    expect(r.headers.etag).toBe(`"sha256-${sha}"`);
  });

  it('gives identical copies the same ETag on two replicas, and different bytes a different one', async () => {
    const a = await request(portA, '/file.bin', {}, 'HEAD');
    const b = await request(portB, '/file.bin', {}, 'HEAD');
    const twin = await request(portA, '/twin.bin', {}, 'HEAD');
    expect(a.headers.etag).toBe(b.headers.etag);
    expect(a.headers['last-modified']).toBe(b.headers['last-modified']);
    expect(twin.headers.etag).not.toBe(a.headers.etag);
    expect(twin.headers.etag).not.toMatch(/^W\//);
  });

  it('answers a byte range with 206 and Content-Range', async () => {
    const r = await request(portA, '/file.bin', { range: 'bytes=1000-1999' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 1000-1999/${SIZE}`);
    expect(r.body.equals(content.subarray(1000, 2000))).toBe(true);
    expect(r.headers.etag).toBe(`"sha256-${sha}"`);
  });

  it('answers an open-ended range (what a takeover asks for)', async () => {
    const r = await request(portB, '/file.bin', { range: `bytes=${SIZE - 5000}-` });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes ${SIZE - 5000}-${SIZE - 1}/${SIZE}`);
    expect(r.body.equals(content.subarray(SIZE - 5000))).toBe(true);
  });

  it('honours If-Range with its own ETag, taken from another replica', async () => {
    const etag = (await request(portA, '/file.bin', {}, 'HEAD')).headers.etag!;
    const r = await request(portB, '/file.bin', { range: 'bytes=10-19', 'if-range': etag });
    expect(r.status).toBe(206);
    expect(r.body.equals(content.subarray(10, 20))).toBe(true);
  });

  it('sends the full 200 when If-Range does not match (wrong tag, weak tag, other date)', async () => {
    const etag = (await request(portA, '/file.bin', {}, 'HEAD')).headers.etag!;
    for (const ifRange of ['"sha256-0000"', `W/${etag}`, new Date(MTIME.getTime() - 60_000).toUTCString()]) {
      const r = await request(portA, '/file.bin', { range: 'bytes=10-19', 'if-range': ifRange });
      expect(r.status, ifRange).toBe(200);
      expect(r.headers['content-range']).toBeUndefined();
      expect(r.body.equals(content)).toBe(true);
    }
  });

  it('honours If-Range with the exact Last-Modified date', async () => {
    const r = await request(portA, '/file.bin', { range: 'bytes=0-9', 'if-range': MTIME.toUTCString() });
    expect(r.status).toBe(206);
    expect(r.body.equals(content.subarray(0, 10))).toBe(true);
  });

  it('answers an unsatisfiable range with 416 and the size', async () => {
    const r = await request(portA, '/file.bin', { range: `bytes=${SIZE}-` });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe(`bytes */${SIZE}`);
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const r = await request(portA, '/file.bin', {}, 'HEAD');
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(SIZE));
    expect(r.headers.etag).toBe(`"sha256-${sha}"`);
    expect(r.body.length).toBe(0);
  });

  it('evaluates If-None-Match and If-Match against its strong ETag', async () => {
    const etag = `"sha256-${sha}"`;
    expect((await request(portA, '/file.bin', { 'if-none-match': etag })).status).toBe(304);
    expect((await request(portA, '/file.bin', { 'if-none-match': '"other"' })).status).toBe(200);
    expect((await request(portA, '/file.bin', { 'if-match': etag, range: 'bytes=0-0' })).status).toBe(206);
    expect((await request(portA, '/file.bin', { 'if-match': '"other"' })).status).toBe(412);
  });

  it('keeps the connection alive across requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await request(portA, '/file.bin', { range: 'bytes=0-99' }, 'GET', agent);
      const second = await request(portA, '/file.bin', { range: 'bytes=100-199' }, 'GET', agent);
      expect(first.headers.connection).toBe('keep-alive');
      expect(second.reusedSocket).toBe(true);
      expect(second.body.equals(content.subarray(100, 200))).toBe(true);
    } finally {
      agent.destroy();
    }
  });

  it('gives a rewritten file a new ETag', async () => {
    const other = randomBytes(1000);
    await writeFile(join(dirB, 'changing.bin'), content.subarray(0, 1000));
    await utimes(join(dirB, 'changing.bin'), MTIME, MTIME);
    const before = (await request(portB, '/changing.bin', {}, 'HEAD')).headers.etag;
    await writeFile(join(dirB, 'changing.bin'), other);
    const after = await request(portB, '/changing.bin');
    expect(after.body.equals(other)).toBe(true);
    expect(after.headers.etag).toBe(`"sha256-${createHash('sha256').update(other).digest('hex')}"`);
    expect(after.headers.etag).not.toBe(before);
  });

  it('does not serve outside its root or dotfiles', async () => {
    expect((await request(portA, '/../etc/passwd')).status).toBeGreaterThanOrEqual(400);
    expect((await request(portA, '/%2e%2e/%2e%2e/etc/passwd')).status).toBeGreaterThanOrEqual(400);
    await writeFile(join(dirA, '.secret'), 'x');
    expect((await request(portA, '/.secret')).status).toBeGreaterThanOrEqual(400);
    expect((await request(portA, '/missing.bin')).status).toBe(404);
  });
});
