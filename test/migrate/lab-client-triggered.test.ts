/*
 * Issue 6: client-triggered migration. The client agent watches each connection's throughput;
 * when it stays below a fraction of its best, it asks the connection's server (a MOVE datagram
 * under the connection key) to move it, and the server hands it to its group.
 *
 *   lab:    --subnets --agent, 3 servers, s1's link shaped to 40 Mbit/s
 *   client: curl big.bin via s1 at full speed
 *   test:   mid-download, `wedge lab shape s1 2mbit` (its throughput falls to ~5% of its best)
 *   check:  the agent asked s1 to move the connection, s1 accepted and handed it off, a peer
 *           won it; curl exit 0 and the sha256 is exact
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;

describe.skipIf(!IS_ROOT)('TCP Migrate: client-triggered', () => {
  const lab = new Lab('mslow');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:32'], subnets: true, agent: true, rate: 's1=40mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('moves a download whose server became slow, byte-exact', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    const curl = lab.background('client', ['curl', '-sS', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      // Past the agent's warm-up, so that its best throughput is the unshaped one.
      await waitForBytes(out, 12 * MIB, curl);
      await lab.waitLogged('client-agent', 'negotiated', 1);
      await lab.shape('s1', '2mbit');
      const [asked] = await lab.waitLogged('client-agent', 'move requested', 1, 20_000);
      expect(asked!.server).toBe(`${lab.server('s1').vip}:80`);
      const [moved] = await lab.waitLogged('client-agent', 'migrated', 1);
      expect(moved!.from).toBe(`${lab.server('s1').vip}:80`);

      expect(await curl.done(), curl.stderr).toBe(0);
      await expectSameBytes(out, big);
      const story = await lab.story();
      const s1 = await lab.metrics('s1');
      expect(s1.value('wedge_move_requests_total', { result: 'accepted' }), story).toBe(1);
      expect(s1.value('wedge_handoffs_total', { trigger: 'client' }), story).toBe(1);
      expect(s1.total('wedge_aborts_total'), story).toBe(0);
      expect(lab.serverAt(moved!.to), story).not.toBe('s1');
    } finally {
      curl.kill();
    }
  });
});
