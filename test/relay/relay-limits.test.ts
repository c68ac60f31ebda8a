/*
 * The limits a front-end owes its origin and its other clients (issue 12, point 5), on real
 * loopback sockets: malformed chunked request bodies, HTTP/0.9, bare CRLFs, an endless request
 * line, a slowloris head, a FIN inside a head, idle keep-alive connections, stalled request
 * bodies and responses, and too many connections. Each is answered (or closed) within its limit
 * without holding the origin, and a normal request on a new connection afterwards is still served
 * byte-exact.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WedgeServer } from '../../daemon/server.js';
import { StreamMap } from '../../stream-map/stream-map.js';
import { expectSameBytes } from '../support/bytes.js';
import { makeFile, rawExchange } from '../support/fake-origins.js';

const LIMIT_MS = 500;
const file = makeFile('/f.bin', 20_000);
const GET = `GET ${file.path} HTTP/1.1\r\nHost: t\r\n\r\n`;
const CHUNKED_POST = 'POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n';

/*
 * An origin that records every request head it gets and how many connections it holds: it serves
 * the file, never answers a POST (like a worker waiting for the rest of a body), never answers
 * /silent, and stops halfway through the body of /stall.
 */
async function startRecordingOrigin() {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    let swallowing = false;
    socket.on('data', (chunk) => {
      if (swallowing) return;
      buffered += chunk.toString('latin1');
      let at: number;
      while ((at = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, at + 4);
        buffered = buffered.slice(at + 4);
        heads.push(head);
        if (head.startsWith('POST') || head.startsWith('GET /silent')) {
          swallowing = true;
          return;
        }
        const length = `Content-Length: ${file.body.length}\r\n\r\n`;
        if (head.startsWith('GET /stall')) {
          socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\n${length}`), file.body.subarray(0, 5000)]));
          swallowing = true;
          return;
        }
        socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\n${length}`), file.body]));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    heads,
    get open() {
      return sockets.size;
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

let origin: Awaited<ReturnType<typeof startRecordingOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startRecordingOrigin();
  wedge = new WedgeServer({
    name: 'limits',
    listen: { host: '127.0.0.1', port: 0 },
    origin: { host: '127.0.0.1', port: origin.port },
    admin: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: process.env.WEDGE_TEST_LOG ?? 'silent' }),
    maxConnections: 3,
    limits: { headerTimeoutMs: LIMIT_MS, idleTimeoutMs: LIMIT_MS, bodyTimeoutMs: LIMIT_MS, responseTimeoutMs: LIMIT_MS, maxRequestLineBytes: 1024, maxEmptyLines: 4 },
  });
  await wedge.start();
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

