import { readFileSync } from 'node:fs';
import { WedgeError } from '../errors/codes.js';
import { addon } from './addon.js';

/* What the native helper needs from the kernel, checked once and said plainly. */

export interface PrivilegeReport {
  /** CAP_NET_ADMIN: TCP_REPAIR, addresses. */
  netAdmin: boolean;
  /** CAP_NET_RAW: raw and AF_PACKET sockets (probe, gratuitous ARP). */
  netRaw: boolean;
  /** TCP_REPAIR could be switched on for a fresh socket. */
  tcpRepair: boolean;
  /** Why not, as the kernel said (null when it could). */
  repairProblem: string | null;
  ok: boolean;
  /** One line per missing piece; empty when ok. */
  problems: string[];
}

export const PRIVILEGE_FIX = 'run as root or grant CAP_NET_ADMIN,CAP_NET_RAW (e.g. setcap cap_net_admin,cap_net_raw+ep $(which node))';

/* TCP_REPAIR wants CAP_NET_ADMIN over the socket's network namespace; containers often lack it. */
export const TCP_REPAIR_FIX = 'run with CAP_NET_ADMIN in this network namespace (a container needs it granted) on Linux >= 3.5, and let any seccomp or LSM policy allow setsockopt(TCP_REPAIR)';

const CAP_NET_ADMIN = 12n;
const CAP_NET_RAW = 13n;

function effectiveCapabilities(): bigint {
  const status = readFileSync('/proc/self/status', 'utf8');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex ? BigInt('0x' + hex) : 0n;
}

function inspect(): PrivilegeReport {
  const caps = effectiveCapabilities();
  const netAdmin = ((caps >> CAP_NET_ADMIN) & 1n) === 1n;
  const netRaw = ((caps >> CAP_NET_RAW) & 1n) === 1n;
  const repairError = addon.repairProblem();
  const repairProblem = repairError ? repairError.message : null;
  const problems: string[] = [];
  if (!netAdmin) problems.push('CAP_NET_ADMIN is missing (TCP_REPAIR, address moves)');
  if (!netRaw) problems.push('CAP_NET_RAW is missing (probe, gratuitous ARP)');
  if (repairProblem) problems.push(`TCP_REPAIR is not usable: ${repairProblem}`);
  return { netAdmin, netRaw, tcpRepair: repairProblem === null, repairProblem, ok: problems.length === 0, problems };
}

let report: PrivilegeReport | undefined;

/** Checks privileges and kernel support once per process; later calls return the same report. */
export function checkPrivileges(): PrivilegeReport {
  report ??= inspect();
  return report;
}

/** Throws WEDGE_ERR_PRIVILEGE naming what is missing and how to fix it. */
export function assertPrivileges(): void {
  const { ok, problems } = checkPrivileges();
  if (!ok) throw new WedgeError('WEDGE_ERR_PRIVILEGE', `${problems.join('; ')}. Fix: ${PRIVILEGE_FIX}`);
}
