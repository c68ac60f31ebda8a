/*
 * Start-up checks of `wedge serve` with failover on: what the host must offer (privileges,
 * TCP_REPAIR, nftables, sysctls, the cluster interface and its multicast route) in, one result
 * per check (verified, or failed with its fix) out. runChecks() only inspects and formatCheck()
 * only formats, so a `wedge check` command can print the same report; preflight() is the
 * daemon's: it logs every result and stops start-up on the first failure's WedgeError.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BlockList, isIPv4 } from 'node:net';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { parseAddress } from '../config/endpoints.js';
import { WedgeError, type WedgeErrorCode } from '../errors/codes.js';
import { checkPrivileges, PRIVILEGE_FIX, TCP_REPAIR_FIX } from '../native/index.js';
import { groupAddress, validateGroupConfig, type GroupConfig } from '../softstate/groups.js';
import type { ServeFlags } from './serve-flags.js';

const run = promisify(execFile);
const TOOL_TIMEOUT_MS = 5000;

/** What the checks look at: the failover half of `wedge serve`'s flags. */
export interface PreflightTarget {
  /** --address: this server's own address on the cluster network. */
  address: string;
  /** --iface, if given: the interface that must hold --address. */
  iface?: string;
  takeover: 'address' | 'migrate';
  /** Every support group's address must be routed out of the cluster interface. */
  groups: GroupConfig;
}

export interface CheckResult {
  /** Short stable name, e.g. "multicast-route". */
  check: string;
  /** What is required, in words. */
  what: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** How to fix a failure (absent when ok). */
  fix?: string;
  /** The error a failure stops the daemon with. */
  code: WedgeErrorCode;
}

interface Outcome {
  ok: boolean;
  detail: string;
  fix?: string;
}