/* After every case: a normal request on a new connection is still served byte-exact. */
afterEach(async () => {
  const reply = await rawExchange(wedge.listenPort, `GET ${file.path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  expect(reply.toString('latin1', 0, 15)).toBe('HTTP/1.1 200 OK');
  await expectSameBytes(reply.subarray(reply.indexOf('\r\n\r\n') + 4), file.body, 'the normal request after it');
});

interface Ending {
  reply: string;
  ms: number;
  error?: string;
}

/* Opens a connection, lets `talk` write to it, and waits for the wedge to close it. */
function converse(talk: (socket: net.Socket) => void | Promise<void>): Promise<Ending> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const chunks: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on('close', () => resolve({ reply: Buffer.concat(chunks).toString('latin1'), ms: Date.now() - started, ...(error ? { error } : {}) }));
    socket.on('connect', () => void talk(socket));
  });
}

async function metric(pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${wedge.adminPort}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

/* The status line and code of a wedge error page. */
function expectAnswer(reply: string, status: number, code: string): void {
  expect(reply.slice(0, 12)).toBe(`HTTP/1.1 ${status}`);
  expect(reply).toContain(code);
  expect(reply).toMatch(/connection: close/i);
}

describe('malformed chunked request bodies', () => {
  const forms: Array<[string, string]> = [
    ['chunk-size overflow', 'fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n'],
    ['0x5 as a size', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['trailing space after the size', '5 \r\nhello\r\n0\r\n\r\n'],
    ['bare LF in a chunk extension', '5;ext\nhello\r\n0\r\n\r\n'],
    ['chunk data without CRLF', '5\r\nhelloXX0\r\n\r\n'],
  ];

  it.each(forms)('%s, in one write with its head: 400, closed, and the origin never sees it', async (_name, body) => {
    const before = origin.heads.length;
    const ending = await converse((socket) => void socket.write(CHUNKED_POST + body));
    expectAnswer(ending.reply, 400, 'WEDGE_ERR_HTTP_MALFORMED');
    expect(origin.heads.slice(before)).toEqual([]);
  });

  it.each(forms)('%s, after the origin has the head: 400, closed, and the origin connection dropped', async (_name, body) => {
    const before = origin.heads.length;
    const ending = await converse(async (socket) => {
      socket.write(CHUNKED_POST);
      while (origin.heads.length === before) await sleep(5);
      expect(origin.open).toBeGreaterThan(0);
      socket.write(body);
    });
    expectAnswer(ending.reply, 400, 'WEDGE_ERR_HTTP_MALFORMED');
    for (let i = 0; i < 100 && origin.open > 0; i++) await sleep(10);
    expect(origin.open).toBe(0);
  });
});

describe('request heads that never end', () => {
  it('HTTP/0.9 (no version): 400 at once, without the client closing', async () => {
    const ending = await converse((socket) => void socket.write(`GET ${file.path}\r\n`));
    expectAnswer(ending.reply, 400, 'WEDGE_ERR_HTTP_MALFORMED');
    expect(ending.reply).toContain('HTTP/0.9');
    expect(ending.ms).toBeLessThan(LIMIT_MS);
  });

  it('10 KB of bare CRLFs before a request: 400 at once', async () => {
    const ending = await converse((socket) => void socket.write('\r\n'.repeat(5000) + GET));
    expectAnswer(ending.reply, 400, 'WEDGE_ERR_HTTP_MALFORMED');
    expect(ending.reply).toContain('empty lines');
    expect(ending.ms).toBeLessThan(LIMIT_MS);
  });

  it('a few CRLFs before a request are ignored (RFC 9112 §2.2)', async () => {
    const reply = await rawExchange(wedge.listenPort, `\r\n\r\nGET ${file.path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
    await expectSameBytes(reply.subarray(reply.indexOf('\r\n\r\n') + 4), file.body);
  });

  it('an endless request line: 414 once it passes the limit', async () => {
    const ending = await converse((socket) => void socket.write('GET /' + 'a'.repeat(2000)));
    expectAnswer(ending.reply, 414, 'WEDGE_ERR_HTTP_URI_TOO_LONG');
  });

  it('slowloris (a header byte every 50 ms): 408 when the header timeout runs out, then closed', async () => {
    const timeouts = await metric(/wedge_timeouts_total\{deadline="header"\} (\d+)/);
    const ending = await converse(async (socket) => {
      for (const byte of `GET ${file.path} HTTP/1.1\r\nHost: t\r\nX-Slow: ${'s'.repeat(100)}`) {
        if (socket.destroyed || socket.readableEnded) return;
        socket.write(byte);
        await sleep(50);
      }
    });
    expectAnswer(ending.reply, 408, 'WEDGE_ERR_HTTP_REQUEST_TIMEOUT');
    expect(ending.ms).toBeGreaterThanOrEqual(LIMIT_MS - 20);
    expect(ending.ms).toBeLessThan(LIMIT_MS + 1500);
    expect(await metric(/wedge_timeouts_total\{deadline="header"\} (\d+)/)).toBe(timeouts + 1);
  });

  it('a FIN in the middle of a request head: 400 before the close', async () => {
    const reply = await rawExchange(wedge.listenPort, `GET ${file.path} HTTP/1.1\r\nHo`, true);
    expectAnswer(reply.toString('latin1'), 400, 'WEDGE_ERR_HTTP_MALFORMED');
  });
});

