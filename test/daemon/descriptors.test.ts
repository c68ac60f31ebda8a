/*
 * Descriptors never run out (issue 12, point 6). A real `wedge serve` (plain relay, loopback)
 * started under a hard descriptor limit of 1024 serves only as many connections as that limit
 * holds (a warning says so); one more client gets a clear 503 instead of a reset, the admin API
 * still answers while the data path is full, and once clients leave new ones are served again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';
import { makeFile, rawExchange, startFileOrigin } from '../support/fake-origins.js';

const CLI = join(PACKAGE_ROOT, 'dist', 'cli', 'cli.js');
const small = makeFile('/small.bin', 4096, 9);

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(50)) {
    const value = await probe();
    if (value !== undefined) return value;
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('descriptor limit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wedge-descriptors-'));
  const log = join(dir, 'wedge.log');
  let origin: Awaited<ReturnType<typeof startFileOrigin>>;
  let wedge: ChildProcess;
  let port: number;
  let adminPort: number;

  beforeAll(async () => {
    origin = await startFileOrigin([small]);
    [port, adminPort] = [await freePort(), await freePort()];
    const serve = [CLI, 'serve', '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, '--origin', `http://127.0.0.1:${origin.port}`, '--log-file', log];
    wedge = spawn('sh', ['-c', 'ulimit -n 1024 && exec "$@"', 'sh', process.execPath, ...serve], { stdio: 'ignore' });
    await until(() => (readFileSync(log, { encoding: 'utf8', flag: 'a+' }).includes('"wedge serving"') ? true : undefined), 'the wedge to serve');
  });
  afterAll(async () => {
    wedge.kill('SIGTERM');
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves what the limit holds, refuses the rest with 503, and keeps the admin API answering', async () => {
    const lowered = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).startsWith('--max-connections lowered'));
    expect(lowered, 'a warning that the descriptor limit caps the connections').toBeDefined();
    const limit = Number(lowered!.limit);
    expect(limit).toBeGreaterThan(0);
    expect(limit).toBeLessThan(1024 / 2);

    // Fill the data path with idle keep-alive connections, each having made one request.
    const idle: net.Socket[] = [];
    try {
      for (let i = 0; i < limit; i++) {
        const socket = net.connect(port, '127.0.0.1');
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.once('data', () => resolve());
          socket.write('GET /small.bin HTTP/1.1\r\nHost: t\r\n\r\n');
        });
        idle.push(socket);
      }
      const refused = (await rawExchange(port, 'GET /small.bin HTTP/1.1\r\nHost: t\r\n\r\n')).toString('latin1');
      expect(refused).toMatch(/^HTTP\/1\.1 503 [^]*WEDGE_ERR_TOO_MANY_CONNECTIONS/);
      const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      for (const socket of idle) socket.destroy();
    }
    // Room again once they are gone.
    const reply = await until(async () => {
      const bytes = await rawExchange(port, 'GET /small.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
      return bytes.toString('latin1').startsWith('HTTP/1.1 200') ? bytes : undefined;
    }, 'a connection to be served again');
    expect(reply.subarray(reply.indexOf('\r\n\r\n') + 4).equals(small.body)).toBe(true);
  });
});
