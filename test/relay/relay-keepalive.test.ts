/*
 * Several requests on one keep-alive connection through the wedge: every response arrives
 * byte-exact and in order, and the stream map places each exchange at its exact offsets.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayConnection } from '../../relay/connection.js';
import type { WedgeServer } from '../../daemon/server.js';
import { makeFile, startFileOrigin, type TestFile } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const files = [makeFile('/a.bin', 1000, 1), makeFile('/b.bin', 300_000, 2), makeFile('/c.bin', 1, 3)];
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startFileOrigin(files);
  wedge = await startLoopbackWedge(origin.port);
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

function request(file: TestFile, close = false): string {
  return `GET ${file.path} HTTP/1.1\r\nHost: test\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
}

/* Reads one response with Content-Length framing from `buffer` at `at`. */
function splitResponse(buffer: Buffer, at: number): { headEnd: number; end: number; body: Buffer } {
  const headEnd = buffer.indexOf('\r\n\r\n', at) + 4;
  const head = buffer.subarray(at, headEnd).toString('latin1');
  const length = Number(/content-length: (\d+)/i.exec(head)![1]);
  return { headEnd, end: headEnd + length, body: buffer.subarray(headEnd, headEnd + length) };
}

describe('keep-alive relay', () => {
  it('relays sequential and pipelined requests in order, with exact stream-map offsets', async () => {
    const sequence = [files[0]!, files[1]!, files[2]!, files[1]!];
    const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (c) => received.push(c));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    // The first two one after the other, the last two pipelined in one write.
    socket.write(request(sequence[0]!));
    await new Promise((r) => setTimeout(r, 50));
    socket.write(request(sequence[1]!));
    await new Promise((r) => setTimeout(r, 100));
    socket.write(request(sequence[2]!) + request(sequence[3]!, true));
    const connection = await seen;
    await closed;

    const stream = Buffer.concat(received);
    let at = 0;
    let requestAt = 0;
    const exchanges = connection.streamMap.toJSON().exchanges as Array<Record<string, unknown>>;
    expect(exchanges).toHaveLength(sequence.length);
    sequence.forEach((file, i) => {
      const { headEnd, end, body } = splitResponse(stream, at);
      expect(body.equals(file.body)).toBe(true);
      const exchange = exchanges[i]!;
      expect(exchange.requestStart).toBe(requestAt);
      requestAt += Buffer.byteLength(request(file, i === sequence.length - 1));
      expect(exchange.requestEnd).toBe(requestAt);
      expect(exchange.responseStart).toBe(at);
      expect(exchange.headerLength).toBe(headEnd - at);
      expect(exchange.bodyLength).toBe(file.body.length);
      at = end;
    });
    expect(at).toBe(stream.length);
    expect(connection.bytesToClient).toBe(stream.length);
    expect(connection.bytesFromClient).toBe(requestAt);
  });
});
