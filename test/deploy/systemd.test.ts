/*
 * The systemd units in deploy/systemd/ pass `systemd-analyze verify` (with the wedge command
 * pointed at this checkout's bin/wedge), keep the privileges the README promises, and the
 * example configuration file is one `wedge serve` accepts.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addServeOptions, resolveServeFlags } from '../../cli/serve-options.js';
import { BIN_DIR, PACKAGE_ROOT } from '../../config/package.js';

const run = promisify(execFile);
const UNITS = join(PACKAGE_ROOT, 'deploy', 'systemd');

describe('deploy/systemd', () => {
  it('systemd-analyze verify finds nothing wrong in either unit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wedge-units-'));
    for (const unit of ['wedge.service', 'wedge-agent.service']) {
      writeFileSync(join(dir, unit), readFileSync(join(UNITS, unit), 'utf8').replaceAll('/usr/local/bin/wedge', join(BIN_DIR, 'wedge')));
    }
    const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', join(dir, 'wedge.service'), join(dir, 'wedge-agent.service')]);
    expect(stdout + stderr).toBe('');
  });

  it('wedge.service: notify readiness, reload is the in-place upgrade, a non-root user with three capabilities only', () => {
    const unit = readFileSync(join(UNITS, 'wedge.service'), 'utf8');
    const settings = new Map([...unit.matchAll(/^(\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    expect(settings.get('Type')).toBe('notify');
    expect(settings.get('NotifyAccess')).toBe('all');
    expect(settings.get('ExecReload')).toMatch(/wedge upgrade --config /);
    expect(settings.get('Restart')).toBe('on-failure');
    expect(settings.get('User')).not.toBe('root');
    expect(settings.get('NoNewPrivileges')).toBe('yes');
    expect(settings.get('AmbientCapabilities')!.split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW']);
    expect(settings.get('CapabilityBoundingSet')).toBe(settings.get('AmbientCapabilities'));
  });

  it('the example /etc/wedge/wedge.yaml is a configuration `wedge serve` accepts', () => {
    const serve = new Command('serve').exitOverride();
    let flags: Record<string, unknown> = {};
    addServeOptions(serve).action((_f: unknown, command: Command) => {
      flags = resolveServeFlags(command) as unknown as Record<string, unknown>;
    });
    serve.parse(['--config', join(UNITS, 'wedge.yaml')], { from: 'user' });
    expect(flags).toMatchObject({ name: 's1', address: '10.0.0.11', service: '10.0.0.101:80', handover: '/run/wedge/handover.sock', forwarded: 'xff' });
  });
});
