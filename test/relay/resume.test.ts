/*
 * Resuming a connection from a stream map at every kind of point, on loopback: a connection is
 * served by one wedge, then a second relay adopts "the same connection" (a fresh socket standing
 * in for the restored one) at an offset the client has reached, and the client must receive
 * exactly the rest of the original byte stream. The kernel half (TCP_REPAIR) is tested in
 * test/native and in the lab; this is the stream-map half.
 */
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamMap } from '../../stream-map/stream-map.js';
import { RelayConnection, type RelayObserver } from '../../relay/connection.js';
import { planResume } from '../../stream-map/resume-plan.js';
import { OK, requestHead } from '../stream-map/stream-map-fixtures.js';
import type { WedgeServer } from '../../daemon/server.js';
import { makeFile, startFileOrigin } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const big = makeFile('/big.bin', 200_000, 7);
const small = makeFile('/small.bin', 3000, 8);
const requests = [`GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n`, `GET /small.bin HTTP/1.1\r\nHost: t\r\n\r\n`];
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;
let original: { stream: Buffer; map: StreamMap; sent: number };

const aborts: string[] = [];
const observer: RelayObserver = { request() {}, reject() {}, bytes() {}, spliced() {}, timeout() {}, abort: (reason) => aborts.push(reason) };

beforeAll(async () => {
  origin = await startFileOrigin([big, small]);
  wedge = await startLoopbackWedge(origin.port);
  original = await serveOriginal();
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

/* Two exchanges on one keep-alive connection; keeps the map and the bytes the client got. */
async function serveOriginal(): Promise<{ stream: Buffer; map: StreamMap; sent: number }> {
  const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
  const socket = net.connect(wedge.listenPort, '127.0.0.1');
  const chunks: Buffer[] = [];
  const expected = big.body.length + small.body.length;
  await new Promise<void>((resolve) => {
    socket.on('data', (c) => {
      chunks.push(c);
      const total = Buffer.concat(chunks);
      if (total.length > expected && total.subarray(-small.body.length).equals(small.body)) resolve();
    });
    socket.write(requests.join(''));
  });
  const connection = await seen;
  socket.destroy();
  const stream = Buffer.concat(chunks);
  return { stream, map: StreamMap.fromJSON(JSON.parse(JSON.stringify(connection.streamMap.toJSON()))), sent: connection.bytesToClient };
}

/* Adopts at `offset` and returns what the client receives, plus the answer to one more request. */
async function adoptAt(offset: number, originPort = origin.port): Promise<{ received: Buffer; error?: string }> {
  const map = StreamMap.fromJSON(original.map.toJSON());
  const knownClient = Buffer.byteLength(requests.join(''));
  const plan = planResume(map, offset, knownClient, knownClient);
  if (plan.kind !== 'resume') throw new Error(`plan ${plan.kind}`);
  const server = net.createServer((socket) => {
    new RelayConnection(socket, {
      origin: { host: '127.0.0.1', port: originPort },
      logger: pino({ level: 'silent' }),
      observer,
      adopted: { streamMap: map, bytesFromClient: knownClient, bytesToClient: offset, steps: plan.steps, replay: plan.replay, clientFinished: false },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await new Promise((resolve) => {
      const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      const chunks: Buffer[] = [];
      const rest = original.stream.length - offset;
      let asked = false;
      socket.on('data', (c) => {
        chunks.push(c);
        const got = Buffer.concat(chunks).length;
        if (!asked && got >= rest) {
          asked = true;
          socket.write('GET /small.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ received: Buffer.concat(chunks), error: err.code ?? 'error' }));
      socket.on('end', () => resolve({ received: Buffer.concat(chunks) }));
    });
  } finally {
    server.close();
  }
}

describe('resume from a stream map', () => {
  it('the original connection carried both responses, all mapped', () => {
    expect(original.map.retained).toHaveLength(2);
    expect(original.sent).toBe(original.stream.length);
  });

  const points: Array<[string, (m: StreamMap) => number]> = [
    ['at the very start of the first response', () => 0],
    ['inside the first response head', (m) => m.retained[0]!.headerLength! - 7],
    ['at the first body byte', (m) => m.retained[0]!.headerLength!],
    ['in the middle of the first body', (m) => m.retained[0]!.headerLength! + 123_457],
    ['at the last byte of the first body', (m) => m.retained[0]!.responseEnd! - 1],
    ['between the two responses', (m) => m.retained[0]!.responseEnd!],
    ['inside the second head', (m) => m.retained[1]!.responseStart! + 3],
    ['in the second body', (m) => m.retained[1]!.responseEnd! - 100],
  ];

  it.each(points)('%s: the client gets exactly the rest, then the connection keeps serving', async (_name, at) => {
    const offset = at(original.map);
    const { received, error } = await adoptAt(offset);
    expect(error).toBeUndefined();
    const rest = original.stream.subarray(offset);
    expect(received.subarray(0, rest.length).equals(rest)).toBe(true);
    const next = received.subarray(rest.length);
    expect(next.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    expect(next.subarray(next.indexOf('\r\n\r\n') + 4).equals(small.body)).toBe(true);
  });

  it('resets the client, and counts it, when the local copy is a different representation', async () => {
    const changed = await startFileOrigin([makeFile('/big.bin', 200_000, 99), small]);
    try {
      const before = aborts.length;
      const { error } = await adoptAt(original.map.retained[0]!.headerLength! + 5000, changed.port);
      expect(error).toBe('ECONNRESET');
      expect(aborts.slice(before)).toEqual(['representation-changed']);
    } finally {
      await changed.close();
    }
  });

  it('refuses to plan when the client sent bytes the map does not know', () => {
    const plan = planResume(original.map, 10, 500, 400);
    expect(plan).toEqual({ kind: 'abort', reason: expect.stringContaining('does not know') });
  });

  it('needs nothing rebuilt once the client has acknowledged the FIN after a closing response', () => {
    const map = new StreamMap();
    const request = requestHead('GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
    map.beginRequest(0, request);
    map.endRequest(request.rawHead.length);
    const head = OK(10);
    map.beginResponse(0, head);
    const end = head.headerLength + 10;
    const known = request.rawHead.length;
    expect(planResume(map, end, known, known)).toEqual({ kind: 'finish' });
    expect(planResume(map, end + 1, known + 1, known)).toEqual({ kind: 'closed' });
    expect(planResume(map, end + 2, known, known)).toMatchObject({ kind: 'abort' });
    // On a kept-alive connection the same offset is no FIN: the map does not explain it.
    expect(planResume(original.map, original.sent + 1, Buffer.byteLength(requests.join('')), Buffer.byteLength(requests.join('')))).toMatchObject({ kind: 'abort' });
  });

  it("takes one sequence number beyond the known bytes for the client's FIN", () => {
    const known = Buffer.byteLength(requests.join(''));
    const inBody = planResume(original.map, original.map.retained[0]!.headerLength! + 10, known + 1, known);
    expect(inBody).toMatchObject({ kind: 'resume', clientFinished: true });
    // After the last response, a client that closed needs only our FIN.
    expect(planResume(original.map, original.sent, known + 1, known)).toEqual({ kind: 'finish' });
    expect(planResume(original.map, original.sent, known, known)).toMatchObject({ kind: 'resume', steps: [], replay: [], clientFinished: false });
  });
});
