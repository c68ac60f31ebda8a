/*
 * `lab up --subnets` (the TCP Migrate lab): a router between the client and each server's own
 * subnet, servers still sharing the switch as a multicast backplane the client cannot reach; the
 * Ed25519 migrate key pair; per-server `--rate SERVER=RATE` and `lab shape`; `lab crash` downing
 * every link of a server; `--agent` (started when this build has `wedge agent`, skipped with a
 * warning otherwise). The pure parts (rate specs, the address plan) run without root.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRateSpecs, rateFor } from '../../lab/shaping.js';
import { routerNs, routerPort, subnetClientAddress, subnetRouterAddress, subnetServerAddress } from '../../lab/plan.js';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, labNamespaces, processesMentioning, until, wedge, wedgeOk, type LabFile } from '../support/lab.js';

describe('subnets plan and rate specs', () => {
  it('gives the client, each server and the router their subnet addresses', () => {
    expect(subnetClientAddress()).toBe('10.78.0.10');
    expect(subnetRouterAddress(0)).toBe('10.78.0.1');
    expect([subnetServerAddress(1), subnetRouterAddress(1), subnetServerAddress(50), subnetRouterAddress(50)]).toEqual([
      '10.78.1.10',
      '10.78.1.1',
      '10.78.50.10',
      '10.78.50.1',
    ]);
    expect(routerNs('lab1')).toBe('wl_lab1_rt');
    expect(routerPort('s50').length).toBeLessThanOrEqual(15);
  });

  it('parses lab-wide and per-server --rate specs', () => {
    const specs = parseRateSpecs(['100mbit', 's2=10mbit'], ['s1', 's2', 's3']);
    expect(rateFor(specs, 's1')?.text).toBe('100mbit');
    expect(rateFor(specs, 's2')?.text).toBe('10mbit');
    expect(rateFor(parseRateSpecs(['s3=1mbit'], ['s1', 's3']), 's1')).toBeUndefined();
    expect(() => parseRateSpecs(['s4=10mbit'], ['s1', 's2'])).toThrow(/no server "s4"/);
    expect(() => parseRateSpecs(['s1=fast'], ['s1'])).toThrow(/--rate/);
    expect(() => parseRateSpecs(['s1=1mbit', 's1=2mbit'], ['s1'])).toThrow(/given twice/);
    expect(() => parseRateSpecs(['1mbit', '2mbit'], ['s1'])).toThrow(/given twice/);
  });
});

interface UpDocument {
  lab: string;
  client: string;
  clientAddress: string;
  subnets: boolean;
  servers: { name: string; service: string; address: string; admin: string }[];
  serverLinks: { name: string; serviceAddress: string; serviceIface: string; backplaneIface: string; gateway: string | null; rate: string | null }[];
  router: { name: string; ns: string; interfaces: { name: string; address: string; host: string }[] } | null;
  files: LabFile[];
  migrateKey: string;
  migratePub: string;
  agent: { pid: number; log: string; metrics: string | null } | null;
}

interface StatusDocument {
  subnets: boolean;
  runDir: string;
  dataDir: string;
  router: UpDocument['router'];
  client: { address: string; ns: string; gateway?: string };
  migrateKey: string | null;
  migratePub: string | null;
  agent: { pid: number; log: string; running: boolean } | null;
  servers: { name: string; ns: string; status: string; wedge: object | null; serviceAddress: string; serviceIface: string; gateway: string | null; rate: string | null }[];
}

const SHAPED = '20mbit'; // 2.5 MB/s: the 4 MiB file takes about 1.7 s

describe.skipIf(!IS_ROOT)('lab up --subnets --agent', () => {
  const lab = new Lab('subnets');
  let up: UpDocument;
  let status: StatusDocument;
  let wedges = false;

  const exec = (host: string, ...argv: string[]) => lab.exec(host, argv);
  const execOk = async (host: string, ...argv: string[]) => (await lab.execOk(host, argv)).stdout.toString();
  /** Bytes per second of one download of `url` from the client. */
  const speed = async (url: string): Promise<number> =>
    Number(await execOk('client', 'curl', '-fsS', '--noproxy', '*', '-o', '/dev/null', '-w', '%{speed_download}', url));

  beforeAll(async () => {
    up = await lab.up<UpDocument>({ servers: 3, files: ['big.bin:4'], subnets: true, agent: true, rate: `s3=${SHAPED}`, clientRmem: null });
    status = await lab.status<StatusDocument>();
    wedges = status.servers.every((s) => s.wedge !== null);
  });

  afterAll(async () => {
    await lab.down();
  });

  it('describes the subnets lab in lab up --json and lab status --json', () => {
    expect(up.subnets).toBe(true);
    expect(up.client).toBe('client');
    expect(up.clientAddress).toBe('10.78.0.10');
    expect(up.servers).toEqual([1, 2, 3].map((n) => ({ name: `s${n}`, service: `http://10.78.${n}.10:80`, address: `10.77.0.${10 + n}`, admin: 'http://127.0.0.1:9090' })));
    expect(up.serverLinks.map((l) => [l.name, l.serviceAddress, l.serviceIface, l.backplaneIface, l.gateway, l.rate])).toEqual([
      ['s1', '10.78.1.10', 'eth1', 'eth0', '10.78.1.1', null],
      ['s2', '10.78.2.10', 'eth1', 'eth0', '10.78.2.1', null],
      ['s3', '10.78.3.10', 'eth1', 'eth0', '10.78.3.1', SHAPED],
    ]);
    expect(up.router?.ns).toBe(`wl_${lab.name}_rt`);
    expect(up.router?.interfaces).toEqual([
      { name: 'r-client', address: '10.78.0.1/24', host: 'client' },
      { name: 'r-s1', address: '10.78.1.1/24', host: 's1' },
      { name: 'r-s2', address: '10.78.2.1/24', host: 's2' },
      { name: 'r-s3', address: '10.78.3.1/24', host: 's3' },
    ]);
    expect(status.subnets).toBe(true);
    expect(status.router).toEqual(up.router);
    expect(status.client.address).toBe('10.78.0.10');
    expect(status.servers.map((s) => [s.serviceAddress, s.serviceIface, s.gateway])).toEqual([1, 2, 3].map((n) => [`10.78.${n}.10`, 'eth1', `10.78.${n}.1`]));
    expect(status.migrateKey).toBe(up.migrateKey);
  });

  it('writes the Ed25519 migrate key pair: private 0600 (pkcs8 PEM), public (spki PEM)', async () => {
    expect(up.migrateKey).toBe(`${status.runDir}/migrate.key`);
    expect(up.migratePub).toBe(`${status.runDir}/migrate.pub`);
    expect(statSync(up.migrateKey).mode & 0o777).toBe(0o600);
    expect(statSync(up.migratePub).mode & 0o777).toBe(0o644);
    const privatePem = await readFile(up.migrateKey, 'utf8');
    const publicPem = await readFile(up.migratePub, 'utf8');
    expect(privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(publicPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const privateKey = createPrivateKey(privatePem);
    expect(privateKey.asymmetricKeyType).toBe('ed25519');
    const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    expect(derived).toBe(publicPem);
  });

  it("downloads the file from each server's service address through the router, sha256 intact", async () => {
    expect(await execOk('client', 'ip', 'route', 'get', '10.78.2.10')).toMatch(/via 10\.78\.0\.1 dev eth0/);
    for (const server of up.servers) {
      const file = up.files[0]!;
      const got = await lab.execOk('client', ['curl', '-fsS', '--noproxy', '*', server.service + file.path]);
      await expectSameBytes(got.stdout, file, server.name);
    }
    // It really crossed the router: the router's link to s1 carried the download.
    const counters = JSON.parse(await execOk('router', 'ip', '-s', '-j', 'link', 'show', 'dev', 'r-s1')) as { stats64: { rx: { bytes: number } } }[];
    expect(counters[0]!.stats64.rx.bytes).toBeGreaterThan(up.files[0]!.bytes);
  });

  it('keeps the client off the backplane: no 10.77.0.x address is reachable from it', async () => {
    expect(await execOk('client', 'ip', '-4', '-o', 'addr')).not.toContain('10.77.');
    for (const address of ['10.77.0.11', '10.77.0.12', '10.77.0.13']) {
      const ping = await exec('client', 'ping', '-c', '1', '-W', '1', address);
      expect(ping.code, address).not.toBe(0);
      const curl = await exec('client', 'curl', '-sS', '--max-time', '2', '--noproxy', '*', '-o', '/dev/null', `http://${address}:80/big.bin`);
      expect(curl.code, address).not.toBe(0);
    }
  });

  it("routes each server's traffic via the router and keeps soft-state multicast on the backplane", async () => {
    for (const n of [1, 2, 3]) {
      const routes = await execOk(`s${n}`, 'ip', 'route');
      expect(routes).toMatch(new RegExp(`^default via 10\\.78\\.${n}\\.1 dev eth1`, 'm'));
      expect(routes).toMatch(/^224\.0\.0\.0\/4 dev eth0/m);
      expect(await execOk(`s${n}`, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0')).toContain(`10.77.0.${10 + n}/24`);
      expect(await execOk(`s${n}`, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth1')).toContain(`10.78.${n}.10/24`);
      expect(await execOk(`s${n}`, 'ip', 'route', 'get', '10.78.0.10')).toMatch(new RegExp(`via 10\\.78\\.${n}\\.1 dev eth1 src 10\\.78\\.${n}\\.10`));
    }
    expect((await execOk('router', 'sysctl', '-n', 'net.ipv4.ip_forward')).trim()).toBe('1');

    const receiver = lab.background('s2', ['node', '-e', `
        const socket = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
        socket.on('message', (m, from) => { console.log(m.toString() + ' from ' + from.address); process.exit(0); });
        socket.bind(7778, () => { socket.addMembership('239.77.0.9'); console.log('ready'); });
        setTimeout(() => process.exit(3), 8000);`]);
    await until('the receiver to join the group', async () => receiver.stdout.includes('ready') || !receiver.running);
    await execOk('s1', 'node', '-e', `
      const socket = require('dgram').createSocket('udp4');
      let n = 0;
      const timer = setInterval(() => {
        socket.send('hello', 7778, '239.77.0.9');
        if (++n === 20) { clearInterval(timer); socket.close(); }
      }, 100);`);
    expect(await receiver.exited, receiver.stderr).toBe(0);
    expect(receiver.stdout).toContain('hello from 10.77.0.11');
  });

  it("limits one server's throughput with --rate SERVER=RATE and with lab shape", async () => {
    const url = (n: number) => `http://10.78.${n}.10:80/big.bin`;
    const fast = await speed(url(1));
    const shaped = await speed(url(3));
    expect(shaped, `s3 (--rate s3=${SHAPED}) ${shaped} B/s vs s1 ${fast} B/s`).toBeLessThan(fast / 2);
    expect(shaped).toBeLessThan(2 * 2_500_000);
    expect(await execOk('s3', 'tc', 'qdisc', 'show', 'dev', 'eth1')).toMatch(/tbf .*rate 20Mbit/);

    await lab.shape('s2', SHAPED);
    const throttled = await speed(url(2));
    expect(throttled, `s2 shaped ${throttled} B/s vs s1 ${fast} B/s`).toBeLessThan(fast / 2);
    let now = await lab.status<StatusDocument>();
    expect(now.servers.find((s) => s.name === 's2')?.rate).toBe(SHAPED);
    await lab.shape('s2', 'off');
    const freed = await speed(url(2));
    expect(freed, `s2 unshaped again ${freed} B/s vs shaped ${throttled} B/s`).toBeGreaterThan(2 * throttled);
    now = await lab.status<StatusDocument>();
    expect(now.servers.find((s) => s.name === 's2')?.rate).toBeNull();
    expect(now.servers.find((s) => s.name === 's3')?.rate).toBe(SHAPED);
  });

  it('runs the client agent when this build has `wedge agent`, else says it skipped it', async () => {
    const help = await wedge(['agent', '--help']);
    const hasAgent = help.code === 0 && /^Usage: wedge agent\b/m.test(help.stdout.toString());
    if (!hasAgent) {
      expect(up.agent).toBeNull();
      expect(status.agent).toBeNull();
      expect(lab.upStderr).toContain('NOT starting the client agent');
      return;
    }
    expect(up.agent?.log).toBe(`${status.runDir}/client-agent.log`);
    expect(status.agent?.running).toBe(true);
    const cmdline = (await readFile(`/proc/${status.agent!.pid}/cmdline`, 'utf8')).split('\0');
    expect(cmdline).toContain('agent');
    expect(cmdline.join(' ')).toContain('--address 10.78.0.10');
    expect(existsSync(up.agent!.log)).toBe(true);
  });

  it('crash downs every link of the server: unreachable through the router, the others untouched', async () => {
    await lab.crash('s1');
    const links = await execOk('s1', 'ip', '-br', 'link');
    expect(links).toMatch(/^eth0\S*\s+DOWN/m);
    expect(links).toMatch(/^eth1\S*\s+DOWN/m);
    expect((await execOk('client', 'ip', 'netns', 'pids', lab.namespace('s1'))).trim()).toBe('');
    const curl = await exec('client', 'curl', '-sS', '--max-time', '2', '--noproxy', '*', '-o', '/dev/null', up.servers[0]!.service + '/big.bin');
    expect(curl.code).not.toBe(0);
    const ping = await exec('client', 'ping', '-c', '1', '-W', '1', '10.78.1.10');
    expect(ping.code).not.toBe(0);
    const after = await lab.status<StatusDocument>();
    expect(after.servers.find((s) => s.name === 's1')?.status).toBe('crashed');
    const s2 = await lab.execOk('client', ['curl', '-fsS', '--noproxy', '*', up.servers[1]!.service + '/big.bin']);
    await expectSameBytes(s2.stdout, up.files[0]!);
    if (wedges) expect((await execOk('s2', 'curl', '-fsS', 'http://127.0.0.1:9090/healthz')).length).toBeGreaterThan(0);
  });

  it('down removes the router and everything else', async () => {
    await wedgeOk(['lab', 'down', '--lab', lab.name]);
    expect(await labNamespaces(lab.name)).toEqual([]);
    expect(await processesMentioning(status.runDir + '/')).toEqual([]);
    expect(existsSync(status.runDir)).toBe(false);
    expect(existsSync(status.dataDir)).toBe(false);
  });
});
