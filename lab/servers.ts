/*
 * Starting what runs on each server host: the origin on 127.0.0.1:8080 (built-in or Apache) and
 * `wedge serve` in front of it, with the agreed command line. Which of its options this build's
 * `wedge serve` has is checked once (from its --help): without `--listen` the lab runs the servers
 * without a wedge, and otherwise it leaves out the options that are not there yet; either way it
 * says so, so that the origins (and the basic relay) can be used while the wedge is being built.
 */
import { join } from 'node:path';
import { apacheCommand, writeApacheConfig } from '../examples/origins/apache.js';
import { startDetachedIn, type Started } from './procs.js';
import { BIN_DIR, COMPILED_CLI } from '../config/package.js';
import { ADMIN_PORT, ORIGIN_PORT, SERVICE_PORT, STATE_PORT } from './plan.js';
import { tryRun } from './run.js';
import type { LabState, OriginKind, ServerState } from './state.js';

/** The environment of every process the lab starts: the project's bin/ first on PATH. */
export function labEnv(lab: string): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${BIN_DIR}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, WEDGE_LAB: lab };
}

export function originUrl(): string {
  return `http://127.0.0.1:${ORIGIN_PORT}`;
}

/** Of `options`, those this build's `wedge serve --help` does not list. */
export async function missingServeOptions(options: readonly string[]): Promise<string[]> {
  const help = await tryRun(process.execPath, [COMPILED_CLI, 'serve', '--help'], { timeoutMs: 20_000 });
  if (help === null) return [...options];
  return options.filter((option) => !new RegExp(`${option}(?![\\w-])`).test(help.stdout));
}

export async function startOrigin(state: LabState, server: ServerState, kind: OriginKind): Promise<Started> {
  const log = join(state.runDir, `${server.name}-origin.log`);
  if (kind === 'apache') {
    const config = await writeApacheConfig({
      server: server.name,
      serverRoot: join(state.runDir, `${server.name}-apache`),
      logDir: state.runDir,
      docRoot: server.root,
      listen: `127.0.0.1:${ORIGIN_PORT}`,
    });
    return startDetachedIn(server.ns, apacheCommand(config), log, labEnv(state.lab));
  }
  if (kind === 'command') {
    const env = { ...labEnv(state.lab), PORT: String(ORIGIN_PORT), WEDGE_LAB_SERVER: server.name, WEDGE_LAB_ROOT: server.root };
    return startDetachedIn(server.ns, ['sh', '-c', state.originCmd!], log, env);
  }
  const argv = [process.execPath, COMPILED_CLI, 'origin', '--root', server.root, '--listen', `127.0.0.1:${ORIGIN_PORT}`];
  return startDetachedIn(server.ns, argv, log, labEnv(state.lab));
}

/**
 * The agreed `wedge serve` command line of a server, as option/value pairs. In subnets mode the
 * service address is the server's own subnet address and takeover is TCP Migrate, signed with the
 * lab's Ed25519 key (`--takeover migrate --migrate-key <runDir>/migrate.key`); `--address` and
 * `--iface` stay on the cluster backplane, where the soft-state multicast flows.
 */
export function wedgeServeOptions(state: LabState, server: ServerState, keyFile: string): [string, string][] {
  const migrate: [string, string][] =
    state.subnets === true
      ? [
          ['--takeover', 'migrate'],
          ['--migrate-key', state.migrateKey ?? join(state.runDir, 'migrate.key')],
        ]
      : [];
  return [
    ['--name', server.name],
    ['--listen', `0.0.0.0:${SERVICE_PORT}`],
    ['--service', `${server.vip}:${SERVICE_PORT}`],
    ['--address', server.address],
    ['--iface', server.iface],
    ['--origin', originUrl()],
    ['--admin', `127.0.0.1:${ADMIN_PORT}`],
    ['--state-key-file', keyFile],
    // The origin logs (and may act on) the real client address.
    ['--forwarded', 'xff'],
    // `lab upgrade` starts the next wedge process, which takes everything over through it.
    ['--handover', join(state.runDir, `${server.name}-handover.sock`)],
    // The user's own origin may keep the state contract (README, "Stateful origins").
    ...(state.origin === 'command' ? ([['--state-listen', `127.0.0.1:${STATE_PORT}`]] as [string, string][]) : []),
    ...migrate,
    ['--log-file', wedgeLog(state, server)],
  ];
}

function wedgeLog(state: LabState, server: ServerState): string {
  return join(state.runDir, `${server.name}-wedge.log`);
}

/**
 * Starts `wedge serve` with the agreed command line, leaving out the options in `unsupported`
 * (options this build of `wedge serve` does not have yet; `lab up` reports them).
 */
export function startWedge(state: LabState, server: ServerState, keyFile: string, unsupported: readonly string[] = []): Started {
  const options = wedgeServeOptions(state, server, keyFile).filter(([option]) => !unsupported.includes(option));
  const argv = [process.execPath, COMPILED_CLI, 'serve', ...options.flat()];
  return startDetachedIn(server.ns, argv, wedgeLog(state, server), labEnv(state.lab));
}
