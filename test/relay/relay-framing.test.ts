/*
 * Responses of every framing are relayed exactly; those that cannot be resumed are marked so;
 * an origin that dies mid-body makes the wedge reset the client instead of ending it cleanly.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { RelayConnection } from '../../relay/connection.js';
import type { WedgeServer } from '../../daemon/server.js';
import { expectSameBytes, sha256 } from '../support/bytes.js';
import { makeFile, rawExchange, startFileOrigin, startLiteralOrigin } from '../support/fake-origins.js';
import { splice } from '../../native/index.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function wedgeInFrontOf(origin: { port: number; close(): Promise<void> }): Promise<WedgeServer> {
  const wedge = await startLoopbackWedge(origin.port);
  cleanups.push(() => origin.close(), () => wedge.stop());
  return wedge;
}

function exchangesOf(connection: RelayConnection): Array<Record<string, unknown>> {
  return connection.streamMap.toJSON().exchanges as Array<Record<string, unknown>>;
}

describe('response framings', () => {
  it('relays a chunked response exactly and marks it not resumable', async () => {
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n';
    const wedge = await wedgeInFrontOf(await startLiteralOrigin(() => ({ bytes: chunked })));
    const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const reply = await rawExchange(wedge.listenPort, 'GET /x HTTP/1.1\r\nHost: t\r\n\r\nGET /y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    expect(reply.toString('latin1')).toBe(chunked + chunked);
    const exchanges = exchangesOf(await seen);
    expect(exchanges).toHaveLength(2);
    expect(exchanges[0]!.resumable).toBe(false);
    expect(exchanges[1]!.responseStart).toBe(chunked.length);
  });

  it('relays a read-until-close response and closes the client after it', async () => {
    const body = Buffer.alloc(100_000, 9);
    const wedge = await wedgeInFrontOf(await startLiteralOrigin(() => ({ bytes: Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), body]), end: true })));
    const reply = await rawExchange(wedge.listenPort, 'GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
    expect(reply.subarray(reply.indexOf('\r\n\r\n') + 4).equals(body)).toBe(true);
  });

  it('relays a POST body and marks the exchange not resumable', async () => {
    const payload = Buffer.alloc(200_000, 3);
    const wedge = await wedgeInFrontOf(await startFileOrigin([]));
    const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const reply = await rawExchange(wedge.listenPort, Buffer.concat([
      Buffer.from(`POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`), payload]));
    expect(reply.subarray(reply.indexOf('\r\n\r\n') + 4).toString()).toBe(sha256(payload));
    expect(exchangesOf(await seen)[0]!.resumable).toBe(false);
  });

  it('answers 502 when the origin is down', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const wedge = await wedgeInFrontOf({ port, close: async () => undefined });
    const reply = (await rawExchange(wedge.listenPort, 'GET /x HTTP/1.1\r\nHost: t\r\n\r\n')).toString('latin1');
    expect(reply).toMatch(/^HTTP\/1\.1 502 [^]*WEDGE_ERR_ORIGIN_UNREACHABLE/);
  });

  it('resets the client when the origin dies in the middle of a body', async () => {
    const wedge = await wedgeInFrontOf(await startLiteralOrigin(() => ({ bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-a-bit', end: true })));
    const outcome = await new Promise<string>((resolve) => {
      const socket = net.connect(wedge.listenPort, '127.0.0.1', () => socket.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n'));
      socket.on('data', () => undefined);
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      socket.on('end', () => resolve('clean end'));
    });
    expect(outcome).toBe('ECONNRESET');
  });

  it.each([['JavaScript', undefined], ['kernel splice', { splice }]] as const)('serves large files byte-exact on one connection through %s', async (_how, splicer) => {
    const big = makeFile('/big.bin', 8 * 1024 * 1024, 5);
    const other = makeFile('/other.bin', 3 * 1024 * 1024 + 17, 6);
    const origin = await startFileOrigin([big, other]);
    const wedge = await startLoopbackWedge(origin.port, splicer);
    cleanups.push(() => origin.close(), () => wedge.stop());
    const reply = await rawExchange(wedge.listenPort, 'GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /other.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    let at = 0;
    for (const file of [big, other, big]) {
      at = reply.indexOf('\r\n\r\n', at) + 4;
      await expectSameBytes(reply.subarray(at, at + file.body.length), file.body, file.path);
      at += file.body.length;
    }
    expect(at).toBe(reply.length);
    const metrics = await (await fetch(`http://127.0.0.1:${wedge.adminPort}/metrics`)).text();
    const spliced = Number(/wedge_spliced_bytes_total (\d+)/.exec(metrics)?.[1]);
    if (splicer) expect(spliced).toBeGreaterThan(18 * 1024 * 1024);
    else expect(spliced).toBe(0);
  });
});
