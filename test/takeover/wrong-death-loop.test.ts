/*
 * Issue 12, point 2: wrong death reports, again and again. The live old owner keeps sending for
 * a few ms after the report (until it hears the migration), so the client ends ahead of the
 * adopter's restore point; the adopter must fast-forward (or reset loudly), never hang.
 *
 *   client: curl a 16 MiB file through s1's service address (40 Mbit/s, the kernel's receive
 *           buffer: a window far larger than a restored socket's first flight), 12 times
 *   test:   mid-download, `wedge lab declare-dead` the server holding the connection (it lives on)
 *   check:  every download ends within a bound: byte-exact, or reset and counted in
 *           wedge_aborts_total (never hung, never corrupted); the counts are printed.
 * Duplicate notices: the report sent twice at once adopts the connection once (no 'takeover: ...'
 * abort anywhere) and the download is byte-exact.
 */
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PORT } from '../../lab/plan.js';
import { sha256 } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;
const RUNS = 12;
/* A download that has not ended this long after it began is hung (it needs about 4 s). */
const HUNG_AFTER_S = 25;

describe.skipIf(!IS_ROOT)('wrong death reports, repeatedly', () => {
  const lab = new Lab('wrongloop');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:16'], rate: '40mbit', clientRmem: null });
  });
  afterAll(async () => {
    await lab.down();
  });

  /* Downloads once through s1's address and reports its holder dead `notices` times mid-body. */
  async function run(index: number, notices: number): Promise<'exact' | 'reset' | 'hung' | 'corrupted'> {
    const out = lab.out(`run-${index}.out`);
    const curl = lab.background('client', ['curl', '-sS', '--max-time', String(HUNG_AFTER_S), '-o', out, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(out, MIB, curl);
      const holder = await holderNow();
      await Promise.all(Array.from({ length: notices }, () => lab.declareDead(holder)));
      const code = await curl.done((HUNG_AFTER_S + 10) * 1000);
      if (code === 28) return 'hung';
      if (code !== 0) return 'reset';
      return sha256(await readFile(out)) === lab.file('/big.bin').sha256 ? 'exact' : 'corrupted';
    } finally {
      curl.kill();
      await rm(out, { force: true });
    }
  }

  /* The server serving the download now, asked straight through `ip netns exec` (no CLI start-up). */
  async function holderNow(): Promise<string> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const server of ['s1', 's2']) {
        const listed = await lab.execNow(server, ['curl', '-sS', `http://127.0.0.1:${ADMIN_PORT}/connections`]).catch(() => '{}');
        if (((JSON.parse(listed) as { connections?: unknown[] }).connections ?? []).length > 0) return server;
      }
      if (Date.now() > deadline) throw new Error('no server serves the download');
      await sleep(20);
    }
  }

  async function aborts(): Promise<Record<string, number>> {
    const counted: Record<string, number> = {};
    for (const server of ['s1', 's2']) {
      for (const sample of (await lab.metrics(server)).all('wedge_aborts_total')) counted[sample.labels.reason!] = (counted[sample.labels.reason!] ?? 0) + sample.value;
    }
    return counted;
  }

  it(`${RUNS} downloads each survive a wrong death report of their server: none hung, none corrupted`, async () => {
    const results: string[] = [];
    for (let i = 0; i < RUNS; i++) results.push(await run(i, 1));
    const count = (what: string) => results.filter((r) => r === what).length;
    const counted = await aborts();
    const resetsCounted = Object.values(counted).reduce((sum, n) => sum + n, 0);
    const fastForwards = (await lab.logged('s1', 'connection fast-forwarded')).length + (await lab.logged('s2', 'connection fast-forwarded')).length;
    console.log(
      `wrong death reports: ${RUNS} runs, exact ${count('exact')}, reset ${count('reset')} (counted ${resetsCounted}: ${JSON.stringify(counted)}), ` +
        `hung ${count('hung')}, corrupted ${count('corrupted')}; clients found ahead and fast-forwarded: ${fastForwards}`,
    );
    const story = await lab.story();
    expect(count('hung'), story).toBe(0);
    expect(count('corrupted'), story).toBe(0);
    // A reset is loud: every one is counted with its reason.
    expect(resetsCounted, story).toBeGreaterThanOrEqual(count('reset'));
  }, RUNS * 60_000);

  it('a death report sent twice at once adopts the connection once', async () => {
    const before = await aborts();
    for (let i = 0; i < 3; i++) expect(await run(100 + i, 2), await lab.story()).toBe('exact');
    const after = await aborts();
    const takeoverAborts = Object.entries(after).filter(([reason, n]) => reason.startsWith('takeover: ') && n > (before[reason] ?? 0));
    expect(takeoverAborts, await lab.story()).toEqual([]);
  }, 4 * 60_000);
});
