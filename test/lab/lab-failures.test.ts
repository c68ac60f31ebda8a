/*
 * `lab up` failures: a bad option is refused before anything is made; a failure half-way (the
 * origins cannot answer within the timeout) names the server and its log and removes everything
 * it made; a second `lab up` of an existing lab is refused without touching the first.
 */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { IS_ROOT, labNamespaces, processesMentioning, uniqueLab, wedge, wedgeOk } from '../support/lab.js';

describe.skipIf(!IS_ROOT)('lab up failures', () => {
  const bad = uniqueLab('badfile');
  const slow = uniqueLab('slow');
  const twice = uniqueLab('twice');

  afterAll(async () => {
    for (const lab of [bad, slow, twice]) await wedge(['lab', 'down', '--lab', lab]);
  });

  it('refuses a bad --file spec with a clear error and makes nothing', async () => {
    const result = await wedge(['lab', 'up', '--json', '--lab', bad, '--file', 'no/slash:abc']);
    expect(result.code).not.toBe(0);
    expect(result.stdout.toString()).toBe('');
    expect(result.stderr).toContain('WEDGE_ERR_CONFIG');
    expect(result.stderr).toContain('--file "no/slash:abc" must be NAME:MIB');
    expect(await labNamespaces(bad)).toEqual([]);
    expect(existsSync(`/run/wedge-lab/${bad}`)).toBe(false);
  });

  it('refuses a bad lab name, server count or rate', async () => {
    for (const args of [['--lab', 'bad_name'], ['--lab', bad, '--servers', '0'], ['--lab', bad, '--rate', 'fast']]) {
      const result = await wedge(['lab', 'up', ...args]);
      expect(result.code, args.join(' ')).not.toBe(0);
      expect(result.stderr, args.join(' ')).toContain('WEDGE_ERR_CONFIG');
    }
    expect(await labNamespaces(bad)).toEqual([]);
  });

  it('names the server and its log when an origin does not come up, and tears everything down', async () => {
    const result = await wedge(['lab', 'up', '--lab', slow, '--servers', '2', '--file', 'x.bin:1', '--timeout', '0.001']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('WEDGE_ERR_LAB');
    expect(result.stderr).toMatch(new RegExp(`s[12]'s builtin origin did not come up in time; see /run/wedge-lab/${slow}/s[12]-origin\\.log`));
    expect(await labNamespaces(slow)).toEqual([]);
    expect(await processesMentioning(`/wedge-lab/${slow}/`)).toEqual([]);
    expect(existsSync(`/run/wedge-lab/${slow}`)).toBe(false);
    expect(existsSync(`/var/tmp/wedge-lab/${slow}`)).toBe(false);
  });

  it('refuses to build a lab that already exists and leaves the existing one alone', async () => {
    await wedgeOk(['lab', 'up', '--lab', twice, '--servers', '1', '--file', 'x.bin:1']);
    const again = await wedge(['lab', 'up', '--lab', twice, '--servers', '1', '--file', 'x.bin:1']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain(`a lab named "${twice}" already exists`);
    const still = await wedgeOk(['lab', 'exec', 's1', '--lab', twice, '--', 'curl', '-fsS', '-o', '/dev/null', 'http://127.0.0.1:8080/x.bin']);
    expect(still.code).toBe(0);
    await wedgeOk(['lab', 'down', '--lab', twice]);
    expect(await labNamespaces(twice)).toEqual([]);
  });
});
