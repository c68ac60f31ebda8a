/*
 * Issue 5: an erroneous death report. s1 is declared dead while it lives and serves a download;
 * s2 adopts s1's address and the connection; s1 hears the newer version and steps back without
 * a byte to the client. The client gets every byte exactly once.
 *
 *   client: curl big.bin via s1's VIP (slowly)
 *   test:   `wedge lab declare-dead s1` mid-body (s1 keeps running)
 *   check:  curl exit 0, size and sha256 exact; s1 no longer lists the connection and its
 *           wedge_relinquished_total is 1; s2 resumed it; a new download via s1's VIP is exact
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, until, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)('erroneous death report', () => {
  const lab = new Lab('wrongdead');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:3'], rate: '40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('is survived byte-exact, and the live server steps back', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    // Slow enough (about 10 s) that the download is still running when the report lands, even
    // when every CLI call is slowed by a loaded machine.
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '300K', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB / 2, curl);
      expect(await lab.connections('s1')).toHaveLength(1);
      await lab.declareDead('s1');

      expect(await curl.done(), curl.stderr).toBe(0);
      await expectSameBytes(out, big);

      const story = await lab.story();
      expect((await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect((await lab.logged('s2', 'connection resumed')).map((line) => line.steps), 'resumed mid-body').toEqual([1]);
      await until('s1 to let the connection go', async () => (await lab.connections('s1')).length === 0);
      expect((await lab.metrics('s1')).value('wedge_relinquished_total')).toBe(1);

      // One host answers s1's service address again: a new download through it is exact.
      const again = await lab.exec('client', ['curl', '-sS', '--max-time', '20', lab.url('s1', '/big.bin')]);
      expect(again.code, again.stderr).toBe(0);
      await expectSameBytes(again.stdout, big);
    } finally {
      curl.kill();
    }
  });
});
