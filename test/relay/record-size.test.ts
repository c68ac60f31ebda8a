/*
 * A connection's soft-state record carries what a resume can still need, never its history:
 * after 10,000 exchanges on one keep-alive connection it is no larger than after the first (but
 * for the width of its offsets), and the relay's own map stays bounded too. Real sockets on
 * loopback, through the real relay.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WedgeServer } from '../../daemon/server.js';
import { pino } from 'pino';
import type { RelayConnection } from '../../relay/connection.js';
import { Replication, type ReplicaGroup } from '../../replication/replication.js';
import type { ConnectionRecord } from '../../softstate/index.js';
import { makeFile, startFileOrigin } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const small = makeFile('/small.bin', 1024, 3);
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startFileOrigin([small]);
  wedge = await startLoopbackWedge(origin.port);
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

/* One GET at a time on `socket`; resolves with each response's body. */
function sequentialClient(socket: net.Socket): () => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: ((body: Buffer) => void) | undefined;
  const take = () => {
    const headEnd = buffered.indexOf('\r\n\r\n');
    if (headEnd < 0 || !waiting) return;
    const length = Number(/content-length: *(\d+)/i.exec(buffered.subarray(0, headEnd).toString('latin1'))![1]);
    if (buffered.length < headEnd + 4 + length) return;
    const body = buffered.subarray(headEnd + 4, headEnd + 4 + length);
    buffered = buffered.subarray(headEnd + 4 + length);
    const done = waiting;
    waiting = undefined;
    done(body);
  };
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    take();
  });
  return () =>
    new Promise<Buffer>((resolve) => {
      waiting = resolve;
      socket.write('GET /small.bin HTTP/1.1\r\nHost: t\r\n\r\n');
    });
}

/* The real replication of every accepted connection, into a group that keeps the last record. */
function replicate(): { latest: () => Promise<{ bytes: number; exchanges: number }> } {
  let last: ConnectionRecord | undefined;
  const group = { upsert: (record: ConnectionRecord) => ((last = record), true), remove: () => true, readvertise: () => undefined, on: () => group } as unknown as ReplicaGroup;
  const replication = new Replication(group, '127.0.0.1', () => undefined, pino({ level: 'silent' }));
  wedge.on('connection', (connection) => replication.accepted(connection));
  return {
    latest: async () => {
      await sleep(20); // the client's last ACK arrives; the coalesced advert has gone
      const stream = last!.streamMap as { map: { exchanges: unknown[] } };
      return { bytes: JSON.stringify(stream).length, exchanges: stream.map.exchanges.length };
    },
  };
}

describe('soft-state record size', () => {
  it('after 10,000 exchanges on one connection is no larger than after one', async () => {
    const records = replicate();
    const seen = new Promise<RelayConnection>((resolve) => wedge.once('connection', resolve));
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const get = sequentialClient(socket);
    expect((await get()).equals(small.body)).toBe(true);
    const connection = await seen;
    const first = await records.latest();
    expect(first.exchanges).toBe(1);
    for (let i = 1; i < 10_000; i++) {
      const body = await get();
      if (!body.equals(small.body)) throw new Error(`response ${i} differs`);
    }
    const last = await records.latest();
    socket.destroy();
    expect(connection.requests).toBe(10_000);
    expect(last.exchanges).toBe(1);
    // The same one exchange; its ten numbers (offsets, byte counts, indexes) are up to 5 digits wider.
    expect(last.bytes).toBeLessThanOrEqual(first.bytes + 10 * 5);
    expect(connection.streamMap.retained.length).toBeLessThanOrEqual(8);
  });
});
