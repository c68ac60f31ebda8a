/*
 * Issue 11: failover holds however long a keep-alive connection has lived. Python http.client
 * makes 300 requests on one connection, then a download on the same connection; s1 crashes in the
 * middle of it. Its record never grew with the history (the client had acknowledged the old
 * exchanges), so it was advertised all along and s2 resumes the download byte-exact.
 *
 *   client: history-client.py: small.bin x300, then big.bin at 1.5 MB/s, one connection via s1
 *   test:   once 1 MiB of big.bin has arrived, `wedge lab crash s1`
 *   check:  300 small bodies exact, big.bin exact, one client port, s1 showed the connection
 *           protected and never logged a record it could not advertise, s2 resumed it
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const CLIENT = join(import.meta.dirname, 'fixtures', 'history-client.py');
const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)('a long keep-alive history', () => {
  const lab = new Lab('history');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:6', 'small.bin:0.25'] });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('300 requests, then a download on the same connection: survives a crash of its server byte-exact', async () => {
    const small = lab.file('/small.bin');
    const big = lab.file('/big.bin');
    const out = lab.out('big.out');
    const client = lab.background('client', ['python3', CLIENT, lab.server('s1').vip, '/small.bin', small.sha256, '300', '/big.bin', out, '--rate', String(1.5 * MIB)]);
    try {
      await waitForBytes(out, MIB, client);
      const [row] = await lab.connections('s1');
      expect(row?.requests).toBe(301);
      expect(row?.protected, row?.unprotectedReason).toBe(true);
      await lab.crash('s1');

      expect(await client.done(), client.stderr).toBe(0);
      const report = JSON.parse(client.stdout.trim().split('\n').at(-1)!) as { ports: number[]; smallMatching: number; big: { status: number; bytes: number; sha256: string } };
      expect(report.ports, 'one keep-alive connection for every request').toHaveLength(1);
      expect(report.smallMatching).toBe(300);
      expect([report.big.status, report.big.bytes, report.big.sha256]).toEqual([200, big.bytes, big.sha256]);
      await expectSameBytes(out, big);

      const story = await lab.story();
      expect(await lab.logged('s1', 'connection not advertised: unprotected'), story).toEqual([]);
      const s2 = await lab.metrics('s2');
      expect(s2.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect(s2.total('wedge_aborts_total'), story).toBe(0);
    } finally {
      client.kill();
    }
  });
});
