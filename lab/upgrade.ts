/*
 * `lab upgrade SERVER`: the in-place upgrade of one wedge. A second `wedge serve` with the same
 * command line starts beside the running one and takes its listener and every live connection
 * through the handover socket (`--handover`, daemon/handover.ts); the old process exits.
 */
import { join } from 'node:path';
import { WedgeError } from '../errors/codes.js';
import { isRunning } from './procs.js';
import { httpStatus, waitUntil } from './ready.js';
import { missingServeOptions, startWedge, wedgeServeOptions } from './servers.js';
import { findServer, writeState, type LabState } from './state.js';

const UPGRADE_TIMEOUT_MS = 45_000;

export interface UpgradeReport {
  server: string;
  oldPid: number;
  newPid: number;
}

export async function labUpgrade(state: LabState, name: string): Promise<UpgradeReport> {
  const server = findServer(state, name);
  if (server.status !== 'alive') throw new WedgeError('WEDGE_ERR_LAB', `${server.name} is ${server.status}`);
  const oldPid = server.wedge?.pid;
  if (oldPid === undefined || !isRunning(oldPid)) throw new WedgeError('WEDGE_ERR_LAB', `${server.name}'s wedge is not running`);
  const keyFile = join(state.runDir, 'cluster.key');
  const options = wedgeServeOptions(state, server, keyFile).map(([option]) => option);
  const missing = await missingServeOptions(options);
  if (missing.includes('--handover')) throw new WedgeError('WEDGE_ERR_LAB', "this build's `wedge serve` has no --handover (in-place upgrade)");
  const started = startWedge(state, server, keyFile, missing);
  await waitUntil(`${server.name}'s new wedge`, started, Date.now() + UPGRADE_TIMEOUT_MS, () => undefined, async () => {
    return !isRunning(oldPid) && (await httpStatus(server.ns, `${server.admin}/healthz`)) === 200;
  });
  server.wedge = { pid: started.pid, log: started.log };
  await writeState(state);
  return { server: server.name, oldPid, newPid: started.pid };
}

