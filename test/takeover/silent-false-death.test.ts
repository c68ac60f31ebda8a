/*
 * Issue 5: a live server wrongly found dead by silence (its heartbeats lost for a while, nobody
 * reports anything). s2 adopts s1's address and the connection; when s1 is heard again it sees
 * s2 claim its address at a newer generation, gives the address up and steps back from the
 * connection. The client gets every byte exactly once, and one host holds the address.
 *
 *   client: curl big.bin via s1's VIP (slowly)
 *   test:   mid-body, s1's soft-state datagrams are dropped for 1.5 s (nftables in s1), s1 runs on
 *   check:  curl exit 0, sha256 exact; s2 resumed the connection; s1 released the address
 *           (only s2 has it) and let the connection go; a new download via the VIP is exact
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, until, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;
const SILENCE = 'table ip silence { chain out { type filter hook output priority 0; udp dport 7077 drop; }; }';

describe.skipIf(!IS_ROOT)('silent false death', () => {
  const lab = new Lab('silent');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:3'], rate: '40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('leaves one holder of the address and a byte-exact download', async () => {
    const big = lab.file('/big.bin');
    const vip = lab.server('s1').vip;
    const out = lab.out('curl.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '300K', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB / 2, curl);
      const silenced = await lab.exec('s1', ['sh', '-c', `echo '${SILENCE}' | nft -f -`]);
      expect(silenced.code, silenced.stderr).toBe(0);
      await sleep(1_500);
      expect((await lab.exec('s1', ['nft', 'delete', 'table', 'ip', 'silence'])).code).toBe(0);

      expect(await curl.done(), curl.stderr).toBe(0);
      await expectSameBytes(out, big);

      const story = await lab.story();
      expect((await lab.logged('s2', 'peer dead')).map((line) => line.reason), story).toContain('silent');
      expect((await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      const holds = async (server: string) => (await lab.exec(server, ['ip', '-4', 'addr', 'show'])).stdout.toString().includes(`${vip}/`);
      await until('s1 to release its address', async () => !(await holds('s1')));
      expect(await holds('s2')).toBe(true);
      await until('s1 to let the connection go', async () => (await lab.connections('s1')).length === 0);

      const again = await lab.exec('client', ['curl', '-sS', '--max-time', '20', lab.url('s1', '/big.bin')]);
      expect(again.code, again.stderr).toBe(0);
      await expectSameBytes(again.stdout, big);
    } finally {
      curl.kill();
    }
  });
});
