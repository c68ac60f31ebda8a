import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WedgeError } from '../errors/codes.js';
import { addon } from './addon.js';

/* Moving a service address between replicas: add/remove with iproute2 (asynchronous: the event
 * loop never waits), announce with a gratuitous ARP (native/src/addr.cc). */

const run = promisify(execFile);

async function ip(args: string[], alreadyDone: RegExp): Promise<void> {
  try {
    await run('ip', args);
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '');
    if (alreadyDone.test(stderr)) return;
    throw new WedgeError('WEDGE_ERR_ADDRESS', `ip ${args.join(' ')}: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

/** Adds `cidr` (e.g. '10.0.0.100/24') to `ifname`; succeeds if it is already there. */
export function addAddress(ifname: string, cidr: string): Promise<void> {
  return ip(['addr', 'add', cidr, 'dev', ifname], /File exists|Address already assigned/);
}

/** Removes `cidr` from `ifname`; succeeds if it is not there. */
export function removeAddress(ifname: string, cidr: string): Promise<void> {
  return ip(['addr', 'del', cidr, 'dev', ifname], /Cannot assign requested address/);
}

/** Broadcasts an ARP announcement and reply: `ipv4` is now at `ifname`'s MAC. */
export function gratuitousArp(ifname: string, ipv4: string): void {
  addon.gratuitousArp(ifname, ipv4);
}
