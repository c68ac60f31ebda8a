/*
 * The lab's state file. `lab up` writes it before creating anything (so a failure half-way can
 * be cleaned up) and rewrites it as each step completes; every other subcommand reads it. It
 * lives at /run/wedge-lab/<lab>/state.json with the logs, config files and cluster key beside
 * it; the served files (large) live under /var/tmp/wedge-lab/<lab>/. WEDGE_LAB_RUN_DIR and
 * WEDGE_LAB_DATA_DIR move both bases. Writes go through a temporary file and rename, so a
 * reader never sees half a file.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WedgeError } from '../errors/codes.js';

/* 'command': the user's own origin (`lab up --origin-cmd`). */
export type OriginKind = 'builtin' | 'apache' | 'command';

export interface ProcessRecord {
  pid: number;
  log: string;
}

export interface ServerState {
  name: string;
  ns: string;
  /** Own address on the cluster network (the switch): the soft-state identity, `--address`. */
  address: string;
  /** The address in `service`: the VIP, or in subnets mode the server's own subnet address. */
  vip: string;
  /** Interface on the cluster network (the switch), `--iface`. */
  iface: string;
  service: string;
  admin: string;
  status: 'alive' | 'crashed' | 'drained';
  /** Same as `vip` (added later; absent in older state files). */
  serviceAddress?: string;
  /** Interface holding the service address: `iface`, or in subnets mode `eth1` (to the router). */
  serviceIface?: string;
  /** Subnets mode: the router's address on this server's subnet (its default route). */
  gateway?: string;
  /** The tc rate currently shaping this server's egress on `serviceIface`, if any. */
  rate?: string;
  origin?: ProcessRecord;
  /** Absent while `wedge serve` is not available (or not started yet). */
  wedge?: ProcessRecord;
  root: string;
}

export interface FileState {
  path: string;
  bytes: number;
  sha256: string;
}

export interface RouterState {
  name: string;
  ns: string;
  /** One per attached host: the router-side interface, its address/prefix, the host. */
  interfaces: { name: string; address: string; host: string }[];
}

export interface ClientState {
  name: string;
  ns: string;
  address: string;
  /** Added later (absent in older state files): the client's interface, and gateway in subnets mode. */
  iface?: string;
  gateway?: string;
}

export interface AgentRecord extends ProcessRecord {
  /** Where the agent's Prometheus metrics answer, inside the client namespace (null: no --metrics in this build). */
  metrics: string | null;
}

export interface LabState {
  lab: string;
  phase: 'building' | 'up';
  createdAt: string;
  origin: OriginKind;
  /** `--origin-cmd`: the shell command run as every server's origin (origin 'command'). */
  originCmd?: string;
  /** The lab-wide `--rate` (every server), if one was given. */
  rate?: string;
  runDir: string;
  dataDir: string;
  namespaces: string[];
  client: ClientState;
  servers: ServerState[];
  files: FileState[];
  /** Subnets mode (`--subnets`): a router between the client and each server's own subnet. */
  subnets?: boolean;
  router?: RouterState;
  /** Ed25519 key pair for TCP Migrate (PEM: pkcs8 private, mode 0600; spki public). */
  migrateKey?: string;
  migratePub?: string;
  /** `--agent` asked for the client agent; `agent` is set once it has been started. */
  agentWanted?: boolean;
  agent?: AgentRecord;
}

export function runBase(): string {
  return process.env.WEDGE_LAB_RUN_DIR ?? '/run/wedge-lab';
}

export function dataBase(): string {
  return process.env.WEDGE_LAB_DATA_DIR ?? '/var/tmp/wedge-lab';
}

export function runDirOf(lab: string): string {
  return join(runBase(), lab);
}

export function dataDirOf(lab: string): string {
  return join(dataBase(), lab);
}

export function stateFileOf(lab: string): string {
  return join(runDirOf(lab), 'state.json');
}

export async function writeState(state: LabState): Promise<void> {
  await mkdir(state.runDir, { recursive: true, mode: 0o755 });
  const file = stateFileOf(state.lab);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o644 });
  await rename(tmp, file);
}

/** The lab's state, or null when there is no state file. */
export async function readState(lab: string): Promise<LabState | null> {
  let text: string;
  try {
    text = await readFile(stateFileOf(lab), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    return JSON.parse(text) as LabState;
  } catch (err) {
    throw new WedgeError('WEDGE_ERR_LAB', `state file ${stateFileOf(lab)} is corrupt; run \`wedge lab down --lab ${lab}\``, { cause: err });
  }
}

/** The lab's state; a clear error when the lab does not exist. */
export async function requireState(lab: string): Promise<LabState> {
  const state = await readState(lab);
  if (state === null) {
    throw new WedgeError('WEDGE_ERR_LAB', `no lab named "${lab}" (no ${stateFileOf(lab)}); start one with \`wedge lab up --lab ${lab}\``);
  }
  return state;
}

export function findServer(state: LabState, name: string): ServerState {
  const server = state.servers.find((s) => s.name === name);
  if (!server) {
    const names = state.servers.map((s) => s.name).join(', ');
    throw new WedgeError('WEDGE_ERR_LAB', `lab "${state.lab}" has no server "${name}" (servers: ${names})`);
  }
  return server;
}

/** The interface holding a server's service address (older state files: its only one). */
export function serviceIfaceOf(server: ServerState): string {
  return server.serviceIface ?? server.iface;
}

/** Every link of a server: the cluster one and, in subnets mode, the one to the router. */
export function linksOf(server: ServerState): string[] {
  return [...new Set([server.iface, serviceIfaceOf(server)])];
}
