/*
 * Resuming a generated response from the origin's snapshot, on loopback (the stream-map half of
 * a takeover, as in resume.test.ts: a fresh socket stands in for the restored one). A node:http
 * origin generates a body that is a pure function of the byte position (no validator, so no
 * Range resume), and stores a snapshot before it answers. The adopter restarts it with
 * Wedge-Resume at the snapshot's offset: the client gets exactly the rest of the original
 * stream. An origin that ignores Wedge-Resume gets the connection reset and counted, and not a
 * byte of its answer reaches the client.
 */
import http from 'node:http';
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wedgeState } from '../../app/index.js';
import { WedgeServer } from '../../daemon/server.js';
import { startStateStore } from '../../daemon/state-store.js';
import { RelayConnection, type AdoptedStream, type RelayObserver } from '../../relay/connection.js';
import { StateSlots } from '../../relay/state-slots.js';
import { planResume, type Snapshot } from '../../stream-map/resume-plan.js';
import { REQUEST_LOG_BYTES, StreamMap } from '../../stream-map/stream-map.js';
import { requestHead } from '../stream-map/stream-map-fixtures.js';

const LENGTH = 60_000;
const SNAPSHOT_AT = 1000;
const byteAt = (i: number) => (i * 31 + (i >> 8)) & 0xff;
const generated = (from: number) => Buffer.from(Array.from({ length: LENGTH - from }, (_, j) => byteAt(from + j)));

interface Seen { state?: string; resume?: string; resumeOffset?: string }
const seen: Seen[] = [];
let honest: http.Server;
let ignoring: http.Server;
let wedge: WedgeServer;
let original: { stream: Buffer; map: StreamMap; snapshot: Snapshot; known: number };
const aborts: string[] = [];
const observer: RelayObserver = { request() {}, reject() {}, bytes() {}, spliced() {}, timeout() {}, abort: (reason) => aborts.push(reason) };
const request = 'GET /live HTTP/1.1\r\nHost: t\r\n\r\n';

/* The generated origin (through wedge/app): snapshots "pos=<k>" before answering; restarts from
 * a snapshot when honest. */
function generator(honours: boolean): http.Server {
  return http.createServer(async (req, res) => {
    const state = wedgeState(req);
    if (req.url === '/count') return countVisits(state, honours, res);
    if (req.url === '/add') return addToCount(state, honours, req, res);
    seen.push({ state: state.url, resume: req.headers['wedge-resume'] as string, resumeOffset: req.headers['wedge-resume-offset'] as string });
    if (honours && state.resume) {
      const from = Number(/^pos=(\d+)$/.exec(state.resume.snapshot.toString())![1]);
      res.writeHead(200, { 'content-length': LENGTH - from, 'wedge-resumed': String(state.resume.offset) });
      res.end(generated(from));
      return;
    }
    if (!state.resume) await state.save(`pos=${SNAPSHOT_AT}`, { offset: SNAPSHOT_AT });
    res.writeHead(200, { 'content-length': LENGTH });
    res.end(generated(0));
  });
}

/* A session: the visit count lives in the snapshot, stored at the end of each response. */
async function countVisits(state: ReturnType<typeof wedgeState>, honours: boolean, res: http.ServerResponse): Promise<void> {
  const resume = honours ? state.resume : undefined;
  const body = String((resume ? Number(resume.snapshot.toString()) : 0) + 1);
  await state.save(body, { offset: body.length });
  res.writeHead(200, { 'content-length': body.length, ...(resume ? { 'wedge-resumed': String(resume.offset) } : {}) });
  res.end(body);
}

/* The same session, changed by a POST: its body is added to the count (so a replay twice, or with
 * a lost body, would show). */
async function addToCount(state: ReturnType<typeof wedgeState>, honours: boolean, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let text = '';
  for await (const chunk of req) text += chunk;
  const resume = honours ? state.resume : undefined;
  const body = String((resume ? Number(resume.snapshot.toString()) : 0) + Number(text));
  await state.save(body, { offset: body.length });
  res.writeHead(200, { 'content-length': body.length, ...(resume ? { 'wedge-resumed': String(resume.offset) } : {}) });
  res.end(body);
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

beforeAll(async () => {
  honest = generator(true);
  ignoring = generator(false);
  const port = await listen(honest);
  await listen(ignoring);
  wedge = new WedgeServer({
    name: 'test',
    listen: { host: '127.0.0.1', port: 0 },
    origin: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: 0 },
    stateListen: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: process.env.WEDGE_TEST_LOG ?? 'silent' }),
  });
  await wedge.start();
  const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
  const socket = net.connect(wedge.listenPort, '127.0.0.1');
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    socket.on('data', (c) => {
      chunks.push(c);
      if (Buffer.concat(chunks).subarray(-LENGTH).equals(generated(0))) resolve();
    });
    socket.write(request);
  });
  const connection = await connected;
  socket.destroy();
  original = {
    stream: Buffer.concat(chunks),
    map: StreamMap.fromJSON(JSON.parse(JSON.stringify(connection.streamMap.toJSON()))),
    snapshot: connection.stateSlot!.snapshot!,
    known: Buffer.byteLength(request),
  };
});
afterAll(async () => {
  await wedge.stop();
  await new Promise((resolve) => honest.close(resolve));
  await new Promise((resolve) => ignoring.close(resolve));
});

