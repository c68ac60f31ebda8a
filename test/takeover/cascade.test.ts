/*
 * Issue 5: a cascade within one download. s1 crashes mid-body, its adopter takes the connection;
 * then the adopter crashes too, and the third server finishes the download.
 *
 *   client: curl big.bin via s1's VIP (8 Mbit/s per server)
 *   test:   crash s1; find the adopter with `wedge status --json`; let it serve a while; crash it
 *   check:  curl exit 0, size and sha256 exact; the last server resumed the connection
 */
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)('cascade s1 -> s2 -> s3', () => {
  const lab = new Lab('cascade');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:6'], rate: '8mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('finishes byte-exact on the third server', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    const curl = lab.background('client', ['curl', '-sS', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB, curl);
      await lab.crash('s1');
      const second = await lab.holder(['s2', 's3']);
      const third = second === 's2' ? 's3' : 's2';
      // The second server has served part of the body itself before it dies.
      await waitForBytes(out, (await stat(out)).size + MIB / 4, curl).catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await lab.story()}`);
      });
      await lab.crash(second);

      expect(await curl.done(), curl.stderr).toBe(0);
      await expectSameBytes(out, big);
      const story = await lab.story();
      const metrics = await lab.metrics(third);
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect(metrics.total('wedge_aborts_total'), story).toBe(0);
      expect((await lab.logged(third, 'connection resumed')).map((line) => line.steps), 'resumed mid-body').toEqual([1]);
      expect(await lab.connections(third)).toHaveLength(0);
    } finally {
      curl.kill();
    }
  });
});
