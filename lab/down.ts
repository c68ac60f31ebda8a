/*
 * `lab down`: stops every process of the lab and removes its namespaces, state, logs and files.
 * It trusts nothing to be complete: it works from the state file when there is one, from the
 * namespaces carrying the lab's prefix when there is not (a lab that failed half-way), and it
 * also ends recorded daemons that somehow left their namespace (only after checking that the PID
 * still runs a command that names this lab's directories, never a recycled PID). Idempotent.
 */
import { readFile, rm } from 'node:fs/promises';
import { deleteNamespace, killNamespaceProcesses, listNamespaces } from './netns.js';
import { nsPrefix } from './plan.js';
import { dataDirOf, readState, runDirOf, type LabState } from './state.js';

const STOP_GRACE_MS = 2_000;

async function commandLineOf(pid: number): Promise<string | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ');
  } catch {
    return null;
  }
}

async function killStrayDaemons(state: LabState, runDir: string, dataDir: string): Promise<void> {
  const pids = [...state.servers.flatMap((s) => [s.origin?.pid, s.wedge?.pid]), state.agent?.pid].filter((pid): pid is number => pid !== undefined);
  for (const pid of pids) {
    const cmdline = await commandLineOf(pid);
    if (cmdline !== null && (cmdline.includes(runDir) || cmdline.includes(dataDir))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

export interface DownReport {
  namespaces: string[];
  processes: number;
}

export async function labDown(lab: string): Promise<DownReport> {
  const state = await readState(lab).catch(() => null);
  const runDir = state?.runDir ?? runDirOf(lab);
  const dataDir = state?.dataDir ?? dataDirOf(lab);
  const namespaces = [...new Set([...(state?.namespaces ?? []), ...(await listNamespaces(nsPrefix(lab)))])];
  const existing = new Set(await listNamespaces(nsPrefix(lab)));
  const killed = await Promise.all(
    namespaces.filter((ns) => existing.has(ns)).map((ns) => killNamespaceProcesses(ns, STOP_GRACE_MS)),
  );
  if (state !== null) await killStrayDaemons(state, runDir, dataDir);
  for (const ns of namespaces) await deleteNamespace(ns);
  await rm(runDir, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
  return { namespaces: namespaces.filter((ns) => existing.has(ns)), processes: killed.flat().length };
}
