/*
 * `wedge serve --config FILE`: every option round-trips through the file (the same flags as when
 * given on the command line), flags and WEDGE_* variables override the file, and bad files are
 * refused with the key's name and a clear message.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addServeOptions, resolveServeFlags } from '../../cli/serve-options.js';
import type { ServeFlags } from '../../daemon/serve-flags.js';

const dir = mkdtempSync(join(tmpdir(), 'wedge-config-'));
let files = 0;

function file(text: string): string {
  const path = join(dir, `wedge-${files++}.yaml`);
  writeFileSync(path, text);
  return path;
}

/* The flags `wedge serve ARGS` resolves to, with `env` as the environment. */
function resolve(args: string[], env: Record<string, string> = {}): { flags: ServeFlags; command: Command } {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const program = new Command().exitOverride();
    let result: { flags: ServeFlags; command: Command } | undefined;
    const serve = program.command('serve');
    addServeOptions(serve).action((_flags: unknown, command: Command) => {
      result = { flags: resolveServeFlags(command), command };
    });
    program.parse(['node', 'wedge', 'serve', ...args]);
    return result!;
  } finally {
    process.env = saved;
  }
}

const serveOptions = () => {
  const serve = new Command('serve');
  addServeOptions(serve);
  return serve.options.filter((o) => o.long !== '--config');
};

describe('wedge serve --config', () => {
  it('round-trips every option: a key in the file gives exactly what its flag gives', () => {
    const options = serveOptions();
    expect(options.length).toBeGreaterThan(30);
    for (const option of options) {
      const name = option.negate ? option.long!.slice(5) : option.long!.slice(2);
      if (option.negate) {
        const fromFlag = resolve([option.long!]).flags;
        const fromFile = resolve(['--config', file(`${name}: false\n`)]);
        expect(fromFile.flags, name).toEqual({ ...fromFlag, config: expect.any(String) });
        continue;
      }
      const value = typeof option.defaultValue === 'string' && /^\d+$/.test(option.defaultValue) ? '4321' : `value-of-${name}`;
      const fromFlag = resolve([option.long!, value]).flags;
      const fromFile = resolve(['--config', file(`${name}: ${JSON.stringify(value)}\n`)]);
      expect(fromFile.flags, name).toEqual({ ...fromFlag, config: expect.any(String) });
      expect(fromFile.command.getOptionValueSource(option.attributeName()), name).toBe('config');
    }
  });

  it('takes numbers and booleans as YAML writes them', () => {
    const { flags } = resolve(['--config', file('advert-interval: 2500\nsplice: false\nlisten: 0.0.0.0:8080\n')]);
    expect(flags).toMatchObject({ advertInterval: '2500', splice: false, listen: '0.0.0.0:8080' });
  });

  it('a flag wins over the environment, the environment over the file', () => {
    const config = file('dead-after: 500\nheartbeat-interval: 50\nname: from-file\n');
    const { flags } = resolve(['--config', config, '--dead-after', '700'], { WEDGE_DEAD_AFTER: '600', WEDGE_HEARTBEAT_INTERVAL: '60' });
    expect(flags).toMatchObject({ deadAfter: '700', heartbeatInterval: '60', name: 'from-file' });
  });

  it.each([
    ['an unknown key, with the nearest option', 'advert-intervall: 3000\n', /: advert-intervall: not a `wedge serve` option \(did you mean advert-interval\?\)/],
    ['a count that is not a positive integer', 'dead-after: -5\n', /: dead-after: expected a positive integer, got -5/],
    ['a boolean option given a string', 'splice: "no"\n', /: splice: expected true or false, got "no"/],
    ['an option given a boolean', 'listen: true\n', /: listen: expected a value, got true/],
    ['a nested mapping', 'listen:\n  host: 0.0.0.0\n', /: listen: expected a string, number or boolean, got a mapping/],
    ['a list', '- listen\n', /expected a mapping of options \(key: value\), not a list/],
    ['a duplicate key', 'name: a\nname: b\n', /not valid YAML: Map keys must be unique/],
    ['broken YAML', 'name: [unclosed\n', /not valid YAML/],
  ])('refuses %s, naming it', (_what, text, message) => {
    const config = file(text);
    expect(() => resolve(['--config', config])).toThrow(message);
  });

  it('refuses a file it cannot read', () => {
    expect(() => resolve(['--config', join(dir, 'missing.yaml')])).toThrow(/--config .*missing\.yaml: ENOENT/);
  });
});
