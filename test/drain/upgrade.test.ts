/*
 * Issue 14, point 3: the wedge process replaced in place (`wedge lab upgrade`: a second `wedge
 * serve` with the same command line takes the listener and every live connection through the
 * handover socket), mid-download.
 *
 *   one server, Apache, no peer at all: one curl connection fetches a small file, then big.bin;
 *   the wedge is upgraded during big.bin
 *   three servers, built-in origin: six downloads over all service addresses; s1 and then s2
 *   upgraded, s1 once more
 *   TCP Migrate (subnets, client agent): six downloads; s1 upgraded, then a rolling restart
 * Checked: every download byte-exact; a new process serves (the old one exited); with peers, none
 * of them saw a death or took anything over (the soft-state sender is carried on).
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes, wedgeOk, type Background } from '../support/lab.js';

const MIB = 1024 * 1024;

interface UpgradeReport {
  server: string;
  oldPid: number;
  newPid: number;
}

async function upgrade(lab: Lab, server: string): Promise<UpgradeReport> {
  const report = JSON.parse((await wedgeOk(['lab', 'upgrade', server, '--json', '--lab', lab.name])).stdout.toString('utf8')) as UpgradeReport;
  expect(report.newPid).not.toBe(report.oldPid);
  expect(() => process.kill(report.oldPid, 0), 'the old wedge process exited').toThrow();
  return report;
}

async function expectCurlOk(lab: Lab, curl: Background): Promise<void> {
  const code = await curl.done(90_000);
  expect(code, `curl exit ${code}: ${curl.stderr}\n${await lab.story()}`).toBe(0);
}

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/apache2'))('in-place upgrade, one server (no peer), Apache', () => {
  const lab = new Lab('upgrade-one');

  beforeAll(async () => {
    await lab.up({ servers: 1, origin: 'apache', files: ['small.bin:1', 'big.bin:64'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('replaced mid-download on a keep-alive connection: byte-exact, served by the new process', async () => {
    const small = lab.out('small.bin');
    const big = lab.out('big.bin');
    const curl = lab.background('client', ['curl', '-sS', '--max-time', '60', '-o', small, lab.url('s1', '/small.bin'), '-o', big, lab.url('s1', '/big.bin')]);
    let report: UpgradeReport | undefined;
    try {
      await waitForBytes(big, MIB, curl);
      report = await upgrade(lab, 's1');
      await expectCurlOk(lab, curl);
    } finally {
      curl.kill();
    }
    await expectSameBytes(small, lab.file('/small.bin'));
    await expectSameBytes(big, lab.file('/big.bin'));
    const status = await lab.status<{ servers: { wedge: { pid: number; running: boolean } }[] }>();
    expect(status.servers[0]!.wedge).toEqual(expect.objectContaining({ pid: report!.newPid, running: true }));
    const metrics = await lab.metrics('s1');
    expect(metrics.value('wedge_upgrade_connections_total', { result: 'resumed' }), 'the new process resumed the download').toBe(1);
    expect(metrics.total('wedge_aborts_total')).toBe(0);
    const head = await lab.exec('client', ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '-I', lab.url('s1', '/big.bin')]);
    expect(head.stdout.toString('utf8'), 'a new connection after the upgrade').toBe('200');
  });
});

describe.skipIf(!IS_ROOT)('in-place upgrade in a three-server cluster', () => {
  const lab = new Lab('upgrade-three');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:32'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('s1, s2 and s1 again upgraded during six downloads: all byte-exact, no peer saw a death or took anything', async () => {
    const servers = ['s1', 's2', 's3'];
    const downloads: { out: string; curl: Background }[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const out = lab.out(`three-${i}.bin`);
        const curl = lab.background('client', ['curl', '-sS', '--max-time', '90', '--limit-rate', '2M', '-o', out, lab.url(servers[i % 3]!, '/big.bin')]);
        downloads.push({ out, curl });
      }
      await Promise.all(downloads.map(({ out, curl }) => waitForBytes(out, MIB, curl)));
      for (const server of ['s1', 's2', 's1']) await upgrade(lab, server);
      for (const { curl } of downloads) await expectCurlOk(lab, curl);
      for (const { out } of downloads) await expectSameBytes(out, lab.file('/big.bin'));
    } finally {
      for (const { curl } of downloads) curl.kill();
    }
    for (const server of servers) {
      expect((await lab.metrics(server)).total('wedge_takeovers_total'), `${server} took nothing over`).toBe(0);
      expect(await lab.logged(server, 'peer dead'), `${server} saw no death`).toEqual([]);
    }
  });
});

describe.skipIf(!IS_ROOT)('in-place upgrade and rolling restart under TCP Migrate (subnets, client agent)', () => {
  const lab = new Lab('upgrade-migrate');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:32'], rate: '100mbit', subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('s1 upgraded in place, then every wedge restarted in turn, during six downloads: all byte-exact', async () => {
    const servers = ['s1', 's2', 's3'];
    const downloads: { out: string; curl: Background }[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const out = lab.out(`migrate-${i}.bin`);
        downloads.push({ out, curl: lab.background('client', ['curl', '-sS', '--max-time', '90', '--limit-rate', '1500k', '-o', out, lab.url(servers[i % 3]!, '/big.bin')]) });
      }
      await Promise.all(downloads.map(({ out, curl }) => waitForBytes(out, MIB, curl)));
      // The agent must hold each connection's key for a drain to move it.
      await lab.waitLogged('client-agent', 'negotiated', 6);
      await upgrade(lab, 's1');
      await wedgeOk(['lab', 'rolling-restart', '--lab', lab.name]);
      for (const { curl } of downloads) await expectCurlOk(lab, curl);
      for (const { out } of downloads) await expectSameBytes(out, lab.file('/big.bin'));
    } finally {
      for (const { curl } of downloads) curl.kill();
    }
  });
});
