/*
 * Issue 5: a crash while the client is still inside the response headers. A client with an
 * 88-byte MSS and the smallest receive buffer pipelines GET /a.bin and GET /b.bin and reads
 * nothing: its kernel stops accepting after N bytes. a.bin's size is chosen so that N falls in
 * the middle of b.bin's response head. s1 crashes there; s2 must resend the rest of the
 * recorded head bytes, then b.bin's body, into a zero window that opens once the client reads.
 *
 *   calibrate: the same client against s2 (no crash) gives N; heads measured at s1's origin
 *   client:    stalled-client.py /a.bin /b.bin via s1's VIP; it reports where its kernel stopped
 *   test:      crash s1; wait until s2 holds the connection; let the client read
 *   check:     exactly head A + a.bin + head B + b.bin arrived (bodies byte-exact, nothing twice),
 *              and s2 resumed at the client's stop, inside head B
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, until } from '../support/lab.js';

const CLIENT = join(import.meta.dirname, 'fixtures', 'stalled-client.py');

/* Splits RAW into HTTP/1.1 responses with a Content-Length body each. */
function responses(raw: Buffer): { head: string; body: Buffer }[] {
  const found: { head: string; body: Buffer }[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end < 0) throw new Error(`${raw.length - at} trailing bytes that are not a response head`);
    const head = raw.subarray(at, end + 4).toString('latin1');
    const length = Number(/^content-length: *([0-9]+)\r$/im.exec(head)?.[1]);
    found.push({ head, body: raw.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return found;
}

describe.skipIf(!IS_ROOT)('crash while the client is inside the response headers', () => {
  const lab = new Lab('headers');

  beforeAll(async () => {
    await lab.up({ servers: 2, files: ['b.bin:0.001'] });
  });
  afterAll(async () => {
    await lab.down();
  });

  /* Length of the head the origin sends for PATH (the relay passes it on unchanged). */
  async function headLength(path: string): Promise<number> {
    const head = await lab.exec('s1', ['curl', '-sS', '-D', '-', '-o', '/dev/null', `http://127.0.0.1:8080${path}`]);
    expect(head.code, head.stderr).toBe(0);
    return head.stdout.length;
  }

  /* Where a stalled client's kernel stops, from a run against s2 that nobody crashes. */
  async function calibrate(): Promise<number> {
    const go = lab.out('go-calibrate');
    await writeFile(go, '');
    const run = await lab.exec('client', ['python3', CLIENT, lab.server('s2').vip, go, lab.out('calibrate.out'), '1', '/b.bin', '/b.bin', '/b.bin']);
    expect(run.code, run.stderr).toBe(0);
    return (JSON.parse(run.stdout.toString().split('\n')[0]!) as { queued: number }).queued;
  }

  /* Puts the same a.bin (same bytes, same mtime) in every server's document root. */
  async function placeA(size: number): Promise<Buffer> {
    const data = randomBytes(size);
    const mtime = (await stat(join(lab.server('s1').root, 'b.bin'))).mtime;
    for (const server of lab.servers) {
      const file = join(server.root, 'a.bin');
      await writeFile(file, data, { mode: 0o644 });
      await utimes(file, mtime, mtime);
    }
    return data;
  }

  it('resends the rest of the recorded head, then the body', async () => {
    const b = lab.file('/b.bin');
    const bData = await readFile(join(lab.server('s1').root, 'b.bin'));
    const stop = await calibrate();
    const headB = await headLength('/b.bin');
    // a.bin's head depends on its size only through Content-Length's digits: measured with a
    // 1-digit size, it is 2 bytes longer with the 3-digit size chosen here.
    await placeA(1);
    const headA3 = (await headLength('/a.bin')) + 2;
    const size = stop - headA3 - Math.floor(headB / 2);
    expect(size, `the client's kernel stops after ${stop} bytes; b.bin's head is ${headB}`).toBeGreaterThanOrEqual(100);
    expect(size).toBeLessThan(1000);
    const aData = await placeA(size);
    const headA = await headLength('/a.bin');
    const headBStart = headA + size;
    const total = headBStart + headB + b.bytes;

    const go = lab.out('go');
    const client = lab.background('client', ['python3', CLIENT, lab.server('s1').vip, go, lab.out('client.out'), String(total), '/a.bin', '/b.bin']);
    try {
      await until('the client to stall', async () => client.stdout.includes('queued'), 20_000);
      const queued = (JSON.parse(client.stdout.split('\n')[0]!) as { queued: number }).queued;
      expect(queued, `head B spans [${headBStart}, ${headBStart + headB})`).toBeGreaterThan(headBStart);
      expect(queued).toBeLessThan(headBStart + headB);

      await lab.crash('s1');
      await lab.holder(['s2']);
      await writeFile(go, '');
      expect(await client.done(), client.stderr).toBe(0);

      const story = await lab.story();
      const raw = await readFile(lab.out('client.out'));
      expect(raw.length, story).toBe(total);
      const [first, second, ...more] = responses(raw);
      expect(more).toHaveLength(0);
      expect(first!.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(second!.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(second!.head).toContain(`etag: "sha256-${b.sha256}"`);
      await expectSameBytes(first!.body, aData, 'body A');
      await expectSameBytes(second!.body, bData, 'body B');

      const resumed = await lab.logged('s2', 'connection resumed');
      expect(resumed.map((line) => [line.serverOffset, line.steps]), story).toEqual([[queued, 1]]);
      expect((await lab.metrics('s2')).value('wedge_takeovers_total', { result: 'resumed' })).toBe(1);
    } finally {
      client.kill();
    }
  });
});
