import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeTarget } from '../../native/index.js';
import { assertBuilt, Lab, PORT } from './lab.js';

/*
 * probeMany, against a real client kernel, in one call:
 *   client ns: many-client.mjs opens 200 connections to the VIP and reads what A sends on each
 *              (a different length per connection), then resets one of them (socket gone)
 *   server A:  server-many.mjs dumps each socket after the request, sends, then vanishes
 *   server B:  probe-many.mjs adds the VIP and probes the 200 dumps plus one 4-tuple towards a
 *              host that does not exist, while a timer ticks
 * Each result, in input order, must be the client's exact next byte (what it read), ECONNRESET
 * for the reset connection, ETIMEDOUT for the silent host; the timer kept firing.
 *
 * probeAndRestore, the same way, but A sends only the first half of each stream: B's worker
 * restores each answered connection at the client's position, B sends the rest on the restored
 * sockets, and every client (the pattern checked byte by byte) gets its exact whole stream;
 * the reset connection and the silent host come back as errors without a socket.
 */

const CONNECTIONS = 200;
const SILENT_HOST = '10.77.0.99';

interface Result {
  answer?: { ack: number; seq: number; window: number; attempts: number };
  offset?: number;
  error?: { code: string; syscall: string; message: string };
  restored?: { sendSeq?: number; recvSeq?: number; error?: { code: string } };
}

describe('probeMany', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
  });
  afterAll(async () => lab?.close());

  it('returns every client next byte, a gone socket as ECONNRESET and a silent host as ETIMEDOUT', async () => {
    const a = lab.start(lab.serverA, 'server-many.mjs', lab.vip, PORT, CONNECTIONS);
    await a.event('listening');
    const client = lab.start(lab.client, 'many-client.mjs', lab.vip, PORT, CONNECTIONS);
    const { dumps } = (await a.event('dumps')) as { dumps: ProbeTarget[] };
    const { bytes: read } = (await client.event('read')) as { bytes: Record<string, number> };

    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill('SIGKILL');
    const gone = dumps[CONNECTIONS / 2]!;
    client.child.stdin!.write(`reset ${gone.remotePort}\n`);
    await client.event('reset');

    const silent: ProbeTarget = { localAddress: lab.vip, localPort: PORT, remoteAddress: SILENT_HOST, remotePort: 40000, sendSeq: 1000, recvSeq: 2000 };
    const b = lab.start(lab.serverB, 'probe-many.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, 'test');
    b.child.stdin!.write(JSON.stringify({ targets: [...dumps, silent] }) + '\n');
    const { results, ticks } = (await b.event('results')) as { results: Result[]; ticks: number };

    expect(results).toHaveLength(CONNECTIONS + 1);
    for (const [i, dump] of dumps.entries()) {
      if (dump === gone) {
        expect(results[i]).toMatchObject({ error: { code: 'ECONNRESET' } });
      } else {
        expect(results[i]!.offset, `connection from port ${dump.remotePort}`).toBe(read[dump.remotePort]);
        expect(results[i]!.answer!.seq).toBe(dump.recvSeq);
      }
    }
    expect(results[CONNECTIONS]).toMatchObject({ error: { code: 'ETIMEDOUT', syscall: 'poll' } });
    expect(ticks).toBeGreaterThanOrEqual(5);
  });
});

describe('probeAndRestore', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
  });
  afterAll(async () => lab?.close());

  it('restores every answered connection in the worker, and each carries on byte-exact', async () => {
    const a = lab.start(lab.serverA, 'server-many.mjs', lab.vip, PORT, CONNECTIONS, 'first');
    await a.event('listening');
    const client = lab.start(lab.client, 'many-client.mjs', lab.vip, PORT, CONNECTIONS, 'first');
    const { dumps } = (await a.event('dumps')) as { dumps: ProbeTarget[] };
    const { bytes: read } = (await client.event('read')) as { bytes: Record<string, number> };

    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill('SIGKILL');
    const gone = dumps[CONNECTIONS / 2]!;
    client.child.stdin!.write(`reset ${gone.remotePort}\n`);
    await client.event('reset');

    const silent = { ...dumps[0]!, remoteAddress: SILENT_HOST, remotePort: 40000 };
    const b = lab.start(lab.serverB, 'probe-many.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, 'restore');
    b.child.stdin!.write(JSON.stringify({ targets: [...dumps, silent] }) + '\n');
    const { results, ticks } = (await b.event('results')) as { results: Result[]; ticks: number };

    expect(results).toHaveLength(CONNECTIONS + 1);
    for (const [i, dump] of dumps.entries()) {
      if (dump === gone) {
        expect(results[i]).toMatchObject({ error: { code: 'ECONNRESET' } });
        expect(results[i]!.restored).toBeUndefined();
      } else {
        expect(results[i]!.offset, `connection from port ${dump.remotePort}`).toBe(read[dump.remotePort]);
        expect(results[i]!.restored).toEqual(expect.objectContaining({ sendSeq: results[i]!.answer!.ack, recvSeq: results[i]!.answer!.seq }));
      }
    }
    expect(results[CONNECTIONS]).toMatchObject({ error: { code: 'ETIMEDOUT', syscall: 'poll' } });
    expect(ticks).toBeGreaterThanOrEqual(5);

    // 'complete': every connection but the reset one has read exactly its whole pattern stream.
    await client.event('complete');
    expect(client.events.filter((e) => e.event === 'error')).toEqual([]);
  });
});
