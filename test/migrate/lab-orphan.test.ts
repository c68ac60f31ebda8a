/*
 * Issue 12: no hang, even for a connection nobody can move. Under TCP Migrate a connection
 * whose server dies before the agent's key exchange finished has no key at any replica, and
 * no replica holds its address: before the agent's OrphanWatch, its client waited forever (6 of
 * 200 soak runs). The key exchange is made to fail by dropping the servers' answers on the
 * client host, as when the server dies in the connection's first milliseconds.
 *
 *   lab:   --subnets --agent, 2 servers; the client drops UDP from the servers' port 80
 *   live:  a download from s1 whose key exchange failed keeps going: byte-exact, nothing reset
 *   dead:  the same with s1 crashed mid-download: curl fails with a connection abort soon after
 *          (the agent's --orphan-timeout, 5 s, plus one last key exchange), not at its own
 *          deadline; the agent counts and logs one orphan reset; s2's Migrate SYN (s1 had
 *          finished its side of the exchange) was refused by the agent, which holds no key
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const ORPHAN_RESET = 'connection reset: its server went silent before the key exchange finished, so no replica can move it';
/* curl's own deadline: far beyond the orphan timeout, so reaching it means the agent did nothing. */
const CURL_MAX_S = 40;

async function agentMetric(lab: Lab, name: string, labels: Record<string, string> = {}): Promise<number> {
  return (await lab.metrics('client-agent')).value(name, labels);
}

describe.skipIf(!IS_ROOT)('TCP Migrate: a connection no replica can move', () => {
  const lab = new Lab('morphan');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:16'], subnets: true, agent: true });
    const servers = lab.servers.map((s) => s.vip).join(', ');
    await lab.execOk('client', ['nft', `add table ip wedge_test_orphan
      add chain ip wedge_test_orphan input { type filter hook input priority -10; }
      add rule ip wedge_test_orphan input ip saddr { ${servers} } udp sport 80 drop`]);
  });
  afterAll(async () => {
    await lab.down();
  });

  it('leaves an unprotected connection alone while its server sends', async () => {
    const out = lab.out('live.out');
    const curl = lab.background('client', ['curl', '-fsS', '--limit-rate', '2M', '--max-time', String(CURL_MAX_S), '-o', out, lab.url('s1', '/big.bin')]);
    try {
      expect(await curl.done(), 'the download finishes').toBe(0);
      await expectSameBytes(out, lab.file('/big.bin'));
      expect(await agentMetric(lab, 'wedge_agent_negotiations_total', { result: 'unnegotiated' }), 'its key exchange failed').toBe(1);
      expect(await agentMetric(lab, 'wedge_agent_orphan_resets_total')).toBe(0);
    } finally {
      curl.kill();
    }
  });

  it('resets it, loudly and counted, once its server died', async () => {
    const out = lab.out('dead.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '2M', '--max-time', String(CURL_MAX_S), '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, 2 * 1024 * 1024, curl);
      await lab.crash('s1');
      const code = await curl.done();
      const story = await lab.story();
      expect(code, `curl must fail (56: receive failure), not hang to its deadline (28)\n${story}`).toBe(56);
      expect(await agentMetric(lab, 'wedge_agent_orphan_resets_total'), story).toBe(1);
      const [reset] = await lab.logged('client-agent', ORPHAN_RESET);
      expect(reset, story).toMatchObject({ level: 50, server: `${lab.server('s1').vip}:80` });
      // s1 had finished its side of the exchange, so s2 tried: the agent, holding no key, refused.
      expect(await lab.logged('client-agent', 'rejected Migrate SYN'), story).toContainEqual(expect.objectContaining({ reason: 'unknown-token' }));
      expect((await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(0);
    } finally {
      curl.kill();
    }
  });
});
