/*
 * A real lab with Debian's Apache as the origin, its egress shaped: downloads checked by sha256,
 * identical strong validators on every replica, If-Range honoured, the tbf qdisc in place, and
 * no Apache left running after `lab down`. Needs root and /usr/sbin/apache2.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, labNamespaces, processesMentioning, sha256, uniqueLab, wedge, wedgeOk } from './lab-cli.js';

interface UpDocument {
  servers: { name: string; service: string }[];
  files: { path: string; bytes: number; sha256: string }[];
}

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/apache2'))('lab with Apache origins', () => {
  const lab = uniqueLab('apache');
  let up: UpDocument;
  let runDir: string;
  let wedges = false;

  beforeAll(async () => {
    const result = await wedgeOk(['lab', 'up', '--json', '--lab', lab, '--origin', 'apache', '--servers', '2', '--file', 'a.bin:3', '--rate', '200mbit']);
    up = JSON.parse(result.stdout.toString('utf8')) as UpDocument;
    const status = JSON.parse((await wedgeOk(['lab', 'status', '--json', '--lab', lab])).stdout.toString()) as {
      runDir: string;
      servers: { wedge: unknown }[];
    };
    runDir = status.runDir;
    wedges = status.servers.every((s) => s.wedge !== null);
  });

  afterAll(async () => {
    await wedge(['lab', 'down', '--lab', lab]);
  });

  const curl = (host: string, ...args: string[]) => wedgeOk(['lab', 'exec', host, '--lab', lab, '--', 'curl', '-fsS', ...args]);

  it("serves the file from every server's Apache with the advertised sha256", async () => {
    const file = up.files[0]!;
    for (const server of up.servers) {
      const got = await curl(server.name, `http://127.0.0.1:8080${file.path}`);
      expect(sha256(got.stdout), server.name).toBe(file.sha256);
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
      expect(sha256(got.stdout), server.service).toBe(up.files[0]!.sha256);
    }
  });

  it("shapes every server's egress with tbf", async () => {
    for (const server of up.servers) {
      const qdisc = (await wedgeOk(['lab', 'exec', server.name, '--lab', lab, '--', 'tc', 'qdisc', 'show', 'dev', 'eth0'])).stdout.toString();
      expect(qdisc).toMatch(/qdisc tbf .* rate 200Mbit/);
    }
  });

  it('down stops every Apache process and removes the namespaces', async () => {
    expect((await processesMentioning(runDir + '/')).length).toBeGreaterThan(0);
    await wedgeOk(['lab', 'down', '--lab', lab]);
    expect(await processesMentioning(runDir + '/')).toEqual([]);
    expect(await labNamespaces(lab)).toEqual([]);
  });
});