/* The host as `ip -j addr` shows it, read once for the interface and route checks. */
interface IpInterface {
  ifname: string;
  flags: string[];
  operstate: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

interface Host {
  /** The interface holding --address (and named --iface, if given). */
  cluster?: IpInterface;
}

interface Check {
  check: string;
  what: string;
  code: WedgeErrorCode;
  /** Whether this check applies to the target (e.g. ip_nonlocal_bind only for address takeover). */
  applies?(target: PreflightTarget): boolean;
  run(target: PreflightTarget, host: Host): Outcome | Promise<Outcome>;
}

/** The target from `wedge serve`'s flags (throws WEDGE_ERR_CONFIG on a bad value). */
export function preflightTarget(flags: ServeFlags): PreflightTarget {
  return {
    address: parseAddress(flags.address ?? '', '--address'),
    ...(flags.iface ? { iface: flags.iface } : {}),
    takeover: flags.takeover === 'migrate' ? 'migrate' : 'address',
    groups: validateGroupConfig({ groups: Number(flags.groups), baseGroup: flags.groupBase, port: Number(flags.groupPort) }),
  };
}

const CHECKS: Check[] = [
  {
    check: 'privileges',
    what: 'root or CAP_NET_ADMIN + CAP_NET_RAW',
    code: 'WEDGE_ERR_PRIVILEGE',
    run() {
      const { netAdmin, netRaw } = checkPrivileges();
      const missing = [...(netAdmin ? [] : ['CAP_NET_ADMIN']), ...(netRaw ? [] : ['CAP_NET_RAW'])];
      return missing.length === 0
        ? { ok: true, detail: 'CAP_NET_ADMIN and CAP_NET_RAW are effective' }
        : { ok: false, detail: `${missing.join(' and ')} missing`, fix: PRIVILEGE_FIX };
    },
  },
  {
    check: 'tcp-repair',
    what: 'TCP_REPAIR usable',
    code: 'WEDGE_ERR_PRIVILEGE',
    run() {
      const { repairProblem } = checkPrivileges();
      return repairProblem === null
        ? { ok: true, detail: 'TCP_REPAIR switched on for a test socket' }
        : { ok: false, detail: repairProblem, fix: TCP_REPAIR_FIX };
    },
  },
  {
    check: 'nft',
    what: '`nft` present and usable',
    code: 'WEDGE_ERR_PRIVILEGE',
    async run() {
      try {
        await run('nft', ['list', 'tables'], { timeout: TOOL_TIMEOUT_MS });
        return { ok: true, detail: '`nft list tables` succeeded' };
      } catch (err) {
        return { ok: false, detail: `\`nft list tables\` failed: ${firstLine(err)}`, fix: 'install nftables (apt-get install nftables) and run with CAP_NET_ADMIN' };
      }
    },
  },
  {
    check: 'ip-nonlocal-bind',
    what: 'net.ipv4.ip_nonlocal_bind = 1 (address takeover)',
    code: 'WEDGE_ERR_CONFIG',
    applies: (target) => target.takeover === 'address',
    run() {
      const value = readFileSync('/proc/sys/net/ipv4/ip_nonlocal_bind', 'utf8').trim();
      return value === '1'
        ? { ok: true, detail: 'net.ipv4.ip_nonlocal_bind is 1' }
        : { ok: false, detail: `net.ipv4.ip_nonlocal_bind is ${value}`, fix: 'sysctl -w net.ipv4.ip_nonlocal_bind=1 (and set it in /etc/sysctl.d/ to keep it)' };
    },
  },
  {
    check: 'interface',
    what: 'the interface holding --address exists and is up',
    code: 'WEDGE_ERR_CONFIG',
    run(target, { cluster }) {
      const where = target.iface ? `interface ${target.iface}` : 'any interface';
      if (!cluster) return { ok: false, detail: `--address ${target.address} is not on ${where}`, fix: `add it (ip addr add ${target.address}/PREFIX dev IFACE) or correct --address${target.iface ? '/--iface' : ''}` };
      const up = cluster.flags.includes('UP') && cluster.operstate !== 'DOWN';
      return up
        ? { ok: true, detail: `${cluster.ifname} holds ${target.address} and is up` }
        : { ok: false, detail: `${cluster.ifname} holds ${target.address} but is down (${cluster.operstate})`, fix: `ip link set ${cluster.ifname} up (and check its cable or peer)` };
    },
  },
  {
    check: 'multicast-route',
    what: 'a multicast route for the support groups on the cluster interface',
    code: 'WEDGE_ERR_CONFIG',
    async run(target, { cluster }) {
      if (!cluster) return { ok: false, detail: 'not checked: no cluster interface', fix: 'see the interface check' };
      const routes = await multicastPrefixes(cluster.ifname);
      const { groups, baseGroup } = target.groups;
      const range = groups === 1 ? baseGroup : `${baseGroup}..${groupAddress(groups - 1, baseGroup)}`;
      const addresses = Array.from({ length: groups }, (_, bucket) => groupAddress(bucket, baseGroup));
      const uncovered = addresses.find((group) => !routes.some((route) => route.covers(group)));
      const covering = routes.filter((route) => addresses.some((group) => route.covers(group)));
      return uncovered === undefined
        ? { ok: true, detail: `${range} routed via ${cluster.ifname} (${covering.map((r) => r.text).join(', ')})` }
        : { ok: false, detail: `no route for ${uncovered} on ${cluster.ifname}`, fix: `ip route add 224.0.0.0/4 dev ${cluster.ifname}` };
    },
  },
];

/** Runs every check that applies to `target`, each once; never throws for a failed check. */
export async function runChecks(target: PreflightTarget): Promise<CheckResult[]> {
  const host = await inspectHost(target);
  const results: CheckResult[] = [];
  for (const { check, what, code, applies, run: inspect } of CHECKS) {
    if (applies && !applies(target)) continue;
    let outcome: Outcome;
    try {
      outcome = await inspect(target, host);
    } catch (err) {
      outcome = { ok: false, detail: `could not check: ${firstLine(err)}`, fix: 'see the detail' };
    }
    results.push({ check, what, code, ...outcome });
  }
  return results;
}

/** One result as a human line: `[+] VERIFIED ...` or `[!] CHECK FAILED ... Fix: ...`. */
export function formatCheck(result: CheckResult): string {
  return result.ok
    ? `[+] VERIFIED ${result.what}: ${result.detail}`
    : `[!] CHECK FAILED ${result.what}: ${result.detail}. Fix: ${result.fix ?? 'see the detail'}`;
}

/** The error the failed checks stop start-up with (the first failure's code), or undefined if all passed. */
export function checksError(results: readonly CheckResult[]): WedgeError | undefined {
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return undefined;
  return new WedgeError(failed[0]!.code, `start-up checks failed: ${failed.map((r) => `${r.what}: ${r.detail} (fix: ${r.fix ?? 'see the detail'})`).join('; ')}`);
}

/** The daemon's start-up: runs the checks, logs each (structured, and a human line on stderr), throws on a failure. */
export async function preflight(target: PreflightTarget, logger: Logger): Promise<void> {
  const results = await runChecks(target);
  for (const result of results) {
    const { check, ok, detail, fix } = result;
    if (ok) logger.info({ check, verified: true, detail }, formatCheck(result));
    else logger.error({ check, verified: false, detail, fix }, formatCheck(result));
    process.stderr.write(formatCheck(result) + '\n');
  }
  logger.flush();
  const error = checksError(results);
  if (error) throw error;
}

async function inspectHost(target: PreflightTarget): Promise<Host> {
  const { stdout } = await run('ip', ['-4', '-j', 'addr', 'show'], { timeout: TOOL_TIMEOUT_MS });
  const cluster = (JSON.parse(stdout) as IpInterface[]).find((i) => (!target.iface || i.ifname === target.iface) && i.addr_info.some((a) => a.local === target.address));
  return cluster ? { cluster } : {};
}

/* Routes on `ifname` narrower than a default route (at least /4: 224.0.0.0/4, a group's /32). */
async function multicastPrefixes(ifname: string): Promise<{ text: string; covers(address: string): boolean }[]> {
  const { stdout } = await run('ip', ['-4', '-j', 'route', 'show', 'table', 'all', 'dev', ifname], { timeout: TOOL_TIMEOUT_MS });
  return (JSON.parse(stdout) as { dst: string }[]).flatMap(({ dst }) => {
    const [network = '', length = '32'] = dst.split('/');
    if (!isIPv4(network) || Number(length) < 4) return [];
    const prefix = new BlockList();
    prefix.addSubnet(network, Number(length), 'ipv4');
    return [{ text: dst, covers: (address: string) => prefix.check(address, 'ipv4') }];
  });
}

function firstLine(err: unknown): string {
  const error = err as { stderr?: string; message?: string };
  return (error.stderr?.trim() || error.message || String(err)).split('\n')[0]!;
}
