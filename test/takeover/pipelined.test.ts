/*
 * A takeover in the middle of a pipeline. The client sends 20 GETs at once on one connection and
 * reads the responses slowly; s1 crashes after the first megabyte. Every pipelined request is in
 * the stream map from the moment it is parsed, so s2 resumes the response in flight and then
 * answers the rest in order. (Before, the requests not yet begun were in no record: s2 served the
 * one in flight and the client waited for the others forever.)
 *
 *   client: pipeline-client.py: small.bin x20 pipelined, read at 1.5 MB/s, via s1
 *   test:   once 1 MiB of bodies has arrived, `wedge lab crash s1`
 *   check:  20 responses 200, each byte-exact; s2 resumed the connection and replayed the rest
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const CLIENT = join(import.meta.dirname, 'fixtures', 'pipeline-client.py');
const MIB = 1024 * 1024;
const COUNT = 20;

describe.skipIf(!IS_ROOT)('a pipeline', () => {
  const lab = new Lab('pipeline');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['small.bin:0.25'] });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('taken over mid-pipeline: every response arrives, in order, byte-exact', async () => {
    const small = lab.file('/small.bin');
    const out = lab.out('pipeline.out');
    const client = lab.background('client', ['python3', CLIENT, lab.server('s1').vip, '/small.bin', String(COUNT), out, '--rate', String(1.5 * MIB)]);
    try {
      await waitForBytes(out, MIB, client);
      await lab.crash('s1');
      expect(await client.done(), client.stderr).toBe(0);
      const report = JSON.parse(client.stdout.trim().split('\n').at(-1)!) as { responses: { status: number; bytes: number; sha256: string }[] };
      expect(report.responses.map((r) => [r.status, r.bytes, r.sha256])).toEqual(Array(COUNT).fill([200, small.bytes, small.sha256]));
      const story = await lab.story();
      const [resumed] = await lab.logged('s2', 'connection resumed');
      expect(resumed?.replay, story).toBeGreaterThan(0);
      const s2 = await lab.metrics('s2');
      expect(s2.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect(s2.total('wedge_aborts_total'), story).toBe(0);
    } finally {
      client.kill();
    }
  });
});
