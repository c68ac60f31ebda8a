/*
 * Bad requests get a clear error status and the connection is closed after it; the wedge goes
 * on serving everyone else, and nothing of a rejected request reaches the origin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WedgeServer } from '../../daemon/server.js';
import { makeFile, rawExchange, startFileOrigin } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const file = makeFile('/f.bin', 5000);
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startFileOrigin([file]);
  wedge = await startLoopbackWedge(origin.port);
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

const cases: Array<[string, string, number, string]> = [
  ['garbage request line', 'HELLO\r\n\r\n', 400, 'WEDGE_ERR_HTTP_MALFORMED'],
  ['bare LF', 'GET /f.bin HTTP/1.1\nHost: t\n\n', 400, 'WEDGE_ERR_HTTP_MALFORMED'],
  ['obs-fold', 'GET /f.bin HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  continued\r\n\r\n', 400, 'WEDGE_ERR_HTTP_MALFORMED'],
  ['CL and TE', 'POST /f.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'WEDGE_ERR_HTTP_SMUGGLING'],
  ['conflicting CL', 'POST /f.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 400, 'WEDGE_ERR_HTTP_SMUGGLING'],
  ['huge header', `GET /f.bin HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'WEDGE_ERR_HTTP_HEADER_TOO_LARGE'],
];

describe('rejected requests', () => {
  it.each(cases)('%s: answered with its status and code, then closed', async (_name, bytes, status, code) => {
    const reply = (await rawExchange(wedge.listenPort, bytes)).toString('latin1');
    expect(reply.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(reply).toContain(code);
    expect(reply).toMatch(/connection: close/i);
  });

  it('a bad request pipelined after a good one: the good response first, then the error', async () => {
    const reply = await rawExchange(wedge.listenPort, `GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /f.bin HTTP/1.1\nHost: t\n\n`);
    const text = reply.toString('latin1');
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true);
    const headEnd = reply.indexOf('\r\n\r\n') + 4;
    expect(reply.subarray(headEnd, headEnd + file.body.length).equals(file.body)).toBe(true);
    expect(reply.subarray(headEnd + file.body.length).toString('latin1')).toMatch(/^HTTP\/1\.1 400 [^]*WEDGE_ERR_HTTP_MALFORMED/);
  });

  it('keeps serving after rejects, and counts them by code in /metrics', async () => {
    const reply = await rawExchange(wedge.listenPort, `GET /f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
    expect(reply.subarray(reply.indexOf('\r\n\r\n') + 4).equals(file.body)).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${wedge.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/wedge_rejects_total\{code="WEDGE_ERR_HTTP_SMUGGLING"\} 2/);
    expect(metrics).toMatch(/wedge_rejects_total\{code="WEDGE_ERR_HTTP_HEADER_TOO_LARGE"\} 1/);
  });
});
