/*
 * `wedge check` in a lab server's namespace, with the lab's own wedge options: everything
 * verified on a good host (s2's clock measured too); then each fault named with its fix and a
 * non-zero exit: the two capabilities dropped (setpriv), the multicast route deleted, a cluster
 * key others can read, a key that is not one, and a --config file with a bad key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, Lab } from '../support/lab.js';

describe.skipIf(!IS_ROOT || !existsSync('/usr/bin/setpriv'))('wedge check on a lab server', () => {
  const lab = new Lab('check');
  let options: string[] = [];

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['big.bin:1'] });
    const s1 = lab.server('s1');
    options = ['--address', s1.address, '--service', `${s1.vip}:80`, '--iface', 'eth0', '--state-key-file', join(lab.runDir, 'cluster.key')];
  });
  afterAll(async () => {
    await lab.down();
  });

  async function check(args: string[], prefix: string[] = []): Promise<{ code: number; out: string }> {
    const result = await lab.exec('s1', [...prefix, 'wedge', 'check', ...args]);
    return { code: result.code, out: result.stdout.toString('utf8') + result.stderr };
  }

  it('verifies everything on a good host (exit 0)', async () => {
    const { code, out } = await check(options);
    expect(out).not.toContain('CHECK FAILED');
    for (const item of ['configuration', 'the origin', 'the cluster key', 'CAP_NET_ADMIN', 'TCP_REPAIR', 'nft', 'ip_nonlocal_bind', 'multicast route']) expect(out).toContain(item);
    // s2's wedge heartbeats in the group and answers its clock (the namespaces share one clock).
    expect(out).toMatch(/\[\+\] VERIFIED clocks agree with the live peers' \(within 500 ms\): 1 of 1 peer\(s\) answered, largest offset -?\d+ ms \(10\.77\.0\.12\)/);
    expect(code).toBe(0);
  });

  it('a missing capability: named, with its fix', async () => {
    const { code, out } = await check(options, ['setpriv', '--inh-caps=-all', '--bounding-set=-net_admin,-net_raw', '--']);
    expect(out).toMatch(/\[!\] CHECK FAILED root or CAP_NET_ADMIN \+ CAP_NET_RAW: CAP_NET_ADMIN and CAP_NET_RAW missing\. Fix: .+/);
    expect(code).toBe(2);
  });

  it('a missing multicast route: named, with its fix', async () => {
    await lab.execOk('s1', ['ip', 'route', 'del', '224.0.0.0/4', 'dev', 'eth0']);
    try {
      const { code, out } = await check(options);
      expect(out).toMatch(/\[!\] CHECK FAILED a multicast route .*\. Fix: .*ip route add 224\.0\.0\.0\/4 dev eth0/);
      expect(code).toBe(2);
    } finally {
      await lab.execOk('s1', ['ip', 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    }
  });

  it('a cluster key others can read, and a key that is not one: named, with their fixes', async () => {
    const open = lab.out('open.key');
    const bad = lab.out('bad.key');
    await lab.execOk('s1', ['sh', '-c', `cp ${join(lab.runDir, 'cluster.key')} ${open} && chmod 644 ${open} && echo not-a-key > ${bad} && chmod 600 ${bad}`]);
    const withKey = (key: string) => options.map((o, i) => (options[i - 1] === '--state-key-file' ? key : o));
    const readable = await check(withKey(open));
    expect(readable.out).toMatch(new RegExp(`\\[!\\] CHECK FAILED the cluster key: .*mode 644.*\\. Fix: chmod 600 `));
    expect(readable.code).toBe(2);
    const notKey = await check(withKey(bad));
    expect(notKey.out).toMatch(/\[!\] CHECK FAILED the cluster key: .*not 64 hex digits.*\. Fix: make one with `openssl rand -hex 32/);
    expect(notKey.code).toBe(2);
  });

  it('a --config file with an unknown key: named', async () => {
    const config = lab.out('wedge.yaml');
    await lab.execOk('s1', ['sh', '-c', `printf 'dead-afer: 400\\n' > ${config}`]);
    const { code, out } = await check([...options, '--config', config]);
    expect(out).toMatch(/\[!\] CHECK FAILED configuration: .*wedge\.yaml: dead-afer: not a `wedge serve` option \(did you mean dead-after\?\)/);
    expect(code).toBe(2);
  });
});
