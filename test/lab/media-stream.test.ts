/*
 * Issue 13 through the lab CLI: the synthetic media stream (examples/media-stream/) as every
 * server's origin (`lab up --origin-cmd`), curl on the client streams through s1, s1 crashes
 * mid-stream. s2 restarts its own origin from the last snapshot s1's record carried, and the
 * sha256 of what curl received equals the stream computed independently. With an origin that
 * ignores Wedge-Resume the connection is reset and counted, and what curl got is a true prefix
 * of the stream: never a wrong byte.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';
import { FRAME_BYTES, frame, streamSha256 } from '../../examples/media-stream/content.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const SERVER = join(PACKAGE_ROOT, 'dist', 'examples', 'media-stream', 'server.js');
const FRAMES = 400;
const PATH = `/stream/demo?frames=${FRAMES}&fps=50`;

describe.skipIf(!IS_ROOT)('media stream crashed mid-stream (state contract)', () => {
  let lab: Lab | undefined;
  afterEach(async () => {
    await lab?.down();
    lab = undefined;
  });

  it('resumes from the snapshot: the client gets the whole stream byte-exact', async () => {
    lab = new Lab('stateful-media');
    await lab.up({ servers: 2, originCmd: `exec ${process.execPath} ${SERVER}`, files: ['a.bin:1'] });
    const out = lab.out('stream.out');
    const curl = lab.background('client', ['curl', '-sS', '-o', out, lab.url('s1', PATH)]);
    try {
      await waitForBytes(out, 60 * FRAME_BYTES, curl);
      await lab.crash('s1');
      expect(await curl.done(), curl.stderr).toBe(0);
      const received = await readFile(out);
      expect(received.length).toBe(FRAMES * FRAME_BYTES);
      expect(createHash('sha256').update(received).digest('hex')).toBe(streamSha256('demo', FRAMES));
      const story = await lab.story();
      const metrics = await lab.metrics('s2');
      expect(metrics.value('wedge_takeovers_total', { result: 'resumed' }), story).toBe(1);
      expect(metrics.value('wedge_snapshot_resumes_total'), story).toBe(1);
      expect(metrics.total('wedge_aborts_total'), story).toBe(0);
    } finally {
      curl.kill();
    }
  });

  it('resets and counts the connection when the origin ignores Wedge-Resume, with no wrong byte', async () => {
    lab = new Lab('stateful-ignore');
    await lab.up({ servers: 2, originCmd: `IGNORE_RESUME=1 exec ${process.execPath} ${SERVER}`, files: ['a.bin:1'] });
    const out = lab.out('stream.out');
    const curl = lab.background('client', ['curl', '-sS', '-o', out, lab.url('s1', PATH)]);
    try {
      await waitForBytes(out, 60 * FRAME_BYTES, curl);
      await lab.crash('s1');
      expect(await curl.done()).not.toBe(0);
      const received = await readFile(out);
      expect(received.length).toBeLessThan(FRAMES * FRAME_BYTES);
      const truth = Buffer.concat(Array.from({ length: Math.ceil(received.length / FRAME_BYTES) }, (_, i) => frame('demo', i)));
      expect(received.equals(truth.subarray(0, received.length))).toBe(true);
      const story = await lab.story();
      const metrics = await lab.metrics('s2');
      expect(metrics.value('wedge_aborts_total', { reason: 'resume-refused' }), story).toBe(1);
    } finally {
      curl.kill();
    }
  });
});

describe.skipIf(!IS_ROOT)('media stream under TCP Migrate (subnets, client agent)', () => {
  const lab = new Lab('stateful-migrate');

  beforeAll(async () => {
    await lab.up({ servers: 3, originCmd: `exec ${process.execPath} ${SERVER}`, files: ['a.bin:1'], subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  /* Streams through `server` until the agent has its key and 60 frames arrived, then `act`; the
   * whole stream must arrive byte-exact, resumed once from a snapshot by another server. */
  async function streamThrough(server: string, act: () => Promise<void>): Promise<void> {
    const before = (await lab.logged('client-agent', 'negotiated')).length;
    const out = lab.out(`${server}-stream.out`);
    const curl = lab.background('client', ['curl', '-sS', '-o', out, lab.url(server, PATH)]);
    try {
      await lab.waitLogged('client-agent', 'negotiated', before + 1);
      await waitForBytes(out, 60 * FRAME_BYTES, curl);
      await act();
      expect(await curl.done(), curl.stderr).toBe(0);
      const received = await readFile(out);
      expect(received.length).toBe(FRAMES * FRAME_BYTES);
      expect(createHash('sha256').update(received).digest('hex')).toBe(streamSha256('demo', FRAMES));
    } finally {
      curl.kill();
    }
  }

  async function snapshotResumes(servers: string[]): Promise<number> {
    let total = 0;
    for (const server of servers) total += (await lab.metrics(server)).value('wedge_snapshot_resumes_total');
    return total;
  }

  it('shed: the stream moves to a peer, which restarts its origin from the snapshot; byte-exact', async () => {
    await streamThrough('s1', async () => {
      expect(await lab.shed('s1', 1)).toMatchObject({ handedOff: 1 });
    });
    expect(await snapshotResumes(['s2', 's3']), await lab.story()).toBe(1);
  });

  it('crash: the stream survives its server, byte-exact', async () => {
    const before = await snapshotResumes(['s1', 's3']);
    await streamThrough('s2', () => lab.crash('s2'));
    expect(await snapshotResumes(['s1', 's3']), await lab.story()).toBe(before + 1);
  });
});
