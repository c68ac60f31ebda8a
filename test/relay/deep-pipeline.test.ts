/*
 * 2,000 pipelined requests on one connection, through the real relay and the real replication on
 * loopback: answered in order, byte-exact; no record ever carries more than a bounded number of
 * exchanges (so making records costs time linear in the pipeline, not quadratic), the connection
 * says it is unprotected while the pipeline is deeper than a record holds, and it is protected
 * again once the pipeline has drained.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WedgeServer } from '../../daemon/server.js';
import type { RelayConnection } from '../../relay/connection.js';
import { Replication, type ReplicaGroup } from '../../replication/replication.js';
import type { ConnectionRecord } from '../../softstate/index.js';
import { makeFile, startFileOrigin } from '../support/fake-origins.js';
import { startLoopbackWedge } from '../support/loopback-wedge.js';

const COUNT = 2000;
const tiny = makeFile('/tiny.bin', 64, 4);
let origin: Awaited<ReturnType<typeof startFileOrigin>>;
let wedge: WedgeServer;

beforeAll(async () => {
  origin = await startFileOrigin([tiny]);
  wedge = await startLoopbackWedge(origin.port);
});
afterAll(async () => {
  await wedge.stop();
  await origin.close();
});

describe('a deep pipeline', () => {
  it('2,000 pipelined requests: answered in order, byte-exact, records bounded, protected again after', async () => {
    const exchangesPerRecord: number[] = [];
    const group = {
      upsert: (record: ConnectionRecord) => exchangesPerRecord.push((record.streamMap as { map: { exchanges: unknown[] } }).map.exchanges.length) > 0,
      remove: () => true,
      readvertise: () => undefined,
      on: () => group,
    } as unknown as ReplicaGroup;
    const replication = new Replication(group, '127.0.0.1', () => undefined, pino({ level: 'silent' }));
    const seen = new Promise<RelayConnection>((resolve) =>
      wedge.once('connection', (connection) => {
        replication.accepted(connection);
        resolve(connection);
      }),
    );
    const socket = net.connect(wedge.listenPort, '127.0.0.1');
    const request = 'GET /tiny.bin HTTP/1.1\r\nHost: t\r\n\r\n';
    socket.write(request.repeat(COUNT));
    const connection = await seen;
    let sawUnprotected = false;
    const watch = setInterval(() => (sawUnprotected ||= !replication.protection(connection.id).protected), 1);
    const bodies = await new Promise<Buffer[]>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const got: Buffer[] = [];
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        for (;;) {
          const headEnd = buffered.indexOf('\r\n\r\n');
          if (headEnd < 0) break;
          const length = Number(/content-length: *(\d+)/i.exec(buffered.subarray(0, headEnd).toString('latin1'))![1]);
          if (buffered.length < headEnd + 4 + length) break;
          got.push(buffered.subarray(headEnd + 4, headEnd + 4 + length));
          buffered = buffered.subarray(headEnd + 4 + length);
        }
        if (got.length === COUNT) resolve(got);
      });
    });
    clearInterval(watch);
    expect(bodies.filter((body) => !body.equals(tiny.body))).toEqual([]);
    expect(connection.requests).toBe(COUNT);
    expect(sawUnprotected, 'unprotected while deeper than a record holds').toBe(true);
    expect(Math.max(...exchangesPerRecord)).toBeLessThanOrEqual(64);
    // Drained: the next record is small again and the connection is protected.
    socket.write(request);
    await sleep(50);
    expect(replication.protection(connection.id)).toEqual({ protected: true });
    expect(exchangesPerRecord.at(-1)).toBeLessThanOrEqual(8);
    socket.destroy();
  });
});
