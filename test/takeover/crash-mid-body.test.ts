/*
 * Issue 5: curl, wget and Python http.client (one keep-alive connection, several requests) on
 * the client download through s1; s1 crashes mid-body; s2 adopts s1's address and every byte
 * each client received matches the file. With the built-in origin and with Apache. Each client
 * reads 600 KB/s (below the lab's 32 Mbit/s, so none can hog it), and the client's small receive
 * buffers (test/support/lab.ts) hold s1's side of each connection mid-body as well.
 *
 *   client: curl big.bin, wget big.bin, keepalive-client.py small.bin x3   (all via s1's VIP)
 *   test:   wait until each is mid-body, `wedge lab crash s1`
 *   check:  exit codes 0, sha256 of every body, one client port for the 3 requests,
 *           s2 /metrics wedge_takeovers_total{result="resumed"} = 3
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const PYTHON_CLIENT = join(import.meta.dirname, 'fixtures', 'keepalive-client.py');
const MIB = 1024 * 1024;
const sizeOf = async (file: string) => (await stat(file)).size;

describe.skipIf(!IS_ROOT).each(['builtin', 'apache'] as const)('crash mid-body (%s origin)', (origin) => {
  const lab = new Lab(`mid-${origin}`);

  beforeAll(async () => {
    await lab.up({ servers: 2, origin, files: ['big.bin:3', 'small.bin:1'], rate: '32mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('curl, wget and a keep-alive http.client finish byte-exact after s1 crashes', async () => {
    const big = lab.file('/big.bin');
    const small = lab.file('/small.bin');
    const [curlOut, wgetOut, pyOut] = [lab.out('curl.out'), lab.out('wget.out'), lab.out('py.out')];
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '600K', '-o', curlOut, lab.url('s1', '/big.bin')]);
    const wget = lab.background('client', ['wget', '-q', '--limit-rate=600k', '-O', wgetOut, lab.url('s1', '/big.bin')]);
    const python = lab.background('client', ['python3', PYTHON_CLIENT, lab.server('s1').vip, '/small.bin', '3', pyOut, '--rate', String(600 * 1024)]);
    try {
      // Python is past its first response; curl and wget are somewhere in their only one.
      await Promise.all([waitForBytes(pyOut, small.bytes + 64 * 1024, python), waitForBytes(curlOut, MIB / 4, curl), waitForBytes(wgetOut, MIB / 4, wget)]);
      await lab.crash('s1');
      // Once crash returns s1's link is down, and s2 cannot have taken over yet (it needs 400 ms
      // of silence): what the clients hold now is what they had when s1 vanished.
      const atCrash = await Promise.all([pyOut, curlOut, wgetOut].map(sizeOf));

      expect(await curl.done(), curl.stderr).toBe(0);
      expect(await wget.done(), wget.stderr).toBe(0);
      expect(await python.done(), python.stderr).toBe(0);
      expect(atCrash[0]).toBeLessThan(3 * small.bytes);
      expect(atCrash[1]).toBeLessThan(big.bytes);
      expect(atCrash[2]).toBeLessThan(big.bytes);

      for (const out of [curlOut, wgetOut]) await expectSameBytes(out, big);
      const report = JSON.parse(python.stdout.trim().split('\n').at(-1)!) as { requests: { status: number; port: number; bytes: number; sha256: string }[] };
      expect(report.requests.map((r) => [r.status, r.bytes, r.sha256])).toEqual(Array(3).fill([200, small.bytes, small.sha256]));
      expect(new Set(report.requests.map((r) => r.port)).size, 'one keep-alive connection for all requests').toBe(1);
      expect((await readFile(pyOut)).length).toBe(3 * small.bytes);

      const story = await lab.story();
      const metrics = await lab.metrics('s2');
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(3);
      expect(metrics.total('wedge_aborts_total'), story).toBe(0);
      // Each resumed inside a response (a body to fetch again), not after the last byte.
      const resumed = await lab.logged('s2', 'connection resumed');
      expect(resumed.map((line) => line.steps), story).toEqual([1, 1, 1]);
    } finally {
      for (const download of [curl, wget, python]) download.kill();
    }
  });
});
