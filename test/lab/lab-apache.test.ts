/*
 * A real lab with Debian's Apache as the origin, its egress shaped: downloads checked by sha256,
 * identical strong validators on every replica, If-Range honoured, the tbf qdisc in place, the
 * wedge answering malformed chunked request bodies itself (Apache's workers are not held), and
 * no Apache left running after `lab down`. Needs root and /usr/sbin/apache2.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, labNamespaces, processesMentioning, wedgeOk, type UpDocument } from '../support/lab.js';

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/apache2'))('lab with Apache origins', () => {
  const lab = new Lab('apache');
  let up: UpDocument;
  let runDir: string;
  let wedges = false;

  beforeAll(async () => {
    up = await lab.up({ servers: 2, origin: 'apache', files: ['a.bin:3'], rate: '200mbit', clientRmem: null });
    const status = await lab.status<{ runDir: string; servers: { wedge: unknown }[] }>();
    runDir = status.runDir;
    wedges = status.servers.every((s) => s.wedge !== null);
  });

  afterAll(async () => {
    await lab.down();
  });

  const curl = (host: string, ...args: string[]) => lab.execOk(host, ['curl', '-fsS', ...args]);

  it("serves the file from every server's Apache with the advertised sha256", async () => {
    const file = up.files[0]!;
    for (const server of up.servers) {
      const got = await curl(server.name, `http://127.0.0.1:8080${file.path}`);
      await expectSameBytes(got.stdout, file, server.name);
    }
  });

  it('gives every replica the same strong ETag, and honours If-Range with it', async () => {
    const etags = new Set<string>();
    for (const server of up.servers) {
      const head = (await curl(server.name, '-I', 'http://127.0.0.1:8080/a.bin')).stdout.toString();
      expect(head).toMatch(/^Server: Apache/m);
      expect(head).toMatch(/^Accept-Ranges: bytes\r$/m);
      etags.add(/^ETag: (.*)\r$/m.exec(head)?.[1] ?? 'none');
    }
    expect(etags.size).toBe(1);
    const [etag] = [...etags];
    expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    const probe = async (ifRange: string): Promise<string> =>
      (await curl('s2', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', '-H', 'Range: bytes=1000-', '-H', `If-Range: ${ifRange}`, 'http://127.0.0.1:8080/a.bin')).stdout.toString();
    expect(await probe(etag!)).toBe(`206 ${up.files[0]!.bytes - 1000}`);
    expect(await probe('"0-0"')).toBe(`200 ${up.files[0]!.bytes}`);
  });

  it('downloads through the service address from the client (when wedges run)', async (ctx) => {
    if (!wedges) ctx.skip();
    for (const server of up.servers) {
      const got = await curl('client', server.service + '/a.bin');
      await expectSameBytes(got.stdout, up.files[0]!, server.service);
    }
  });

  /*
   * From the client host: 120 connections (more than Apache's MaxRequestWorkers, 100) each send a
   * chunked POST with a malformed body, in every form the fault campaign found, and keep their
   * sockets open; the script prints how they ended once every one closed (or after 10 s) and
   * holds whatever is still open until its stdin closes. Meanwhile a normal download must work.
   */
  const MALFORMED_CLIENTS = `
    const net = require('node:net');
    const [host, port, count] = process.argv.slice(1);
    const forms = ['fffffffffffffffffffff\\r\\n', '0x5\\r\\nhello\\r\\n', '5 \\r\\nhello\\r\\n', '5;ext\\nhello\\r\\n', '5\\r\\nhelloXX'];
    const endings = [];
    let reported = false;
    const report = () => { if (!reported) { reported = true; console.log(JSON.stringify({ closed: endings.length, status400: endings.filter((e) => e === 'HTTP/1.1 400').length })); } };
    for (let i = 0; i < Number(count); i++) {
      const socket = net.connect(Number(port), host);
      let reply = '';
      socket.on('data', (chunk) => (reply += chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => { endings.push(reply.slice(0, 12)); if (endings.length === Number(count)) report(); });
      socket.write('POST /a.bin HTTP/1.1\\r\\nHost: lab\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n' + forms[i % forms.length]);
    }
    setTimeout(report, 10000);
    process.stdin.on('end', () => process.exit(0)).resume();
  `;

  it('answers 120 malformed chunked request bodies 400 itself; Apache still serves a download byte-exact', async (ctx) => {
    if (!wedges) ctx.skip();
    const service = new URL(up.servers[0]!.service);
    const clients = lab.background('client', [process.execPath, '-e', MALFORMED_CLIENTS, service.hostname, service.port || '80', '120'], { stdin: true });
    try {
      for (let i = 0; i < 300 && !clients.stdout.includes('\n'); i++) await sleep(50);
      expect(JSON.parse(clients.stdout)).toEqual({ closed: 120, status400: 120 });
      const out = join(lab.scratch, 'after-malformed.bin');
      await lab.execOk('client', ['curl', '-fsS', '--max-time', '20', '-o', out, up.servers[0]!.service + '/a.bin']);
      await expectSameBytes(out, up.files[0]!);
    } finally {
      clients.end();
      await clients.done(10_000);
    }
  });

  it("shapes every server's egress with tbf", async () => {
    for (const server of up.servers) {
      const qdisc = (await lab.execOk(server.name, ['tc', 'qdisc', 'show', 'dev', 'eth0'])).stdout.toString();
      expect(qdisc).toMatch(/qdisc tbf .* rate 200Mbit/);
    }
  });

  it('down stops every Apache process and removes the namespaces', async () => {
    expect((await processesMentioning(runDir + '/')).length).toBeGreaterThan(0);
    await wedgeOk(['lab', 'down', '--lab', lab.name]);
    expect(await processesMentioning(runDir + '/')).toEqual([]);
    expect(await labNamespaces(lab.name)).toEqual([]);
  });
});