describe('connections that wait', () => {
  it('an idle keep-alive connection is closed quietly after the idle timeout', async () => {
    const ending = await converse((socket) => void socket.write(GET));
    expect(ending.error).toBeUndefined();
    const body = Buffer.from(ending.reply, 'latin1');
    // Only the response: no error page after it.
    await expectSameBytes(body.subarray(body.indexOf('\r\n\r\n') + 4), file.body);
    expect(ending.ms).toBeGreaterThanOrEqual(LIMIT_MS - 20);
    expect(await metric(/wedge_timeouts_total\{deadline="idle"\} (\d+)/)).toBeGreaterThan(0);
  });

  it('a request body that stops arriving: 408, and the origin connection is dropped', async () => {
    const ending = await converse((socket) => void socket.write('POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc'));
    expectAnswer(ending.reply, 408, 'WEDGE_ERR_HTTP_REQUEST_TIMEOUT');
    for (let i = 0; i < 100 && origin.open > 0; i++) await sleep(10);
    expect(origin.open).toBe(0);
  });

  it('an origin silent before its response: 504', async () => {
    const ending = await converse((socket) => void socket.write('GET /silent HTTP/1.1\r\nHost: t\r\n\r\n'));
    expectAnswer(ending.reply, 504, 'WEDGE_ERR_ORIGIN_TIMEOUT');
  });

  it('an origin silent in the middle of its response: a reset, counted as response-timeout', async () => {
    const aborts = await metric(/wedge_aborts_total\{reason="response-timeout"\} (\d+)/);
    const ending = await converse((socket) => void socket.write('GET /stall HTTP/1.1\r\nHost: t\r\n\r\n'));
    expect(ending.error).toBe('ECONNRESET');
    expect(ending.reply.startsWith('HTTP/1.1 200 OK')).toBe(true);
    expect(await metric(/wedge_aborts_total\{reason="response-timeout"\} (\d+)/)).toBe(aborts + 1);
  });

  it('an adopted connection (after a takeover) gets the same limits: closed after the idle timeout', async () => {
    const ended = new Promise<string>((resolve) => {
      const adopter = net.createServer((socket) => {
        const adopted = { streamMap: new StreamMap(), bytesFromClient: 0, bytesToClient: 0, steps: [], replay: [], clientFinished: false };
        wedge.adopt(socket, adopted, 'adopted-for-test').once('ended', (state) => {
          adopter.close();
          resolve(state);
        });
      });
      adopter.listen(0, '127.0.0.1', () => net.connect((adopter.address() as net.AddressInfo).port, '127.0.0.1').on('end', function (this: net.Socket) {
        this.end();
      }));
    });
    expect(await ended).toBe('closed');
  });
});

describe('too many connections', () => {
  it('beyond --max-connections a new client gets 503 and is closed; counted', async () => {
    const held = await Promise.all([0, 1, 2].map(() => new Promise<net.Socket>((resolve) => {
      const socket = net.connect(wedge.listenPort, '127.0.0.1', () => resolve(socket));
      socket.on('error', () => undefined);
    })));
    for (let i = 0; i < 100 && wedge.connections.size < 3; i++) await sleep(5);
    const ending = await converse((socket) => void socket.write(GET));
    expectAnswer(ending.reply, 503, 'WEDGE_ERR_TOO_MANY_CONNECTIONS');
    expect(await metric(/wedge_rejects_total\{code="WEDGE_ERR_TOO_MANY_CONNECTIONS"\} (\d+)/)).toBe(1);
    for (const socket of held) socket.destroy();
    for (let i = 0; i < 100 && wedge.connections.size > 0; i++) await sleep(5);
  });
});
