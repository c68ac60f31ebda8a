import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAddress, addNamespace, addRoute, addVethPair, deleteNamespace, killNamespaceProcesses, sysctl } from '../../lab/netns.js';
import { PACKAGE_ROOT } from '../../config/package.js';

/*
 * `wedge serve --address` checks the host once at start-up and says what it verified. One
 * namespace of our own, a server host as the lab builds it (eth0 holding the address, up,
 * ip_nonlocal_bind=1), first without its multicast route: the daemon names the failed check and
 * its fix and exits non-zero; then with the route: every check is verified and the daemon runs.
 */

const CLI = join(PACKAGE_ROOT, 'dist', 'cli', 'cli.js');
const ADDRESS = '10.79.0.11';
const CHECKS = ['privileges', 'tcp-repair', 'nft', 'ip-nonlocal-bind', 'interface', 'multicast-route'];

interface Serve {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function serve(ns: string, dir: string, log: string): Serve {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'serve', '--name', 'p1', '--listen', '0.0.0.0:8080',
    '--service', '10.79.0.101:8080', '--address', ADDRESS, '--origin', 'http://127.0.0.1:8081',
    '--state-key-file', join(dir, 'cluster.key'), '--log-file', join(dir, log)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

function logLines(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const value = probe();
    if (value !== undefined) return value;
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('wedge serve start-up checks', () => {
  const ns = `wpf-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'wedge-preflight-'));

  beforeAll(async () => {
    writeFileSync(join(dir, 'cluster.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
    await addNamespace(ns);
    await addVethPair(ns, 'eth0', ns, 'eth0p');
    await addAddress(ns, 'eth0', `${ADDRESS}/24`);
    await sysctl(ns, 'net.ipv4.ip_nonlocal_bind', '1');
  });
  afterAll(async () => {
    await killNamespaceProcesses(ns);
    await deleteNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  it('without a multicast route, names the failed check and its fix and exits non-zero', async () => {
    const daemon = serve(ns, dir, 'failed.log');
    const code = await daemon.exited;

    expect(code).not.toBe(0);
    const stderr = daemon.stderr();
    expect(stderr).toContain('[!] CHECK FAILED a multicast route for the support groups on the cluster interface: no route for 239.77.0.1 on eth0. Fix: ip route add 224.0.0.0/4 dev eth0');
    expect(stderr).toMatch(/wedge: WEDGE_ERR_CONFIG: .*no route for 239\.77\.0\.1 on eth0 \(fix: ip route add 224\.0\.0\.0\/4 dev eth0\)/);
    expect(stderr.match(/^\[\+\] VERIFIED /gm)).toHaveLength(CHECKS.length - 1);
    expect(logLines(join(dir, 'failed.log'))).toContainEqual(expect.objectContaining({ check: 'multicast-route', verified: false, fix: 'ip route add 224.0.0.0/4 dev eth0' }));
  });

  it('with everything in place, verifies each check and starts', async () => {
    await addRoute(ns, '224.0.0.0/4', 'eth0');
    const daemon = serve(ns, dir, 'verified.log');
    try {
      const log = join(dir, 'verified.log');
      await until(() => logLines(log).find((line) => line.msg === 'failover on'), 20_000, "the daemon's 'failover on'");

      const checked = logLines(log).filter((line) => typeof line.check === 'string');
      expect(checked.map((line) => [line.check, line.verified])).toEqual(CHECKS.map((check) => [check, true]));
      const human = daemon.stderr().split('\n').filter((line) => /^\[[+!]\] /.test(line));
      expect(human).toHaveLength(CHECKS.length);
      for (const line of human) expect(line).toMatch(/^\[\+\] VERIFIED /);
      expect(human).toContain('[+] VERIFIED the interface holding --address exists and is up: eth0 holds 10.79.0.11 and is up');
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.exited;
    }
  });
});
