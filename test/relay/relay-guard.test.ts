/*
 * Every entry point of a connection runs through one guard: a stream-map invariant error resets
 * that connection, is counted, and never reaches the process. Here the map refuses to record the
 * end of a response just after the kernel splice has moved its body (the splice's promise is the
 * entry point), with the real splice engine, on loopback.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WedgeServer } from '../../daemon/server.js';
import { WedgeError } from '../../errors/codes.js';
import { splice } from '../../native/index.js';
import type { RelayConnection } from '../../relay/connection.js';
import { makeFile, rawExchange, startFileOrigin } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const big = makeFile('/big.bin', 2 * 1024 * 1024, 7);
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startFileOrigin([big]);
  wedge = await startLoopbackWedge(origin.port, { splice });
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

async function metric(name: string, labels = ''): Promise<number> {
  const text = await wedge.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('the connection guard', () => {
  it('resets only the connection whose stream map throws after a splice completes, and counts it', async () => {
    const splicedBefore = await metric('wedge_spliced_bytes_total');
    const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const client = net.connect(wedge.listenPort, '127.0.0.1');
    const connection = await seen;
    connection.streamMap.endResponse = () => {
      throw new WedgeError('WEDGE_ERR_STREAM_MAP', 'injected after the splice');
    };
    const outcome = await new Promise<{ bytes: number; how: string }>((resolve) => {
      let bytes = 0;
      client.on('data', (chunk) => (bytes += chunk.length));
      client.on('error', (err: NodeJS.ErrnoException) => resolve({ bytes, how: err.code ?? 'error' }));
      client.on('end', () => resolve({ bytes, how: 'end' }));
      client.write('GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n');
    });
    // The body went through the kernel, then the map refused its end: a reset, never a clean end
    // of the whole response (a reset that overtakes unread data reads as a short stream).
    if (outcome.how !== 'ECONNRESET') expect(outcome.bytes).toBeLessThan(big.body.length);
    expect((await metric('wedge_spliced_bytes_total')) - splicedBefore).toBeGreaterThan(big.body.length / 2);
    expect(connection.state).toBe('aborted');
    expect(await metric('wedge_aborts_total', '{reason="stream-map-error"}')).toBe(1);
    // The daemon carries on: the next connection is served whole.
    const reply = await rawExchange(wedge.listenPort, 'GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    expect(reply.subarray(reply.indexOf('\r\n\r\n') + 4).equals(big.body)).toBe(true);
    expect(await metric('wedge_aborts_total', '{reason="stream-map-error"}')).toBe(1);
  });
});
