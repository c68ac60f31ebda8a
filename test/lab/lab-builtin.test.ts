/*
 * A real lab with the built-in origin: `lab up --json`, downloads checked by sha256 on every
 * server (and through the service address from the client when wedges run), `lab exec`,
 * `lab crash`, `lab declare-dead`, `lab down`. Needs root.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchNs } from '../../lab/plan.js';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, labNamespaces, processesMentioning, until, watchFinRst, wedge, wedgeOk, type LabFile } from '../support/lab.js';

/*
 * A client that really stays slow: a small receive buffer and 4 KiB read every 50 ms (about
 * 80 KB/s), so the 4 MiB body cannot all sit in the client's kernel before the crash (curl's
 * --limit-rate only paces reads from a buffer that here swallows the whole file in milliseconds).
 */
const SLOW_READER = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.connect((sys.argv[1], 80))
s.sendall(b'GET ' + sys.argv[2].encode() + b' HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n')
while s.recv(4096):
    time.sleep(0.05)
`;

interface UpDocument {
  lab: string;
  client: string;
  servers: { name: string; service: string; address: string; admin: string }[];
  files: LabFile[];
}

interface StatusDocument {
  runDir: string;
  dataDir: string;
  servers: { name: string; ns: string; status: string; origin: { pid: number; running: boolean } | null; wedge: { pid: number; running: boolean } | null }[];
}

describe.skipIf(!IS_ROOT)('lab with the built-in origin', () => {
  const lab = new Lab('builtin');
  let up: UpDocument;
  let status: StatusDocument;
  let wedges = false;

  beforeAll(async () => {
    up = await lab.up<UpDocument>({ servers: 2, files: ['big.bin:4', 'small.txt:0.01'], clientRmem: null });
    status = await lab.status<StatusDocument>();
    wedges = status.servers.every((s) => s.wedge !== null);
  });

  afterAll(async () => {
    await lab.down();
  });

  it('prints the lab contract as one JSON object', () => {
    expect(up.lab).toBe(lab.name);
    expect(up.client).toBe('client');
    expect(up.servers).toEqual([
      { name: 's1', service: 'http://10.77.0.101:80', address: '10.77.0.11', admin: 'http://127.0.0.1:9090' },
      { name: 's2', service: 'http://10.77.0.102:80', address: '10.77.0.12', admin: 'http://127.0.0.1:9090' },
    ]);
    expect(up.files.map((f) => [f.path, f.bytes])).toEqual([
      ['/big.bin', 4 * 1024 * 1024],
      ['/small.txt', 10486],
    ]);
    for (const file of up.files) expect(file.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("serves every file from every server's origin with the advertised sha256", async () => {
    for (const server of up.servers) {
      for (const file of up.files) {
        const got = await lab.execOk(server.name, ['curl', '-fsS', `http://127.0.0.1:8080${file.path}`]);
        await expectSameBytes(got.stdout, file, `${server.name}${file.path}`);
      }
    }
  });

  it('gives every replica the same strong ETag and Last-Modified', async () => {
    const validators = new Set<string>();
    for (const server of up.servers) {
      const head = (await lab.execOk(server.name, ['curl', '-fsSI', 'http://127.0.0.1:8080/big.bin'])).stdout.toString();
      const etag = /^etag: (.*)\r$/im.exec(head)?.[1];
      const modified = /^last-modified: (.*)\r$/im.exec(head)?.[1];
      expect(etag).toMatch(/^"sha256-[0-9a-f]{64}"$/);
      validators.add(`${etag} ${modified}`);
    }
    expect(validators.size).toBe(1);
  });

  it('downloads every file through each service address from the client (when wedges run)', async (ctx) => {
    if (!wedges) ctx.skip();
    for (const server of up.servers) {
      for (const file of up.files) {
        const got = await lab.execOk('client', ['curl', '-fsS', server.service + file.path]);
        await expectSameBytes(got.stdout, file, `${server.service}${file.path}`);
      }
    }
  });

  it("lab exec returns the command's exit status and puts bin/wedge on PATH", async () => {
    const result = await lab.exec('s1', ['sh', '-c', 'command -v wedge; exit 3']);
    expect(result.code).toBe(3);
    expect(result.stdout.toString().trim()).toMatch(/\/bin\/wedge$/);
  });

  it('sets up each server for multicast soft state and address adoption', async () => {
    const routes = (await lab.execOk('s2', ['ip', 'route'])).stdout.toString();
    expect(routes).toMatch(/^224\.0\.0\.0\/4 dev eth0/m);
    const addrs = (await lab.execOk('s2', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout.toString();
    expect(addrs).toContain('10.77.0.12/24');
    expect(addrs).toContain('10.77.0.102/24');
    const nonlocal = (await lab.execOk('s2', ['sysctl', '-n', 'net.ipv4.ip_nonlocal_bind'])).stdout.toString();
    expect(nonlocal.trim()).toBe('1');
  });

  it('carries UDP multicast from one server to another over the segment', async () => {
    const receiver = lab.background('s2', ['node', '-e', `
        const socket = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
        socket.on('message', (m, from) => { console.log(m.toString() + ' from ' + from.address); process.exit(0); });
        socket.bind(7777, () => { socket.addMembership('239.77.0.1'); console.log('ready'); });
        setTimeout(() => process.exit(3), 8000);`]);
    await until('the receiver to join the group', async () => receiver.stdout.includes('ready') || !receiver.running);
    await lab.execOk('s1', ['node', '-e', `
      const socket = require('dgram').createSocket('udp4');
      let n = 0;
      const timer = setInterval(() => {
        socket.send('hello', 7777, '239.77.0.1');
        if (++n === 20) { clearInterval(timer); socket.close(); }
      }, 100);`]);
    expect(await receiver.exited, receiver.stderr).toBe(0);
    expect(receiver.stdout).toContain('hello from 10.77.0.11');
  });

  it("declare-dead delivers the report to every other live server's admin API (when wedges run)", async (ctx) => {
    if (!wedges) ctx.skip();
    const result = await wedge(['lab', 'declare-dead', 's1', '--lab', lab.name]);
    // The lab's part is delivery: s2's admin API must have answered, whatever it decided.
    expect(result.stderr).toMatch(/s2: (told|FAILED) HTTP [0-9]{3}/);
    expect(result.stderr).not.toMatch(/: s1: (told|FAILED)/);
    if (result.code !== 0) expect(result.stderr).toContain('declare-dead s1: not accepted by s2');
  });

  it('crash leaves the server unreachable and no process in its namespace', async () => {
    const s2 = status.servers.find((s) => s.name === 's2')!;
    // With a wedge, a slow download from s2 is in flight while it crashes, and the switch port
    // watches for any FIN or RST from s2: there must be none. (Whether the download then ends is
    // not the lab's business: a peer takes it over.)
    const watch = wedges ? await watchFinRst(switchNs(lab.name), 'p-s2', '10.77.0.102') : null;
    const download = wedges ? lab.background('client', ['python3', '-c', SLOW_READER, '10.77.0.102', '/big.bin']) : null;
    try {
      if (download) {
        await sleep(1_000);
        expect(download.running, 'the download is still in flight when s2 crashes').toBe(true);
      }
      await lab.crash('s2');
      if (watch && download) {
        await sleep(1_000);
        expect(await watch.stop()).toEqual([]);
      }
    } finally {
      download?.kill('SIGTERM');
      await watch?.stop();
    }
    const pids = (await lab.execOk('client', ['ip', 'netns', 'pids', s2.ns])).stdout.toString().trim();
    expect(pids).toBe('');
    const ping = await lab.exec('client', ['ping', '-c', '1', '-W', '1', '10.77.0.12']);
    expect(ping.code).not.toBe(0);
    const after = await lab.status<StatusDocument>();
    const crashed = after.servers.find((s) => s.name === 's2')!;
    expect(crashed.status).toBe('crashed');
    expect(crashed.origin?.running).toBe(false);
    // The other server is untouched.
    const s1 = await lab.execOk('s1', ['curl', '-fsS', 'http://127.0.0.1:8080/small.txt']);
    await expectSameBytes(s1.stdout, up.files[1]!);
  });

  it('down leaves no namespace, process, state or file behind, and can run again', async () => {
    await wedgeOk(['lab', 'down', '--lab', lab.name]);
    expect(await labNamespaces(lab.name)).toEqual([]);
    expect(await processesMentioning(status.runDir + '/')).toEqual([]);
    expect(await processesMentioning(status.dataDir + '/')).toEqual([]);
    for (const server of status.servers) {
      if (server.origin) expect(existsSync(`/proc/${server.origin.pid}/ns/net`)).toBe(false);
    }
    expect(existsSync(status.runDir)).toBe(false);
    expect(existsSync(status.dataDir)).toBe(false);
    await wedgeOk(['lab', 'down', '--lab', lab.name]);
    const gone = await wedge(['lab', 'status', '--lab', lab.name]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain(`no lab named "${lab.name}"`);
  });
});
