/*
 * Issue 12, point 1: a quick cascade. s1 crashes mid-body and its chosen adopter crashes 0.3 s
 * later, before its peers heard it claim s1's address. The third server finds s1's address held by
 * no one alive, adopts it with s1's connection, and adopts the dead adopter's own address too.
 *
 *   client: curl big.bin via s1's VIP at 300 KB/s (in flight for about 10 s); a stall of 15 s
 *           ends it loudly instead of hanging
 *   test:   s1's links down; 0.3 s later those of its adopter (rendezvous over s2, s3)
 *   check:  curl exit 0, size and sha256 exact; the third server resumed it and holds both
 *           addresses; new downloads via both VIPs are exact
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseAdopter } from '../../takeover/choose.js';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)('quick cascade: the adopter dies before its claim is heard', () => {
  const lab = new Lab('quickcascade');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:3'], rate: '40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('the next candidate adopts both addresses and the download finishes byte-exact', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    const [s2, s3] = [lab.server('s2'), lab.server('s3')];
    const adopter = chooseAdopter(lab.server('s1').vip, [s2.address, s3.address]) === s2.address ? s2 : s3;
    const third = adopter === s2 ? s3 : s2;
    const curl = lab.background('client', [
      'curl', '-sS', '--limit-rate', '300K', '--speed-limit', '1', '--speed-time', '15', '-o', out, lab.url('s1', '/big.bin'),
    ]);
    try {
      await waitForBytes(out, MIB / 2, curl);
      const first = lab.crashNow('s1');
      await sleep(300);
      await Promise.all([first, lab.crashNow(adopter.name)]);

      expect(await curl.done(), `${curl.stderr}\n${await lab.story()}`).toBe(0);
      await expectSameBytes(out, big);
      const story = await lab.story();
      const metrics = await lab.metrics(third.name);
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect(metrics.total('wedge_aborts_total'), story).toBe(0);
      const held = await lab.execNow(third.name, ['ip', '-o', '-4', 'addr', 'show']);
      expect(held).toContain(` ${lab.server('s1').vip}/`);
      expect(held).toContain(` ${adopter.vip}/`);

      for (const server of ['s1', adopter.name]) {
        const again = await lab.exec('client', ['curl', '-sS', '--max-time', '20', lab.url(server, '/big.bin')]);
        expect(again.code, `${server}'s VIP: ${again.stderr}`).toBe(0);
        await expectSameBytes(again.stdout, big);
      }
    } finally {
      curl.kill();
    }
  });
});
