/*
 * The README's first command: `wedge demo` builds a lab, crashes the serving server mid-download
 * and checks the result. Run here with a small file, into a directory that still holds an
 * earlier run's download (a second run must not mistake it for progress). Needs root.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, wedge } from '../support/lab.js';

describe.skipIf(!IS_ROOT)('wedge demo', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'wedge-demo-'));
    await writeFile(join(out, 'demo.bin'), Buffer.alloc(8 * 1024 * 1024));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('crashes the serving server mid-download and the download finishes intact', async () => {
    const result = await wedge(['demo', '--size-mib', '8', '--out', out], 180_000);
    expect(result.code, result.stderr).toBe(0);
    const crashedAt = Number(/crashed s1 at ([0-9.]+) MiB/.exec(result.stderr)?.[1]);
    expect(crashedAt).toBeGreaterThan(0);
    expect(crashedAt).toBeLessThan(8);
    expect(result.stderr).toContain('received 8388608 of 8388608 bytes, sha256 matches');
    expect(existsSync(join(out, 'timeline.svg'))).toBe(true);
  });
});
