/*
 * Issue 6: a client host without the agent. Its connections are served exactly as before, but
 * cannot move: when their server dies, the group counts them 'not-movable' (a takeover that
 * could not be done) instead of guessing, and nothing else is sent to the client.
 *
 *   lab:    --subnets without --agent, 3 servers
 *   client: curl small.bin (byte-exact, served normally), then curl big.bin through s1
 *   test:   crash s1 mid-download
 *   check:  small.bin exact; the big download fails (curl's own deadline); s2 and s3 each count
 *           one aborted takeover with reason not-movable
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

describe.skipIf(!IS_ROOT)('TCP Migrate without the client agent', () => {
  const lab = new Lab('mnoagent');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:16', 'small.bin:1'], subnets: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('serves the client normally, and counts its connection not-movable when the server dies', async () => {
    const small = lab.file('/small.bin');
    const smallOut = lab.out('small.out');
    expect((await lab.exec('client', ['curl', '-fsS', '-o', smallOut, lab.url('s1', '/small.bin')])).code).toBe(0);
    await expectSameBytes(smallOut, small);

    const out = lab.out('big.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '2M', '--max-time', '8', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, 1024 * 1024, curl);
      await lab.crash('s1');
      expect(await curl.done(), 'the download cannot finish').not.toBe(0);
      const story = await lab.story();
      for (const server of ['s2', 's3']) {
        const metrics = await lab.metrics(server);
        expect(metrics.value('wedge_aborts_total', { reason: 'takeover: not-movable' }), `${server}\n${story}`).toBe(1);
        expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(0);
      }
    } finally {
      curl.kill();
    }
  });
});
