/*
 * Issue 12, point 3: only service addresses move. The wedge listens on every address, so a
 * client can download from s1's own (cluster) address; a wrong death report of s1 must not make
 * a peer add that address. s1 keeps serving the download; s2 counts the connection as not taken.
 *
 *   client: curl big.bin from http://<s1's own address>/ at 300 KB/s; a stall of 15 s ends it
 *           loudly instead of hanging
 *   test:   `wedge lab declare-dead s1` mid-body (s1 keeps running)
 *   check:  curl exit 0, size and sha256 exact; no server but s1 has s1's own address; s1 did not
 *           let the connection go; s2 counted it 'not-service-address'
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)("a server's own address", () => {
  const lab = new Lab('ownaddr');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:3'], rate: '40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('is never adopted: a wrong death report leaves the download with s1', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    const own = lab.server('s1').address;
    const curl = lab.background('client', [
      'curl', '-sS', '--limit-rate', '300K', '--speed-limit', '1', '--speed-time', '15', '-o', out, `http://${own}/big.bin`,
    ]);
    try {
      await waitForBytes(out, MIB / 2, curl);
      expect(await lab.connections('s1')).toHaveLength(1);
      await lab.declareDead('s1');
      await lab.waitLogged('s2', 'peer dead');

      expect(await curl.done(), `${curl.stderr}\n${await lab.story()}`).toBe(0);
      await expectSameBytes(out, big);
      for (const server of lab.servers.filter((s) => s.name !== 's1')) {
        expect(await lab.execNow(server.name, ['ip', '-o', '-4', 'addr', 'show']), `${server.name}'s addresses`).not.toContain(` ${own}/`);
      }
      expect((await lab.metrics('s1')).value('wedge_relinquished_total')).toBe(0);
      expect((await lab.metrics('s2')).value('wedge_aborts_total', { reason: 'takeover: not-service-address' }), await lab.story()).toBe(1);
    } finally {
      curl.kill();
    }
  });
});
