/*
 * `lab origin SERVER stop|start|restart|kill-worker`: origin failures without a server failure
 * (the wedge stays up and must finish the responses the origin drops).
 *
 *   stop         the origin exits (SIGTERM; SIGKILL after 2 s) and stays away
 *   start        the origin is started again (as `lab up` does) and answers
 *   restart      Apache: `apache2 -f CONF -k restart` (the parent stays, every worker and its
 *                connections are dropped at once, new workers start); builtin: stop, then start
 *   kill-worker  Apache: SIGKILL to the workers holding a connection on the origin port (the
 *                parent starts new ones); builtin (one process): SIGKILL, then start again, as
 *                a supervisor would
 * Each returns once the origin answers again (stop: once it has exited).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { WedgeError } from '../errors/codes.js';
import { APACHE_BINARY } from '../examples/origins/apache.js';
import { namespacePids } from './netns.js';
import { isRunning, waitExit } from './procs.js';
import { ORIGIN_PORT } from './plan.js';
import { httpStatus, waitUntil } from './ready.js';
import { runIn } from './run.js';
import { originUrl, startOrigin } from './servers.js';
import { findServer, writeState, type LabState, type ServerState } from './state.js';

export const ORIGIN_ACTIONS = ['stop', 'start', 'restart', 'kill-worker'] as const;
export type OriginAction = (typeof ORIGIN_ACTIONS)[number];

const STOP_GRACE_MS = 2000;
const READY_TIMEOUT_MS = 20_000;

/* Returns what was done, in one line. */
export async function labOrigin(state: LabState, name: string, action: string): Promise<string> {
  if (!(ORIGIN_ACTIONS as readonly string[]).includes(action)) throw new WedgeError('WEDGE_ERR_LAB', `unknown origin action "${action}"; use ${ORIGIN_ACTIONS.join(', ')}`);
  const server = findServer(state, name);
  if (server.status === 'crashed') throw new WedgeError('WEDGE_ERR_LAB', `${server.name} has crashed`);
  switch (action as OriginAction) {
    case 'stop':
      return `stopped (pid ${await stop(server)})`;
    case 'start':
      return `started (pid ${await start(state, server)})`;
    case 'restart':
      if (state.origin === 'apache') {
        await runIn(server.ns, APACHE_BINARY, ['-f', join(state.runDir, `${server.name}-apache`, 'apache2.conf'), '-k', 'restart']);
        await answers(state, server);
        return 'apache restarted (-k restart: workers and their connections dropped)';
      }
      await stop(server);
      return `restarted (pid ${await start(state, server)})`;
    case 'kill-worker': {
      if (state.origin === 'apache') {
        const workers = await servingWorkers(server);
        if (workers.length === 0) throw new WedgeError('WEDGE_ERR_LAB', `no apache worker on ${server.name} holds a connection on port ${ORIGIN_PORT}`);
        for (const pid of workers) process.kill(pid, 'SIGKILL');
        await answers(state, server);
        return `apache workers ${workers.join(', ')} killed (SIGKILL)`;
      }
      const pid = running(server);
      process.kill(pid, 'SIGKILL');
      await waitExit(pid, STOP_GRACE_MS);
      return `origin ${pid} killed (SIGKILL), started again (pid ${await start(state, server)})`;
    }
  }
}

function running(server: ServerState): number {
  const pid = server.origin?.pid;
  if (pid === undefined || !isRunning(pid)) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s origin is not running (\`wedge lab origin ${server.name} start\`)`);
  return pid;
}

async function stop(server: ServerState): Promise<number> {
  const pid = running(server);
  process.kill(pid, 'SIGTERM');
  await waitExit(pid, STOP_GRACE_MS);
  return pid;
}

async function start(state: LabState, server: ServerState): Promise<number> {
  if (server.origin?.pid !== undefined && isRunning(server.origin.pid)) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s origin already runs (pid ${server.origin.pid})`);
  const started = await startOrigin(state, server, state.origin);
  server.origin = { pid: started.pid, log: started.log };
  await writeState(state);
  await waitUntil(`${server.name}'s ${state.origin} origin`, started, Date.now() + READY_TIMEOUT_MS, () => undefined, () => serves(state, server));
  return started.pid;
}

async function serves(state: LabState, server: ServerState): Promise<boolean> {
  return (await httpStatus(server.ns, originUrl() + (state.files[0]?.path ?? '/'), 'HEAD')) === 200;
}

async function answers(state: LabState, server: ServerState): Promise<void> {
  const until = Date.now() + READY_TIMEOUT_MS;
  while (!(await serves(state, server))) {
    if (Date.now() > until) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s origin does not answer again; see ${server.origin?.log}`);
    await sleep(100);
  }
}

/* The Apache workers (children of the parent) holding an established connection on the origin port. */
async function servingWorkers(server: ServerState): Promise<number[]> {
  const parent = running(server);
  const inNamespace = new Set(await namespacePids(server.ns));
  const { stdout } = await runIn(server.ns, 'ss', ['-tnpH', 'state', 'established', `( sport = :${ORIGIN_PORT} )`]);
  const pids = new Set<number>();
  for (const match of stdout.matchAll(/pid=(\d+)/g)) {
    const pid = Number(match[1]);
    if (pid !== parent && inNamespace.has(pid)) pids.add(pid);
  }
  return [...pids];
}
