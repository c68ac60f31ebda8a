/*
 * `lab status`: the state file, checked against reality: for each server whether its namespace
 * still holds the recorded origin and wedge processes.
 */
import { namespacePids } from './netns.js';
import type { LabState, ProcessRecord } from './state.js';

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
  status: 'alive' | 'crashed';
  origin: ProcessStatus | null;
  wedge: ProcessStatus | null;
}

export interface LabStatus {
  lab: string;
  phase: LabState['phase'];
  origin: LabState['origin'];
  rate: string | null;
  createdAt: string;
  runDir: string;
  dataDir: string;
  client: LabState['client'];
  servers: ServerStatus[];
  files: LabState['files'];
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
      };
    }),
  );
  return {
    lab: state.lab,
    phase: state.phase,
    origin: state.origin,
    rate: state.rate ?? null,
    createdAt: state.createdAt,
    runDir: state.runDir,
    dataDir: state.dataDir,
    client: state.client,
    servers,
    files: state.files,
  };
}
