/*
 * The TCP Migrate client agent on the client host (`lab up --agent`): `wedge agent` started in
 * the client namespace as a detached lab process, like the servers' wedges, with the agreed
 * command line. As for `wedge serve`, options this build's `wedge agent --help` does not list are
 * left out (and said so); when this build has no `wedge agent` at all, `lab up` warns and goes on
 * without it. `lab down` stops it with the rest of the client namespace (SIGTERM first, so it can
 * remove its own nftables table).
 */
import { join } from 'node:path';
import { startDetachedIn, type Started } from './procs.js';
import { COMPILED_CLI } from '../config/package.js';
import { AGENT_METRICS, SERVICE_PORT } from './plan.js';
import { tryRun } from './run.js';
import { labEnv } from './servers.js';
import type { LabState } from './state.js';

export function agentLog(state: LabState): string {
  return join(state.runDir, 'client-agent.log');
}

export function agentMetricsUrl(): string {
  return `http://${AGENT_METRICS}/metrics`;
}

/** The agreed `wedge agent` command line, as option/value pairs. */
export function agentOptions(state: LabState): [string, string][] {
  return [
    ['--address', state.client.address],
    ['--service-key', state.migratePub ?? join(state.runDir, 'migrate.pub')],
    ['--ports', String(SERVICE_PORT)],
    ['--metrics', AGENT_METRICS],
    ['--log-file', agentLog(state)],
  ];
}

/**
 * Of `options`, those this build's `wedge agent --help` does not list; null when this build has no
 * `wedge agent` command at all.
 */
export async function missingAgentOptions(options: readonly string[]): Promise<string[] | null> {
  const help = await tryRun(process.execPath, [COMPILED_CLI, 'agent', '--help'], { timeoutMs: 20_000 });
  if (help === null || !/^Usage: wedge agent\b/m.test(help.stdout)) return null;
  return options.filter((option) => !new RegExp(`${option}(?![\\w-])`).test(help.stdout));
}

export function startAgent(state: LabState, unsupported: readonly string[] = []): Started {
  const options = agentOptions(state).filter(([option]) => !unsupported.includes(option));
  const argv = [process.execPath, COMPILED_CLI, 'agent', ...options.flat()];
  return startDetachedIn(state.client.ns, argv, agentLog(state), labEnv(state.lab));
}
