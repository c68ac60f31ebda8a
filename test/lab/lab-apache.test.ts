/*
 * A real lab with Debian's Apache as the origin, its egress shaped: downloads checked by sha256,
 * identical strong validators on every replica, If-Range honoured, the tbf qdisc in place, and
 * no Apache left running after `lab down`. Needs root and /usr/sbin/apache2.
 */
import { existsSync } from 'node:fs';
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
