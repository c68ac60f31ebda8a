/*
 * Issue 5: the file changed on the adopter. While s1 serves big.bin, its bytes change on every
 * other server (same size; with the built-in origin rewritten in place keeping its mtime, the
 * strong ETag being a content hash; with Apache, whose ETag is MTime-Size, with a new mtime).
 * s1 crashes; the adopter must not splice the new bytes into the old stream: it resets the
 * connection and counts it.
 *
 *   client: curl big.bin via s1's VIP (slowly); s2's origin has served big.bin before
 *   test:   mid-body, change big.bin on s2 and s3; crash s1
 *   check:  curl fails (18 or 56), what it got is a prefix of the original file, and the
 *           adopter counts an aborted takeover or a representation-changed abort
 */
import { open, readFile, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT).each(['builtin', 'apache'] as const)('file changed on the adopter (%s origin)', (origin) => {
  const lab = new Lab(`changed-${origin}`);

  beforeAll(async () => {
    await lab.up({ servers: 3, origin, files: ['big.bin:3'], rate: '40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  /* Inverts every byte of FILE in place (same inode and size); a new mtime for Apache. */
  async function change(file: string): Promise<void> {
    const before = await stat(file);
    const data = await readFile(file);
    for (let i = 0; i < data.length; i++) data[i] = data[i]! ^ 0xff;
    const handle = await open(file, 'r+');
    await handle.write(data, 0, data.length, 0);
    await handle.close();
    const mtime = origin === 'apache' ? new Date(before.mtimeMs + 10_000) : before.mtime;
    await utimes(file, before.atime, mtime);
  }

  it('resets the connection and counts it, never corrupts it', async () => {
    const big = lab.file('/big.bin');
    const original = await readFile(join(lab.server('s1').root, 'big.bin'));
    await expectSameBytes(original, big);
    // The replicas' origins have served this file before (a cached validator must not survive).
    for (const server of ['s2', 's3']) expect((await lab.exec(server, ['curl', '-fsS', '-o', '/dev/null', 'http://127.0.0.1:8080/big.bin'])).code).toBe(0);

    const out = lab.out('curl.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '1M', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB / 2, curl);
      for (const server of ['s2', 's3']) await change(join(lab.server(server).root, 'big.bin'));
      await lab.crash('s1');

      const code = await curl.done();
      const got = await readFile(out);
      const story = await lab.story();
      expect([18, 56], `curl exit ${code}: ${curl.stderr}\n${story}`).toContain(code);
      expect(got.length).toBeLessThan(big.bytes);
      await expectSameBytes(got, original.subarray(0, got.length), 'what the client got (a prefix of the original)');

      const adopter = (await lab.logged('s2', 'address adopted')).length > 0 ? 's2' : 's3';
      const metrics = await lab.metrics(adopter);
      const counted = metrics.value('wedge_takeovers_total', { result: 'aborted' }) + metrics.value('wedge_aborts_total', { reason: 'representation-changed' });
      expect(counted, `${metrics.text}\n${story}`).toBeGreaterThanOrEqual(1);
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }) + counted, story).toBeLessThanOrEqual(2);
    } finally {
      curl.kill();
    }
  });
});
