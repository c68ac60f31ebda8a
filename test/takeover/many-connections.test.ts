/*
 * Issue 5: 200 concurrent downloads on one server, and it crashes. The adopter takes over every
 * connection still open and all 200 downloads finish byte-exact.
 *
 *   client: many-client.py: 200 threads, each GET file.bin on its own connection via s1's VIP
 *           (started 5 ms apart),
 *           each reading 128 KiB/s (so the whole batch lasts ~8 s; the client's small receive
 *           buffer keeps the server's side of every connection mid-body too)
 *   test:   once a third of all bytes have arrived, crash s1
 *   check:  exit 0, 200 bodies of the right size and sha256; the adopter resumed at least every
 *           download unfinished at the crash and aborted none
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, Lab, until } from '../support/lab.js';

const MANY_CLIENT = join(import.meta.dirname, 'fixtures', 'many-client.py');
const COUNT = 200;
const READ_RATE = 128 * 1024;

/* Sizes of the files in DIR. */
async function sizesIn(dir: string): Promise<number[]> {
  const sizes = [];
  for (const name of await readdir(dir)) sizes.push((await stat(join(dir, name)).catch(() => ({ size: 0 }))).size);
  return sizes;
}

describe.skipIf(!IS_ROOT)(`${COUNT} concurrent downloads, one crash`, () => {
  const lab = new Lab('many');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['file.bin:1'] });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('all finish byte-exact', async () => {
    const file = lab.file('/file.bin');
    const dir = lab.out('many');
    await mkdir(dir);
    const client = lab.background('client', ['python3', MANY_CLIENT, lab.server('s1').vip, '/file.bin', String(COUNT), dir, String(READ_RATE)]);
    try {
      let ended = false;
      void client.exited.then(() => (ended = true));
      await until('a third of all bytes', async () => {
        if (ended) throw new Error(`client ended before the crash: ${client.stderr}`);
        return (await sizesIn(dir)).reduce((a, b) => a + b, 0) >= (COUNT * file.bytes) / 3;
      }, 60_000);
      const unfinished = (await sizesIn(dir)).filter((size) => size < file.bytes).length;
      await lab.crash('s1');

      expect(await client.done(120_000), client.stderr).toBe(0);
      const report = JSON.parse(client.stdout.trim().split('\n').at(-1)!) as { downloads: { port?: number; status?: number; bytes?: number; sha256?: string; error?: string }[] };
      const story = await lab.story();
      const exact = report.downloads.filter((d) => d.status === 200 && d.bytes === file.bytes && d.sha256 === file.sha256);
      const failed = report.downloads.filter((d) => !exact.includes(d));
      expect(exact.length, `${JSON.stringify(failed.slice(0, 5))}\n${story.split('\n').filter((l) => !l.includes('connection resumed')).join('\n')}`).toBe(COUNT);

      const metrics = await lab.metrics('s2');
      const done = metrics.value('wedge_takeovers_total', { result: 'resumed' }) + metrics.value('wedge_takeovers_total', { result: 'finished' });
      expect(unfinished).toBeGreaterThan(COUNT / 2);
      expect(done).toBeGreaterThanOrEqual(unfinished);
      expect(metrics.value('wedge_takeovers_total', { result: 'aborted' })).toBe(0);
      expect(metrics.value('wedge_takeovers_total', { result: 'address-failed' })).toBe(0);
      expect(metrics.total('wedge_aborts_total')).toBe(0);
    } finally {
      client.kill();
    }
  });
});
