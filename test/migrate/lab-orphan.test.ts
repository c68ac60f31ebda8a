/*
 * Issue 12: no hang, even for a connection whose key never reached the group. Under TCP Migrate
 * a connection whose server dies before the agent's key exchange finished has no key at any
 * replica, and no replica holds its address: before this, its client waited forever (6 of 200
 * soak runs). Two mechanisms, each shown with the exchange made to fail on the client host:
 *
 *   lab:     --subnets --agent, 3 servers
 *   invited: the agent's HELLOs to s1 are dropped (s1 never hears them: it died "during the
 *            exchange"); s1 crashed mid-download: the adopter invites the agent, runs the
 *            exchange itself, and migrates the connection: byte-exact
 *   live:    every server's answers are dropped; a download from s2, whose exchange failed,
 *            keeps going: byte-exact, nothing reset
 *   orphan:  the same with s2 crashed mid-download: s2 had answered (its record has the key the
 *            agent never got), so the adopter's Migrate SYN is refused; curl fails with a
 *            connection abort soon after (the agent's --orphan-timeout, 5 s, plus one last key
 *            exchange), not at its own deadline; the agent counts and logs one orphan reset
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
    await lab.up({ servers: 3, files: ['big.bin:16'], subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('the adopter of a connection whose server never heard the key exchange runs it with the agent, then moves it', async () => {
    await lab.execOk('client', ['nft', `add table ip wedge_test_invite
      add chain ip wedge_test_invite output { type filter hook output priority -10; }
      add rule ip wedge_test_invite output ip daddr ${lab.server('s1').vip} udp dport 80 drop`]);
    const out = lab.out('invited.out');
    const curl = lab.background('client', ['curl', '-fsS', '--limit-rate', '2M', '--max-time', String(CURL_MAX_S), '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, 2 * 1024 * 1024, curl);
      await lab.crash('s1');
      const code = await curl.done();
      const story = await lab.story();
      expect(code, story).toBe(0);
      await expectSameBytes(out, lab.file('/big.bin'));
      const agent = await lab.metrics('client-agent');
      expect(agent.value('wedge_agent_invitations_total', { result: 'negotiated' }), story).toBe(1);
      expect(agent.value('wedge_agent_migrations_total'), story).toBe(1);
      expect(agent.value('wedge_agent_orphan_resets_total'), story).toBe(0);
    } finally {
      curl.kill();
      await lab.execOk('client', ['nft', 'delete table ip wedge_test_invite']);
    }
  });

  it('leaves an unprotected connection alone while its server sends', async () => {
    const servers = lab.servers.map((s) => s.vip).join(', ');
    await lab.execOk('client', ['nft', `add table ip wedge_test_orphan
      add chain ip wedge_test_orphan input { type filter hook input priority -10; }
      add rule ip wedge_test_orphan input ip saddr { ${servers} } udp sport 80 drop`]);
    const before = await agentMetric(lab, 'wedge_agent_negotiations_total', { result: 'unnegotiated' });
    const out = lab.out('live.out');
    const curl = lab.background('client', ['curl', '-fsS', '--limit-rate', '2M', '--max-time', String(CURL_MAX_S), '-o', out, lab.url('s2', '/big.bin')]);
    try {
      expect(await curl.done(), 'the download finishes').toBe(0);
      await expectSameBytes(out, lab.file('/big.bin'));
      expect(await agentMetric(lab, 'wedge_agent_negotiations_total', { result: 'unnegotiated' }), 'its key exchange failed').toBe(before + 1);
      expect(await agentMetric(lab, 'wedge_agent_orphan_resets_total')).toBe(0);
    } finally {
      curl.kill();
    }
  });

  it('resets it, loudly and counted, once its server died', async () => {
    const out = lab.out('dead.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '2M', '--max-time', String(CURL_MAX_S), '-o', out, lab.url('s2', '/big.bin')]);
    try {
      await waitForBytes(out, 2 * 1024 * 1024, curl);
      await lab.crash('s2');
      const code = await curl.done();
      const story = await lab.story();
      expect(code, `curl must fail (56: receive failure), not hang to its deadline (28)\n${story}`).toBe(56);
      expect(await agentMetric(lab, 'wedge_agent_orphan_resets_total'), story).toBe(1);
      const [reset] = await lab.logged('client-agent', ORPHAN_RESET);
      expect(reset, story).toMatchObject({ level: 50, server: `${lab.server('s2').vip}:80` });
      // s2 had finished its side of the exchange, so s3 raced: the agent, holding no key, refused.
      expect(await lab.logged('client-agent', 'rejected Migrate SYN'), story).toContainEqual(expect.objectContaining({ reason: 'unknown-token' }));
    } finally {
      curl.kill();
    }
  });
});
