/*
 * The lab's naming and addressing plan, computed from the lab name and the server count alone,
 * so every subcommand (each its own process) derives the same names.
 *
 * Namespaces: `wl_<lab>_sw` (the switch: a bridge), `wl_<lab>_client`, `wl_<lab>_s1`... The lab
 * name may not contain `_`, so one lab's prefix `wl_<lab>_` never matches another lab's
 * namespaces and `lab down` can clean a half-built lab by prefix. Interfaces are created
 * directly inside their namespaces (never in the root namespace), so their names only need to
 * be unique per namespace: `eth0` in every host, `p-<host>` on the switch side, `br0` for the
 * bridge; all well under the 15-character limit.
 *
 * Addresses (one /24, the same in every lab: each lab's segment is isolated in its own switch):
 * client 10.77.0.10, server sN 10.77.0.(10+N), its service address (VIP) 10.77.0.(100+N).
 *
 * With --subnets a router namespace `wl_<lab>_rt` (host name `router`) joins: the client sits on
 * 10.78.0.0/24 (client 10.78.0.10, router 10.78.0.1) and server sN on its own 10.78.N.0/24
 * (service address 10.78.N.10 on the server's `eth1`, router 10.78.N.1), each a veth pair
 * `eth0`/`eth1` in the host and `r-<host>` in the router. Servers keep `eth0` on the switch as the
 * cluster backplane (10.77.0.(10+N), multicast soft state); the client is not on it.
 */
import { WedgeError } from '../errors/codes.js';

export const MAX_SERVERS = 50;
export const SUBNET_PREFIX = '10.77.0.';
export const PREFIX_LEN = 24;
export const HOST_IFACE = 'eth0';
export const BRIDGE = 'br0';
export const ORIGIN_PORT = 8080;
export const SERVICE_PORT = 80;
export const ADMIN_PORT = 9090;
/* The wedge's state listener, for an --origin-cmd origin's snapshots. */
export const STATE_PORT = 9092;
export const CLIENT_HOST = 'client';
export const ROUTER_HOST = 'router';
/** The server's link towards the router in subnets mode (eth0 stays the backplane). */
export const SERVICE_IFACE = 'eth1';
export const SUBNETS_PREFIX = '10.78.';
export const AGENT_METRICS = '127.0.0.1:9191';

const LAB_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,39}$/;

export function validateLabName(name: string): string {
  if (!LAB_NAME.test(name)) {
    throw new WedgeError(
      'WEDGE_ERR_CONFIG',
      `lab name "${name}" must be 1-40 characters of letters, digits and "-", starting with a letter or digit`,
    );
  }
  return name;
}

/** The lab name from --lab, else $WEDGE_LAB, else "wedge". */
export function resolveLabName(option: string | undefined): string {
  return validateLabName(option ?? process.env.WEDGE_LAB ?? 'wedge');
}

export function nsPrefix(lab: string): string {
  return `wl_${lab}_`;
}

export function nsName(lab: string, host: string): string {
  return nsPrefix(lab) + host;
}

export function switchNs(lab: string): string {
  return nsName(lab, 'sw');
}

export function serverName(index: number): string {
  return `s${index}`;
}

export function clientAddress(): string {
  return SUBNET_PREFIX + '10';
}

export function serverAddress(index: number): string {
  return SUBNET_PREFIX + String(10 + index);
}

export function serviceAddress(index: number): string {
  return SUBNET_PREFIX + String(100 + index);
}

/** The switch-side name of a host's veth pair. */
export function switchPort(host: string): string {
  return `p-${host}`;
}

export function routerNs(lab: string): string {
  return nsName(lab, 'rt');
}

/** The router-side name of a host's veth pair (subnets mode). */
export function routerPort(host: string): string {
  return `r-${host}`;
}

/** Subnet number of a host in subnets mode: 0 for the client, N for server sN. */
function subnetOf(index: number): string {
  return `${SUBNETS_PREFIX}${index}.`;
}

/** The client's address in subnets mode. */
export function subnetClientAddress(): string {
  return subnetOf(0) + '10';
}

/** Server sN's service address in subnets mode (its own subnet, nothing shared). */
export function subnetServerAddress(index: number): string {
  return subnetOf(index) + '10';
}

/** The router's address on subnet `index` (0: the client's, N: server sN's); the hosts' gateway. */
export function subnetRouterAddress(index: number): string {
  return subnetOf(index) + '1';
}
