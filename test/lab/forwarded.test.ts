/*
 * Issue 15, point 6: the origin sees the client. The lab's wedges run with `--forwarded xff` and
 * its Apache trusts that field from the wedge (mod_remoteip), so Apache's access log names the
 * client, not 127.0.0.1: for a request served normally, and for the Range request an adopter
 * sends after a takeover. An address the client claims itself never reaches the log.
 *
 *   client: one curl, one keep-alive connection to s1's service address, X-Forwarded-For forged:
 *           a small file, then big.bin (throttled by the shaped link)
 *   test:   s1 crashed once 1 MiB of big.bin arrived; s2 resumes it
 *   check:  both files byte-exact; s1's log shows the client for the small file, s2's for the
 *           resumed range; 6.6.6.6 appears nowhere
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, waitForBytes } from '../support/lab.js';

const MIB = 1024 * 1024;
const FORGED = '6.6.6.6';

describe.skipIf(!IS_ROOT || !existsSync('/usr/sbin/apache2'))("Apache's access log names the client, before and after a takeover", () => {
  const lab = new Lab('forwarded');

  beforeAll(async () => {
    await lab.up({ servers: 2, origin: 'apache', files: ['small.bin:1', 'big.bin:64'], rate: '100mbit' });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('X-Forwarded-For from the wedge: the client address in the log, the forged one nowhere', async () => {
    const small = lab.out('small.bin');
    const big = lab.out('big.bin');
    const curl = lab.background('client', ['curl', '-sS', '--max-time', '60', '-H', `X-Forwarded-For: ${FORGED}`, '-o', small, lab.url('s1', '/small.bin'), '-o', big, lab.url('s1', '/big.bin')]);
    try {
      await waitForBytes(big, MIB, curl);
      await lab.crash('s1');
      const code = await curl.done(90_000);
      expect(code, `curl exit ${code}: ${curl.stderr}\n${await lab.story()}`).toBe(0);
    } finally {
      curl.kill();
    }
    await expectSameBytes(small, lab.file('/small.bin'));
    await expectSameBytes(big, lab.file('/big.bin'));

    const before = await readFile(join(lab.runDir, 's1-apache-access.log'), 'utf8');
    const after = await readFile(join(lab.runDir, 's2-apache-access.log'), 'utf8');
    expect(before, "s1's origin served the small file to the client").toMatch(new RegExp(`^${lab.clientAddress.replaceAll('.', '\\.')} via=127\\.0\\.0\\.1 "GET /small\\.bin HTTP/1\\.1" 200 `, 'm'));
    expect(after, "s2's origin served the rest of big.bin to the client").toMatch(new RegExp(`^${lab.clientAddress.replaceAll('.', '\\.')} via=127\\.0\\.0\\.1 "GET /big\\.bin HTTP/1\\.1" 206 .*range="bytes=[1-9]`, 'm'));
    expect(before + after).not.toContain(FORGED);
  });
});
