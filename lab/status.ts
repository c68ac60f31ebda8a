/*
 * `lab status`: the state file, checked against reality: for each server whether its namespace
 * still holds the recorded origin and wedge processes (and the client's, the client agent).
 * Fields are only ever added; older state files lack the later ones and show them as null/false.
 */
import { namespacePids } from './netns.js';
import { serviceIfaceOf, type AgentRecord, type LabState, type ProcessRecord, type RouterState } from './state.js';

export interface ProcessStatus extends ProcessRecord {
  running: boolean;
}

export interface ServerStatus {
  name: string;
  ns: string;
  address: string;
  vip: string;
  service: string;
  admin: string;
  iface: string;
  status: 'alive' | 'crashed' | 'drained';
  origin: ProcessStatus | null;
  wedge: ProcessStatus | null;
  /** The address in `service` (VIP, or in subnets mode the server's own subnet address). */
  serviceAddress: string;
  /** The interface holding it (`eth0`, or `eth1` towards the router in subnets mode). */
  serviceIface: string;
  /** Subnets mode: the server's default gateway (the router); else null. */
  gateway: string | null;
  /** The rate shaping this server's egress on `serviceIface`, or null. */
  rate: string | null;
}

export interface AgentStatus extends AgentRecord {
  running: boolean;
}

export interface LabStatus {
  lab: string;
  phase: LabState['phase'];
  origin: LabState['origin'];
  /* The --origin-cmd command, for origin 'command'. */
  originCmd: string | null;
  rate: string | null;
  createdAt: string;
  runDir: string;
  dataDir: string;
  client: LabState['client'];
  servers: ServerStatus[];
  files: LabState['files'];
  subnets: boolean;
  router: RouterState | null;
  migrateKey: string | null;
  migratePub: string | null;
  /** The client agent, when `lab up --agent` started one. */
  agent: AgentStatus | null;
}

export async function labStatus(state: LabState): Promise<LabStatus> {
  const servers = await Promise.all(
    state.servers.map(async (server): Promise<ServerStatus> => {
      const pids = new Set(await namespacePids(server.ns));
      const check = (record: ProcessRecord | undefined): ProcessStatus | null =>
        record === undefined ? null : { ...record, running: pids.has(record.pid) };
      return {
        name: server.name,
        ns: server.ns,
        address: server.address,
        vip: server.vip,
        service: server.service,
        admin: server.admin,
        iface: server.iface,
        status: server.status,
        origin: check(server.origin),
        wedge: check(server.wedge),
        serviceAddress: server.serviceAddress ?? server.vip,
        serviceIface: serviceIfaceOf(server),
        gateway: server.gateway ?? null,
        // Older state files (no serviceIface) only knew the lab-wide rate.
        rate: server.serviceIface === undefined ? (state.rate ?? null) : (server.rate ?? null),
      };
    }),
  );
  let agent: AgentStatus | null = null;
  if (state.agent) {
    const clientPids = new Set(await namespacePids(state.client.ns));
    agent = { ...state.agent, running: clientPids.has(state.agent.pid) };
  }
  return {
    lab: state.lab,
    phase: state.phase,
    origin: state.origin,
    originCmd: state.originCmd ?? null,
    rate: state.rate ?? null,
    createdAt: state.createdAt,
    runDir: state.runDir,
    dataDir: state.dataDir,
    client: state.client,
    servers,
    files: state.files,
    subnets: state.subnets === true,
    router: state.router ?? null,
    migrateKey: state.migrateKey ?? null,
    migratePub: state.migratePub ?? null,
    agent,
  };
}
