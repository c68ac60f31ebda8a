/*
 * Network-namespace plumbing for the lab, all through `ip` (iproute2) and `sysctl` with argument
 * arrays. Veth pairs are created from inside the switch namespace with their peer placed straight
 * into the host namespace, so nothing ever appears in the root namespace and labs running in
 * parallel cannot collide on interface names.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WedgeError } from '../errors/codes.js';
import { run, runIn, tryRun } from './run.js';

export async function listNamespaces(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

export async function addNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

export async function deleteNamespace(ns: string): Promise<void> {
  await tryRun('ip', ['netns', 'del', ns]);
}

/** PIDs of every process whose network namespace is `ns` (empty if the namespace is gone). */
export async function namespacePids(ns: string): Promise<number[]> {
  const result = await tryRun('ip', ['netns', 'pids', ns]);
  if (result === null) return [];
  return result.stdout
    .split('\n')
    .map((line) => Number.parseInt(line.trim(), 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Ends every process in the namespace. With a grace period, SIGTERM first and SIGKILL for what is
 * left when it runs out; without one, SIGKILL at once (a power loss). Repeats until the namespace
 * is empty, because a process may fork while we kill. Returns the PIDs that were signalled.
 */
export async function killNamespaceProcesses(ns: string, graceMs = 0, deadlineMs = 10_000): Promise<number[]> {
  const signalled = new Set<number>();
  const start = Date.now();
  let pids = await namespacePids(ns);
  if (graceMs > 0 && pids.length > 0) {
    for (const pid of pids) {
      signal(pid, 'SIGTERM');
      signalled.add(pid);
    }
    while (pids.length > 0 && Date.now() - start < graceMs) {
      await sleep(50);
      pids = await namespacePids(ns);
    }
  }
  while (pids.length > 0) {
    for (const pid of pids) {
      signal(pid, 'SIGKILL');
      signalled.add(pid);
    }
    if (Date.now() - start > deadlineMs) {
      throw new WedgeError('WEDGE_ERR_LAB', `processes ${pids.join(', ')} in namespace ${ns} survive SIGKILL`);
    }
    await sleep(20);
    pids = await namespacePids(ns);
  }
  return [...signalled];
}

export async function addBridge(ns: string, bridge: string): Promise<void> {
  // Snooping off: with no IGMP querier on the segment, group membership learned by the bridge
  // would age out and multicast soft state between servers would stop flowing.
  await run('ip', ['-n', ns, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0']);
  await run('ip', ['-n', ns, 'link', 'set', bridge, 'up']);
}

/** A veth pair from the switch's bridge (`port`) to a host namespace (`hostIface`). */
export async function plugHost(switchNs: string, bridge: string, port: string, hostNs: string, hostIface: string): Promise<void> {
  await run('ip', ['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', hostIface, 'netns', hostNs]);
  await run('ip', ['-n', switchNs, 'link', 'set', port, 'master', bridge]);
  await run('ip', ['-n', switchNs, 'link', 'set', port, 'up']);
  await run('ip', ['-n', hostNs, 'link', 'set', hostIface, 'up']);
}

/** A veth pair between two namespaces (`aIface` in `aNs`, `bIface` in `bNs`), both ends up. */
export async function addVethPair(aNs: string, aIface: string, bNs: string, bIface: string): Promise<void> {
  await run('ip', ['-n', aNs, 'link', 'add', aIface, 'type', 'veth', 'peer', 'name', bIface, 'netns', bNs]);
  await run('ip', ['-n', aNs, 'link', 'set', aIface, 'up']);
  await run('ip', ['-n', bNs, 'link', 'set', bIface, 'up']);
}

export async function addDefaultRoute(ns: string, via: string, iface: string): Promise<void> {
  await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', via, 'dev', iface]);
}

export async function addAddress(ns: string, iface: string, cidr: string): Promise<void> {
  await run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', iface]);
}

export async function addRoute(ns: string, prefix: string, iface: string): Promise<void> {
  await run('ip', ['-n', ns, 'route', 'add', prefix, 'dev', iface]);
}

export async function setLinkDown(ns: string, iface: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'set', iface, 'down']);
}

export async function setLinkUp(ns: string, iface: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'set', iface, 'up']);
}

export async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await runIn(ns, 'sysctl', ['-qw', `${key}=${value}`]);
}
