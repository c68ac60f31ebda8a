/*
 * The state contract's first half through a real wedge on loopback, with a node:http origin:
 * every forwarded request carries Wedge-Exchange and Wedge-State, a client's own Wedge-* fields
 * never reach the origin, and the state listener stores, refuses and orders snapshots as the
 * contract says.
 */
import http from 'node:http';
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wedgeState, WedgeStateError } from '../../app/index.js';
import { WedgeServer } from '../../daemon/server.js';
import { startStateStore } from '../../daemon/state-store.js';
import type { RelayConnection } from '../../relay/connection.js';
import { StateSlots } from '../../relay/state-slots.js';

const seen: http.IncomingHttpHeaders[] = [];
let origin: http.Server;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = http.createServer((req, res) => {
    seen.push(req.headers);
    res.end('ok');
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  wedge = new WedgeServer({
    name: 'test',
    listen: { host: '127.0.0.1', port: 0 },
    origin: { host: '127.0.0.1', port: (origin.address() as net.AddressInfo).port },
    admin: { host: '127.0.0.1', port: 0 },
    stateListen: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: process.env.WEDGE_TEST_LOG ?? 'silent' }),
  });
  await wedge.start();
});
afterAll(async () => {
  await wedge.stop();
  await new Promise((resolve) => origin.close(resolve));
});

/* Sends `requests` on one connection and returns what came back once the wedge closed it. */
async function converse(requests: string): Promise<{ connection: RelayConnection; reply: string }> {
  const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
  const socket = net.connect(wedge.listenPort, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (c) => chunks.push(c));
  socket.write(requests);
  const connection = await connected;
  await new Promise((resolve) => socket.on('close', resolve));
  return { connection, reply: Buffer.concat(chunks).toString('latin1') };
}

async function put(url: string, body: Buffer, exchange: string, offset: string): Promise<number> {
  const response = await fetch(url, { method: 'PUT', body: new Uint8Array(body), headers: { 'wedge-exchange': exchange, 'wedge-offset': offset } });
  return response.status;
}

describe('state contract: headers and the state listener', () => {
  it('tells the origin each exchange and the state URL, and strips client-sent Wedge-* fields', async () => {
    seen.length = 0;
    const forged = 'Wedge-Resume: Zm9yZ2Vk\r\nwedge-state: http://127.0.0.1:1/evil\r\nWEDGE-EXCHANGE: 99\r\n';
    const { reply } = await converse(`GET /a HTTP/1.1\r\nHost: t\r\n${forged}\r\nGET /b HTTP/1.1\r\nHost: t\r\n${forged}Connection: close\r\n\r\n`);
    expect(reply.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    expect(seen.map((h) => h['wedge-exchange'])).toEqual(['0', '1']);
    for (const headers of seen) {
      expect(headers['wedge-resume']).toBeUndefined();
      expect(headers['wedge-state']).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/wedge-state\/\d+\/[0-9a-f]{32}$/);
    }
    expect(seen[0]!['wedge-state']).toBe(seen[1]!['wedge-state']);
  });

  it('stores snapshots in order, refuses what the contract refuses, and forgets ended connections', async () => {
    seen.length = 0;
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const connected = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    socket.write('GET /a HTTP/1.1\r\nHost: t\r\n\r\n');
    const connection = await connected;
    await new Promise((resolve) => socket.once('data', resolve));
    const url = seen[0]!['wedge-state'] as string;

    expect(await put(url, Buffer.from('state-1'), '0', '2')).toBe(204);
    expect(connection.stateSlot?.snapshot).toEqual({ exchange: 0, offset: 2, data: Buffer.from('state-1') });
    expect(await put(url, Buffer.from('older'), '0', '1')).toBe(409);
    expect(await put(url, Buffer.alloc(4097), '0', '3')).toBe(413);
    expect(await put(url, Buffer.from('x'), 'zero', '3')).toBe(400);
    expect(await put(url.replace(/[0-9a-f]{32}$/, '0'.repeat(32)), Buffer.from('x'), '0', '3')).toBe(404);
    expect(await put(url, Buffer.alloc(4096, 7), '0', '2')).toBe(204);
    expect(connection.stateSlot?.snapshot?.data.length).toBe(4096);
    const view = ((await (await fetch(`http://127.0.0.1:${wedge.adminPort}/connections`)).json()) as { connections: { id: string; snapshot?: unknown }[] }).connections.find((c) => c.id === connection.id);
    expect(view?.snapshot).toMatchObject({ exchange: 0, offset: 2, bytes: 4096 });
    const metrics = await (await fetch(`http://127.0.0.1:${wedge.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^wedge_snapshots_total\{result="stored"\} 2$/m);
    expect(metrics).toMatch(/^wedge_snapshots_total\{result="backwards"\} 1$/m);
    expect(metrics).toMatch(/^wedge_snapshots_total\{result="too-large"\} 1$/m);

    // Another connection's slot with this connection's token: refused.
    const other = await converse('GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const otherUrl = seen[1]!['wedge-state'] as string;
    expect(otherUrl).not.toBe(url);
    const foreign = otherUrl.replace(/[0-9a-f]{32}$/, url.slice(-32));
    expect(await put(foreign, Buffer.from('x'), '5', '0')).toBe(404);
    expect(other.connection.stateSlot?.snapshot).toBeUndefined();

    socket.destroy();
    await new Promise((resolve) => connection.once('ended', resolve));
    expect(await put(url, Buffer.from('late'), '1', '0')).toBe(404);
  });

  it('listens on loopback only', async () => {
    await expect(startStateStore(new StateSlots(), { host: '0.0.0.0', port: 0 }, { snapshot: () => undefined })).rejects.toThrow(/loopback/);
  });
});

describe('wedge/app', () => {
  it('does nothing behind no wedge, and says why a snapshot was refused', async () => {
    const alone = wedgeState({ headers: {} } as http.IncomingMessage);
    expect(alone.url).toBeUndefined();
    await alone.save('ignored', { offset: 0 });

    seen.length = 0;
    const { connection } = await converse('GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    if (connection.state !== 'closed') await new Promise((resolve) => connection.once('ended', resolve));
    const ended = wedgeState({ headers: seen[0]! } as http.IncomingMessage);
    expect(ended.exchange).toBe(0);
    const refusal = await ended.save('late', { offset: 0 }).catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(WedgeStateError);
    expect((refusal as WedgeStateError).status).toBe(404);
  });
});