/* Adopts the connection at `offset` against `origin`; what the client receives, and whether it was reset. */
async function adoptAt(offset: number, origin: http.Server): Promise<{ received: Buffer; reset: boolean }> {
  const map = StreamMap.fromJSON(original.map.toJSON());
  const plan = planResume(map, offset, original.known, original.known, original.snapshot);
  if (plan.kind !== 'resume') throw new Error(`plan ${plan.kind}: ${plan.kind === 'abort' ? plan.reason : ''}`);
  const slots = new StateSlots();
  slots.base = 'http://127.0.0.1:9';
  const server = net.createServer((socket) => {
    new RelayConnection(socket, {
      origin: { host: '127.0.0.1', port: (origin.address() as net.AddressInfo).port },
      logger: pino({ level: 'silent' }),
      observer,
      stateSlots: slots,
      adopted: { streamMap: map, bytesFromClient: original.known, bytesToClient: offset, steps: plan.steps, replay: plan.replay, clientFinished: false },
    });
  });
  const port = await listen(server as unknown as http.Server);
  try {
    return await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      const rest = original.stream.length - offset;
      socket.on('data', (c) => {
        chunks.push(c);
        if (Buffer.concat(chunks).length >= rest) {
          socket.destroy();
          resolve({ received: Buffer.concat(chunks), reset: false });
        }
      });
      socket.on('error', () => resolve({ received: Buffer.concat(chunks), reset: true }));
      socket.on('close', () => resolve({ received: Buffer.concat(chunks), reset: true }));
    });
  } finally {
    server.close();
  }
}

/*
 * Serves one adopted connection (`adopted`) against `origin`, with a real state listener for the
 * adopter's own snapshots; the client writes `send` (if anything) and reads until the close.
 */
async function adoptedSession(origin: http.Server, adopted: AdoptedStream, send?: string): Promise<string> {
  const slots = new StateSlots();
  const store = await startStateStore(slots, { host: '127.0.0.1', port: 0 }, { snapshot() {} });
  slots.base = `http://127.0.0.1:${(store.server.address() as net.AddressInfo).port}`;
  const server = net.createServer((s) => {
    new RelayConnection(s, { origin: { host: '127.0.0.1', port: (origin.address() as net.AddressInfo).port }, logger: pino({ level: 'silent' }), observer, stateSlots: slots, adopted });
  });
  const port = await listen(server as unknown as http.Server);
  try {
    const client = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    client.on('data', (c) => chunks.push(c));
    client.on('error', () => undefined);
    if (send) client.write(send);
    await new Promise((resolve) => client.on('close', resolve));
    return Buffer.concat(chunks).toString('latin1');
  } finally {
    server.close();
    await store.close();
  }
}

