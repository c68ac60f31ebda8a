/*
 * Issue 6: TCP Migrate between servers on different subnets (no address can be shared). curl on
 * the client host downloads through s1; s1 crashes mid-body; the three other servers race with
 * Migrate SYNs and exactly one wins (the client agent accepts one request number and refuses
 * the rest with RST; a candidate that hears of the winner first stands down). Then the winner
 * crashes too and one of the last two takes over: a cascade within the same download.
 *
 *   lab:    --subnets --agent, 4 servers, builtin origins
 *   client: curl big.bin (24 MiB) via s1's own address, 2 MB/s
 *   check:  curl exit 0, size and sha256 exact; one 'migrated' per request number at the agent;
 *           winners resumed mid-body; losers counted lost-race (each matching a refused SYN) or
 *           stood-down, or not racing at all; no aborts anywhere
 */
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;
const CANDIDATES = ['s2', 's3', 's4'];

describe.skipIf(!IS_ROOT)('TCP Migrate: crash, race, cascade', () => {
  const lab = new Lab('mrace');

  beforeAll(async () => {
    await lab.up({ servers: 4, files: ['big.bin:24'], subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('moves one download s1 -> winner -> a third server, byte-exact, one winner per race', async () => {
    const big = lab.file('/big.bin');
    const out = lab.out('curl.out');
    const curl = lab.background('client', ['curl', '-sS', '--limit-rate', '2M', '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB, curl);
      // The exchange runs beside the download; on a loaded machine it may finish after the first MiB.
      expect(await lab.waitLogged('client-agent', 'negotiated'), 'the agent agreed a key with s1').toHaveLength(1);
      await lab.crash('s1');
      const first = lab.serverAt((await lab.waitLogged('client-agent', 'migrated', 1))[0]!.to);
      const rest = CANDIDATES.filter((s) => s !== first);
      await waitForBytes(out, (await stat(out)).size + MIB / 2, curl);
      await lab.crash(first);
      const second = lab.serverAt((await lab.waitLogged('client-agent', 'migrated', 2))[1]!.to);

      expect(await curl.done(), curl.stderr).toBe(0);
      await expectSameBytes(out, big);

      const story = await lab.story();
      const migrated = await lab.logged('client-agent', 'migrated');
      expect(migrated.map((m) => [m.request, m.to]), story).toEqual([
        [1, `${lab.server(first).vip}:80`],
        [2, `${lab.server(second).vip}:80`],
      ]);
      for (const winner of [first, second]) {
        expect((await lab.logged(winner, 'connection resumed')).map((line) => line.steps), `${winner} resumed mid-body\n${story}`).toEqual([1]);
      }
      // Race 1 had two losers among `rest`, race 2 one: each sent a refused SYN (lost-race), heard
      // of the winner before its turn (stood-down), or heard of it before it heard of the death
      // (no race at all). Every lost race is one refused SYN.
      const survivors = await Promise.all(rest.map((server) => lab.metrics(server)));
      const lost = survivors.reduce((sum, m) => sum + m.value('wedge_takeovers_total', { result: 'lost-race' }), 0);
      const stoodDown = survivors.reduce((sum, m) => sum + m.value('wedge_takeovers_total', { result: 'stood-down' }), 0);
      expect(lost + stoodDown, story).toBeLessThanOrEqual(3);
      const agent = await lab.metrics('client-agent');
      expect(agent.value('wedge_agent_migrations_total'), story).toBe(2);
      expect(agent.total('wedge_agent_rejected_syns_total'), story).toBe(lost);
      for (const metrics of survivors) expect(metrics.total('wedge_aborts_total'), story).toBe(0);
    } finally {
      curl.kill();
    }
  });
});
