/*
 * Issue 14, point 1: the origin fails, the server does not. Two servers, egress shaped so that a
 * download is mid-flight when the origin is hit through the lab CLI (`wedge lab origin`); the
 * wedge finishes the response with Range + If-Range, byte-exact, from the local origin once it
 * answers again, or from the peer's origin when the local one stays away; a file changed on
 * every origin is a loud counted reset, never a mixed stream.
 *
 *   client: curl big.bin through s1's service address (curl, no retries)
 *   test:   at 1 MiB, `wedge lab origin s1 restart|kill-worker|stop`
 *   check:  curl exits 0, sha256 equal to the file; s1 counts the resume by source; no takeover
 */
import { open, readFile, stat, utimes } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes, wedgeOk } from '../support/lab.js';

const MIB = 1024 * 1024;
const FILE = '/big.bin';

type Origin = 'builtin' | 'apache';

function originLab(origin: Origin) {
  const lab = new Lab(`origin-resume-${origin}`);
  const originCommand = (server: string, action: string) => wedgeOk(['lab', 'origin', server, action, '--lab', lab.name]);

  /* A download through s1 that `act` hits once 1 MiB has arrived; curl's exit and the bytes. */
  async function download(act: () => Promise<unknown>): Promise<{ code: number; got: Buffer; story: string; stderr: string }> {
    const out = lab.out(`download-${Date.now()}.bin`);
    const curl = lab.background('client', ['curl', '-sS', '--max-time', '60', '-o', out, lab.url('s1', FILE)]);
    try {
      await waitForBytes(out, MIB, curl);
      await act();
      const code = await curl.done(90_000);
      return { code, got: await readFile(out), story: await lab.story(), stderr: curl.stderr };
    } finally {
      curl.kill();
    }
  }

  async function resumes(server: string, source: string, result: string): Promise<number> {
    return (await lab.metrics(server)).value('wedge_origin_resumes_total', { source, result });
  }

  return { lab, originCommand, download, resumes };
}

async function expectExactThroughS1(lab: Lab, got: { code: number; got: Buffer; story: string; stderr: string }): Promise<void> {
  expect(got.code, `curl exit ${got.code}: ${got.stderr}\n${got.story}`).toBe(0);
  await expectSameBytes(got.got, lab.file(FILE), 'the download');
  expect((await lab.metrics('s2')).total('wedge_takeovers_total'), 'no takeover: s1 finished it').toBe(0);
}

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/apache2'))('origin failures under a live wedge (apache)', () => {
  const { lab, originCommand, download, resumes } = originLab('apache');

  beforeAll(async () => {
    await lab.up({ servers: 2, origin: 'apache', files: ['big.bin:64'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('Apache restarted (-k restart) mid-download: finished byte-exact by the same wedge from the local origin', async () => {
    const before = await resumes('s1', 'local', 'resumed');
    await expectExactThroughS1(lab, await download(() => originCommand('s1', 'restart')));
    expect(await resumes('s1', 'local', 'resumed')).toBe(before + 1);
  });

  it("Apache's serving worker SIGKILLed mid-download: finished byte-exact from the local origin", async () => {
    const before = await resumes('s1', 'local', 'resumed');
    await expectExactThroughS1(lab, await download(() => originCommand('s1', 'kill-worker')));
    expect(await resumes('s1', 'local', 'resumed')).toBe(before + 1);
  });

  it("the local origin stopped for good mid-download: the rest comes from the peer's origin, byte-exact", async () => {
    const before = await resumes('s1', 'peer', 'resumed');
    try {
      await expectExactThroughS1(lab, await download(() => originCommand('s1', 'stop')));
      expect(await resumes('s1', 'peer', 'resumed')).toBe(before + 1);
      expect((await lab.logged('s2', 'serving a range to a peer')).length).toBeGreaterThanOrEqual(1);
    } finally {
      await originCommand('s1', 'start');
    }
  });
});

describe.skipIf(!IS_ROOT)('origin failures under a live wedge (builtin)', () => {
  const { lab, originCommand, download, resumes } = originLab('builtin');

  beforeAll(async () => {
    await lab.up({ servers: 2, origin: 'builtin', files: ['big.bin:64'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('the built-in origin restarted mid-download: finished byte-exact from the local origin', async () => {
    const before = await resumes('s1', 'local', 'resumed');
    await expectExactThroughS1(lab, await download(() => originCommand('s1', 'restart')));
    expect(await resumes('s1', 'local', 'resumed')).toBe(before + 1);
  });

  it('a peer range request without the cluster key is refused', async () => {
    const answer = await lab.exec('s1', ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Range: bytes=10-', '-H', 'If-Range: "x"', `http://${lab.server('s2').address}:7078${FILE}`]);
    expect(answer.stdout.toString()).toBe('403');
  });

  /* Inverts every byte of the file in place, same size and mtime (the built-in ETag is a content hash). */
  async function change(root: string): Promise<void> {
    const file = join(root, FILE.slice(1));
    const before = await stat(file);
    const data = await readFile(file);
    for (let i = 0; i < data.length; i++) data[i] = data[i]! ^ 0xff;
    const handle = await open(file, 'r+');
    await handle.write(data, 0, data.length, 0);
    await handle.close();
    await utimes(file, before.atime, before.mtime);
  }

  it('the origin stopped mid-download, the file changed on every origin, the origin started again: a loud counted reset, never a mixed stream', async () => {
    const original = await readFile(join(lab.server('s1').root, FILE.slice(1)));
    const aborts = (await lab.metrics('s1')).value('wedge_aborts_total', { reason: 'representation-changed' });
    // Stopped first: a built-in origin still streaming the file while it changes would itself
    // send mixed bytes. Started again within --origin-retry, so the local origin answers first.
    const result = await download(async () => {
      await originCommand('s1', 'stop');
      for (const server of lab.servers) await change(server.root);
      await originCommand('s1', 'start');
    });
    expect([18, 56], `curl exit ${result.code}: ${result.stderr}\n${result.story}`).toContain(result.code);
    expect(result.got.length).toBeLessThan(original.length);
    await expectSameBytes(result.got, original.subarray(0, result.got.length), 'what the client got (a prefix of the original)');
    const metrics = await lab.metrics('s1');
    expect(metrics.value('wedge_aborts_total', { reason: 'representation-changed' })).toBe(aborts + 1);
    expect(metrics.value('wedge_origin_resumes_total', { source: 'peer', result: 'representation-changed' })).toBe(1);
  });
});