describe('resume from a snapshot (state contract)', () => {
  it('the original response was generated: not resumable by Range, and its snapshot is at 1000', () => {
    expect(original.map.retained[0]!.resumable).toBe(false);
    expect(original.snapshot).toMatchObject({ exchange: 0, offset: SNAPSHOT_AT });
    expect(planResume(StreamMap.fromJSON(original.map.toJSON()), original.stream.length - 5000, original.known, original.known).kind).toBe('abort');
  });

  it('restarts the origin from the snapshot and gives the client exactly the rest, at points in the body from the snapshot on', async () => {
    const headLength = original.stream.length - LENGTH;
    for (const offset of [headLength + SNAPSHOT_AT, headLength + 4321, original.stream.length - 1]) {
      seen.length = 0;
      const { received } = await adoptAt(offset, honest);
      expect(received.equals(original.stream.subarray(offset))).toBe(true);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.resumeOffset).toBe(String(SNAPSHOT_AT));
      expect(Buffer.from(seen[0]!.resume!, 'base64').toString()).toBe(`pos=${SNAPSHOT_AT}`);
      expect(seen[0]!.state).toMatch(/^http:\/\/127\.0\.0\.1:9\/wedge-state\/1\/[0-9a-f]{32}$/);
    }
  });

  it('refuses to resume before the snapshot (in the head, or body bytes it does not cover)', () => {
    const headLength = original.stream.length - LENGTH;
    for (const offset of [5, headLength, headLength + SNAPSHOT_AT - 1]) {
      const plan = planResume(StreamMap.fromJSON(original.map.toJSON()), offset, original.known, original.known, original.snapshot);
      expect(plan.kind).toBe('abort');
    }
  });

  it('resets and counts a connection whose origin ignores Wedge-Resume, relaying none of its answer', async () => {
    aborts.length = 0;
    const headLength = original.stream.length - LENGTH;
    const { received, reset } = await adoptAt(headLength + 4321, ignoring);
    expect(reset).toBe(true);
    expect(received.length).toBe(0);
    expect(aborts).toEqual(['resume-refused']);
  });

  it('carries a session between exchanges: the next request hands the snapshot to the origin', async () => {
    const count = 'GET /count HTTP/1.1\r\nHost: t\r\n\r\n';
    const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    socket.write(count);
    await new Promise((resolve) => socket.once('data', resolve));
    const connection = await connected;
    const before = { map: StreamMap.fromJSON(JSON.parse(JSON.stringify(connection.streamMap.toJSON()))), snapshot: connection.stateSlot!.snapshot!, sent: connection.bytesToClient };
    socket.destroy();
    expect(before.snapshot).toMatchObject({ exchange: 0, offset: 1, data: Buffer.from('1') });

    const answer = async (origin: http.Server): Promise<string> => {
      const map = StreamMap.fromJSON(before.map.toJSON());
      const known = Buffer.byteLength(count);
      const plan = planResume(map, before.sent, known, known, before.snapshot);
      if (plan.kind !== 'resume') throw new Error(`plan ${plan.kind}`);
      // The adopter's origin stores its next snapshot: a real state listener serves these slots.
      const adopted = { streamMap: map, bytesFromClient: known, bytesToClient: before.sent, steps: plan.steps, replay: plan.replay, clientFinished: false, snapshot: before.snapshot };
      return adoptedSession(origin, adopted, 'GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    };
    const carried = await answer(honest);
    expect(carried).toMatch(/^HTTP\/1\.1 200 /);
    expect(carried.endsWith('\r\n\r\n2')).toBe(true);

    // An origin that ignores the session: a clear 502 before any byte of its answer, counted.
    aborts.length = 0;
    const refused = await answer(ignoring);
    expect(refused).toMatch(/^HTTP\/1\.1 502 /);
    expect(refused).not.toMatch(/\r\n\r\n1$/);
    expect(aborts).toEqual(['resume-refused']);
  });

  it('replays a POST already in flight from the replay log, once, after the session it follows', async () => {
    const count = 'GET /count HTTP/1.1\r\nHost: t\r\n\r\n';
    const post = (body: string) => `POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
    const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    socket.write(count);
    await new Promise((resolve) => socket.once('data', resolve));
    const connection = await connected;
    const served = { map: JSON.stringify(connection.streamMap.toJSON()), snapshot: connection.stateSlot!.snapshot!, sent: connection.bytesToClient };
    socket.destroy();

    /* The old owner had also received (and logged) `body` in a POST, and died before answering it. */
    const adopted = (body: string, logged: Buffer | 'too-large') => {
      const map = StreamMap.fromJSON(JSON.parse(served.map));
      const start = Buffer.byteLength(count);
      map.beginRequest(start, requestHead(post(body)));
      map.endRequest(start + Buffer.byteLength(post(body)), logged);
      return { map: StreamMap.fromJSON(JSON.parse(JSON.stringify(map.toJSON()))), known: start + Buffer.byteLength(post(body)) };
    };
    const { map, known } = adopted('5', Buffer.from('5'));
    expect(map.retained[1]!.requestBody?.toString()).toBe('5');
    expect(planResume(StreamMap.fromJSON(map.toJSON()), served.sent, known, known)).toMatchObject({ kind: 'abort', reason: expect.stringMatching(/without a snapshot/) });
    const big = 'x'.repeat(REQUEST_LOG_BYTES + 1);
    const tooLarge = adopted(big, 'too-large');
    expect(planResume(tooLarge.map, served.sent, tooLarge.known, tooLarge.known, served.snapshot)).toMatchObject({ kind: 'abort', reason: expect.stringMatching(/larger than the 4096-byte replay log/) });

    const plan = planResume(map, served.sent, known, known, served.snapshot);
    if (plan.kind !== 'resume') throw new Error(`plan ${plan.kind}`);
    expect(plan.replay.map((e) => e.method)).toEqual(['POST']);
    const answer = await adoptedSession(honest, { streamMap: map, bytesFromClient: known, bytesToClient: served.sent, steps: plan.steps, replay: plan.replay, clientFinished: false, snapshot: served.snapshot });
    // The session said 1; the replayed POST added 5, once.
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.endsWith('\r\n\r\n6')).toBe(true);
  });

  it('logs each request body in the stream map (the replay log), up to its bound', async () => {
    const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const big = '9'.repeat(REQUEST_LOG_BYTES + 1);
    let answered = 0;
    socket.on('data', (c) => (answered += (c.toString('latin1').match(/HTTP\/1\.1 200/g) ?? []).length));
    socket.write(`POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n7POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
    const connection = await connected;
    while (answered < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    socket.destroy();
    const [small, large] = connection.streamMap.retained.slice(-2);
    expect(small!.requestBody?.toString()).toBe('7');
    expect(large!.requestBody).toBeUndefined();
    expect(large!.requestBodyTooLarge).toBe(true);
  });
});
