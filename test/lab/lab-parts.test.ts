/*
 * The lab's pure parts, without root: option parsing, the naming plan, and file generation
 * (deterministic content, identical size and mtime in every replica's copy).
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateFiles, installFiles, parseFileSpecs } from '../../lab/files.js';
import { nsName, nsPrefix, resolveLabName, serverAddress, serviceAddress, switchPort } from '../../lab/plan.js';
import { parseRate } from '../../lab/shaping.js';
import { expectSameBytes } from '../support/bytes.js';

describe('lab options', () => {
  it('parses --file specs', () => {
    expect(parseFileSpecs(['big.bin:64', 'half:0.5', 'empty.txt:0'])).toEqual([
      { name: 'big.bin', bytes: 64 * 1024 * 1024 },
      { name: 'half', bytes: 512 * 1024 },
      { name: 'empty.txt', bytes: 0 },
    ]);
    for (const bad of ['big.bin', 'a/b:1', '../x:1', 'x:-1', 'x:1e3', 'x:5000', ':1', '.hidden:1']) {
      expect(() => parseFileSpecs([bad]), bad).toThrow(/must be NAME:MIB/);
    }
    expect(() => parseFileSpecs(['a:1', 'a:2'])).toThrow(/given twice/);
  });

  it('parses --rate', () => {
    expect(parseRate('100mbit')).toEqual({ text: '100mbit', bytesPerSecond: 12_500_000 });
    expect(parseRate('20Mbit').bytesPerSecond).toBe(2_500_000);
    expect(parseRate('1gbps').bytesPerSecond).toBe(1e9);
    for (const bad of ['fast', '100', 'mbit', '1bit', '10 mbit']) expect(() => parseRate(bad), bad).toThrow(/--rate/);
  });

  it('derives names that keep labs apart and interface names short', () => {
    expect(resolveLabName('demo-1')).toBe('demo-1');
    expect(() => resolveLabName('a_b')).toThrow(/lab name/);
    expect(() => resolveLabName('x'.repeat(41))).toThrow(/lab name/);
    // One lab's prefix never matches another lab's namespaces.
    expect(nsName('a-s1', 'client').startsWith(nsPrefix('a'))).toBe(false);
    expect(switchPort('client').length).toBeLessThanOrEqual(15);
    expect(switchPort('s50').length).toBeLessThanOrEqual(15);
    expect([serverAddress(1), serviceAddress(1), serverAddress(50), serviceAddress(50)]).toEqual([
      '10.77.0.11',
      '10.77.0.101',
      '10.77.0.60',
      '10.77.0.150',
    ]);
  });
});

describe('lab files', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('generates the same bytes for the same spec and copies them with the same mtime', async () => {
    const a = await mkdtemp(join(tmpdir(), 'wedge-lab-files-'));
    const b = await mkdtemp(join(tmpdir(), 'wedge-lab-files-'));
    dirs.push(a, b);
    const specs = parseFileSpecs(['one.bin:1.5', 'two.bin:0.01']);
    const first = await generateFiles(specs, join(a, 'source'), 1_700_000_000);
    const second = await generateFiles(specs, join(b, 'source'), 1_700_000_123);
    expect(second).toEqual(first);
    expect(first[0]!.sha256).not.toBe(first[1]!.sha256);
    const body = await readFile(join(a, 'source', 'one.bin'));
    expect(body.length).toBe(1.5 * 1024 * 1024);
    await expectSameBytes(body, first[0]!, 'one.bin as generated');

    await installFiles(first, join(a, 'source'), join(a, 's1'));
    await installFiles(first, join(a, 'source'), join(a, 's2'));
    const s1 = await stat(join(a, 's1', 'one.bin'));
    const s2 = await stat(join(a, 's2', 'one.bin'));
    expect(s1.mtimeMs).toBe(1_700_000_000_000);
    expect(s2.mtimeMs).toBe(s1.mtimeMs);
    expect(s2.ino).not.toBe(s1.ino);
    await expectSameBytes(join(a, 's2', 'one.bin'), first[0]!);
  });
});
