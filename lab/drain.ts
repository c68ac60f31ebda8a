/*
 * Planned drains of a lab's wedges, through the wedge's own CLI inside the server's namespace:
 *
 *   drain SERVER       `wedge drain --wait` there: its connections (and, address takeover, its
 *                      service address) go to its peers, its wedge exits; the server's state
 *                      becomes `drained` (its origin still runs)
 *   rolling-restart    each server that has not crashed, in turn: drain (unless drained
 *                      already), start its wedge again with the same command line, wait until
 *                      it answers and every live server sees every other alive (it rejoined its
 *                      group), then the next one
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { COMPILED_CLI } from '../config/package.js';
import { WedgeError } from '../errors/codes.js';
import { ADMIN_PORT } from './plan.js';
import { isRunning, waitExit } from './procs.js';
import { httpStatus, waitUntil } from './ready.js';
import { runIn, tryRunIn } from './run.js';
import { missingServeOptions, startWedge, wedgeServeOptions } from './servers.js';
import { findServer, writeState, type LabState, type ServerState } from './state.js';

/* Beyond the wedge's default --drain-timeout (30 s). */
const DRAIN_WAIT_S = 45;
const REJOIN_TIMEOUT_MS = 30_000;
const REJOIN_MARGIN_MS = 300;

/* What `wedge drain --json` printed last. */
export interface DrainReport {
  phase: string;
  remaining: number;
  moved: number;
  finished: number;
  reset: number;
  exited?: boolean;
}

export async function labDrain(state: LabState, name: string): Promise<DrainReport> {
  const server = findServer(state, name);
  if (server.status !== 'alive') throw new WedgeError('WEDGE_ERR_LAB', `${server.name} is ${server.status}`);
  const pid = server.wedge?.pid;
  if (pid === undefined || !isRunning(pid)) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s wedge is not running`);
  const admin = `http://127.0.0.1:${ADMIN_PORT}`;
  const answer = await runIn(server.ns, process.execPath, [COMPILED_CLI, 'drain', '--wait', '--json', '--timeout', String(DRAIN_WAIT_S), '--admin', admin], {
    timeoutMs: (DRAIN_WAIT_S + 15) * 1000,
  });
  if (await waitExit(pid, 5000)) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s wedge did not exit after its drain (killed); see ${server.wedge?.log}`);
  server.status = 'drained';
  await writeState(state);
  return JSON.parse(answer.stdout) as DrainReport;
}

export async function labRollingRestart(state: LabState, say: (line: string) => void): Promise<void> {
  const servers = state.servers.filter((s) => s.status !== 'crashed');
  if (servers.length < 2) throw new WedgeError('WEDGE_ERR_LAB', 'a rolling restart needs at least two servers that have not crashed (connections move to a peer)');
  const keyFile = join(state.runDir, 'cluster.key');
  const missing = await missingServeOptions(wedgeServeOptions(state, servers[0]!, keyFile).map(([option]) => option));
  for (const server of servers) {
    // A server drained before is only started again.
    const drained = server.status === 'alive' ? await labDrain(state, server.name) : { moved: 0, finished: 0, reset: 0 };
    const started = startWedge(state, server, keyFile, missing);
    server.wedge = { pid: started.pid, log: started.log };
    server.status = 'alive';
    await writeState(state);
    await waitUntil(`${server.name}'s wedge`, started, Date.now() + REJOIN_TIMEOUT_MS, () => undefined, async () => {
      return (await httpStatus(server.ns, `${server.admin}/healthz`)) === 200 && (await rejoined(state));
    });
    // Its peers' records reach it right after they see it alive; a moment's margin before the next drain.
    await sleep(REJOIN_MARGIN_MS);
    say(`${server.name}: drained (moved ${drained.moved}, finished ${drained.finished}, reset ${drained.reset}), restarted (pid ${started.pid}), rejoined`);
  }
}

/* Every live server sees every other one alive. */
async function rejoined(state: LabState): Promise<boolean> {
  const live = state.servers.filter((s) => s.status === 'alive');
  const seen = await Promise.all(live.map((s) => alivePeers(s)));
  return seen.every((n) => n === live.length - 1);
}

async function alivePeers(server: ServerState): Promise<number> {
  const metrics = await tryRunIn(server.ns, 'curl', ['-sS', '--max-time', '2', '--noproxy', '*', `${server.admin}/metrics`], { timeoutMs: 5000 });
  const match = metrics?.stdout.match(/^wedge_softstate_peers\{state="alive"\} (\d+)$/m);
  return match ? Number(match[1]) : -1;
}
