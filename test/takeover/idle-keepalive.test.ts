/*
 * Issue 5: a crash on an idle keep-alive connection, then a new request on it. The client has
 * received its whole first response and sent nothing since; s1 crashes; s2 adopts the idle
 * connection, and the next requests on the same connection are answered by s2.
 *
 *   client: keepalive-client.py small.bin x3 via s1's VIP, pausing after the first response
 *   test:   crash s1 during the pause; wait until s2 holds the connection; let the client go on
 *   check:  exit 0, every body exact, one client port for all requests, s2 resumed 1
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, Lab, until } from '../support/lab.js';

const PYTHON_CLIENT = join(import.meta.dirname, 'fixtures', 'keepalive-client.py');

describe.skipIf(!IS_ROOT)('crash on an idle keep-alive connection', () => {
  const lab = new Lab('idle');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['small.bin:1'] });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('resumes the idle connection and answers the next requests on it', async () => {
    const small = lab.file('/small.bin');
    const go = lab.out('go');
    const python = lab.background('client', ['python3', PYTHON_CLIENT, lab.server('s1').vip, '/small.bin', '3', lab.out('py.out'), '--pause', go]);
    try {
      await until('the first response', async () => python.stdout.includes('"idle"'));
      const [idle] = await lab.connections('s1');
      expect(idle?.requests).toBe(1);
      await lab.crash('s1');
      await lab.holder(['s2']);
      await writeFile(go, '');

      expect(await python.done(), python.stderr + (await lab.story())).toBe(0);
      const report = JSON.parse(python.stdout.trim().split('\n').at(-1)!) as { requests: { status: number; port: number; bytes: number; sha256: string }[] };
      expect(report.requests.map((r) => [r.status, r.bytes, r.sha256])).toEqual(Array(3).fill([200, small.bytes, small.sha256]));
      expect(new Set(report.requests.map((r) => r.port)).size, 'one keep-alive connection for all requests').toBe(1);
      const story = await lab.story();
      const metrics = await lab.metrics('s2');
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      // Adopted between exchanges: nothing to send again.
      expect((await lab.logged('s2', 'connection resumed')).map((line) => line.steps), story).toEqual([0]);
      expect(metrics.value('wedge_requests_total', { method: 'GET' })).toBe(2);
    } finally {
      python.kill();
    }
  });
});
