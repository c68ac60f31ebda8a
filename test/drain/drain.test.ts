/*
 * Issue 14, point 2: a planned drain, through the lab CLI (`wedge lab drain`, which runs `wedge
 * drain --wait` on the server) and SIGTERM, with real curl downloads in flight (egress shaped, so
 * they are mid-body when the drain begins).
 *
 *   address takeover, 3 servers: s1 drained (its address and connection move at once); then s2's
 *   wedge gets SIGTERM (drains by default); then s3, the last one, is drained with no live peer
 *   (its download finishes there, the wedge exits after)
 *   TCP Migrate (subnets, client agent), 3 servers: s1 drained, its connection handed off
 * Checked: curl exits 0 with the file's exact bytes; how the drain says each connection left; the
 * service address answers again right after; the drained wedge has exited.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes, wedgeOk } from '../support/lab.js';

const MIB = 1024 * 1024;
const FILE = '/big.bin';

interface DrainReport {
  phase: string;
  moved: number;
  finished: number;
  reset: number;
}

interface StatusServer {
  name: string;
  status: string;
  wedge: { pid: number; running: boolean } | null;
}

/* A download from `server`'s service address that `act` hits once 1 MiB has arrived. */
async function downloadThrough(lab: Lab, server: string, act: () => Promise<void>): Promise<void> {
  const out = lab.out(`${server}-${Date.now()}.bin`);
  const curl = lab.background('client', ['curl', '-sS', '--max-time', '60', '-o', out, lab.url(server, FILE)]);
  try {
    await waitForBytes(out, MIB, curl);
    await act();
    const code = await curl.done(90_000);
    expect(code, `curl exit ${code}: ${curl.stderr}\n${await lab.story()}`).toBe(0);
    await expectSameBytes(out, lab.file(FILE), `the download through ${server}`);
  } finally {
    curl.kill();
  }
}

async function drain(lab: Lab, server: string): Promise<DrainReport> {
  return JSON.parse((await wedgeOk(['lab', 'drain', server, '--json', '--lab', lab.name])).stdout.toString('utf8')) as DrainReport;
}

async function serverStatus(lab: Lab, name: string): Promise<StatusServer> {
  const status = await lab.status<{ servers: StatusServer[] }>();
  return status.servers.find((s) => s.name === name)!;
}

async function waitExited(pid: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > until) throw new Error(`wedge ${pid} still runs ${timeoutMs} ms after SIGTERM`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/nft'))('planned drain, address takeover (3 servers)', () => {
  const lab = new Lab('drain-address');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:64'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('wedge lab drain s1 mid-download: byte-exact, the connection moved, s1 exited, its address answers again at once', async () => {
    let report: DrainReport | undefined;
    await downloadThrough(lab, 's1', async () => {
      report = await drain(lab, 's1');
    });
    expect(report).toMatchObject({ phase: 'drained', moved: 1, reset: 0 });
    const s1 = await serverStatus(lab, 's1');
    expect(s1.status).toBe('drained');
    expect(s1.wedge?.running).toBe(false);
    const resumed = (await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' }) + (await lab.metrics('s3')).value('wedge_takeovers_total', { result: 'resumed' });
    expect(resumed).toBe(1);
    const head = await lab.exec('client', ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '-I', lab.url('s1', FILE)]);
    expect(head.stdout.toString('utf8'), "s1's service address is served by its adopter").toBe('200');
  });

  it("SIGTERM to s2's wedge mid-download drains it (the default): byte-exact, and the wedge exits", async () => {
    const pid = (await serverStatus(lab, 's2')).wedge!.pid;
    await downloadThrough(lab, 's2', async () => {
      process.kill(pid, 'SIGTERM');
      await waitExited(pid, 20_000);
    });
    const aborts = (await lab.metrics('s3')).total('wedge_aborts_total');
    expect(aborts, 'the adopter reset nothing').toBe(0);
  });

  it('the last server drained with no live peer: its download finishes there, then the wedge exits', async () => {
    let report: DrainReport | undefined;
    await downloadThrough(lab, 's3', async () => {
      report = await drain(lab, 's3');
    });
    expect(report).toMatchObject({ phase: 'drained', moved: 0, reset: 0 });
    expect(report!.finished).toBeGreaterThanOrEqual(1);
    expect((await serverStatus(lab, 's3')).wedge?.running).toBe(false);
  });
});

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/nft'))('planned drain, TCP Migrate (subnets, client agent)', () => {
  const lab = new Lab('drain-migrate');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:64'], rate: '100mbit', subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('wedge lab drain s1 mid-download: the connection is handed off and completes byte-exact elsewhere', async () => {
    let report: DrainReport | undefined;
    await downloadThrough(lab, 's1', async () => {
      report = await drain(lab, 's1');
    });
    expect(report).toMatchObject({ phase: 'drained', moved: 1, reset: 0 });
    const resumed = (await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' }) + (await lab.metrics('s3')).value('wedge_takeovers_total', { result: 'resumed' });
    expect(resumed).toBe(1);
  });
});
