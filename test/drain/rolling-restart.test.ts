/*
 * Issue 14, point 4: `wedge lab rolling-restart` (each wedge in turn: drain, start again, rejoin)
 * during 50 concurrent curl downloads spread over the three servers' service addresses. Every
 * download must complete byte-exact, and no server may have reset a connection.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes, wedgeOk, type Background } from '../support/lab.js';

const DOWNLOADS = 50;
const FILE = '/big.bin';

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/nft'))('rolling restart of a three-server lab', () => {
  const lab = new Lab('rolling');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:16'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it(`${DOWNLOADS} downloads in flight through a rolling restart: ${DOWNLOADS} of ${DOWNLOADS} byte-exact`, async () => {
    const servers = ['s1', 's2', 's3'];
    const downloads: { out: string; curl: Background }[] = [];
    try {
      for (let i = 0; i < DOWNLOADS; i++) {
        const out = lab.out(`rolling-${i}.bin`);
        // Paced so that every download outlives the whole restart (three drains and rejoins).
        const curl = lab.background('client', ['curl', '-sS', '--max-time', '120', '--limit-rate', '600k', '-o', out, lab.url(servers[i % 3]!, FILE)]);
        downloads.push({ out, curl });
      }
      await Promise.all(downloads.map(({ out, curl }) => waitForBytes(out, 64 * 1024, curl)));
      await wedgeOk(['lab', 'rolling-restart', '--lab', lab.name]);
      const codes = await Promise.all(downloads.map(({ curl }) => curl.done(150_000)));
      const failed = codes.map((code, i) => ({ code, i })).filter(({ code }) => code !== 0);
      expect(failed, `curl failures: ${failed.map(({ i }) => downloads[i]!.curl.stderr.trim()).join('; ')}\n${await lab.story()}`).toEqual([]);
      for (const { out } of downloads) await expectSameBytes(out, lab.file(FILE));
    } finally {
      for (const { curl } of downloads) curl.kill();
    }
    let resets = 0;
    for (const server of servers) resets += (await lab.metrics(server)).total('wedge_aborts_total');
    expect(resets, 'no connection reset by the wedges running at the end').toBe(0);
  });
});
