/*
 * Support groups. A server's group is a well-known function of its own address, so servers
 * join and leave with no configuration beyond the cluster-wide `groups`, `baseGroup` and
 * `port`: every member computes every other member's group alike.
 *
 *   bucket  = (first 4 bytes of SHA-256 of the textual address, big-endian) mod groups
 *   address = baseGroup + bucket   (IPv4 arithmetic, e.g. 239.77.0.1, 239.77.0.2, ...)
 *
 * The default base lies in 239.0.0.0/8 (administratively scoped, RFC 2365): with TTL 1 the
 * datagrams never leave the L2 segment anyway.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { WedgeError } from '../errors/codes.js';

export const DEFAULT_GROUPS = 1;
export const DEFAULT_BASE_GROUP = '239.77.0.1';
export const DEFAULT_GROUP_PORT = 7077;

export interface GroupConfig {
  groups: number;
  baseGroup: string;
  port: number;
}

export interface SupportGroup {
  bucket: number;
  address: string;
  port: number;
}

export const DEFAULT_GROUP_CONFIG: GroupConfig = { groups: DEFAULT_GROUPS, baseGroup: DEFAULT_BASE_GROUP, port: DEFAULT_GROUP_PORT };

function ipv4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function intToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

const MULTICAST_FIRST = ipv4ToInt('224.0.0.0');
const MULTICAST_LAST = ipv4ToInt('239.255.255.255');

/* Throws WedgeError(WEDGE_ERR_CONFIG) unless every group address lies in 224.0.0.0/4. */
export function validateGroupConfig(config: GroupConfig): GroupConfig {
  if (!Number.isInteger(config.groups) || config.groups < 1 || config.groups > 65536) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--groups must be an integer in 1..65536, got ${config.groups}`);
  }
  if (!Number.isInteger(config.port) || config.port < 1 || config.port > 65535) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `soft-state port must be in 1..65535, got ${config.port}`);
  }
  if (!isIPv4(config.baseGroup)) throw new WedgeError('WEDGE_ERR_CONFIG', `base group ${config.baseGroup} is not an IPv4 address`);
  const first = ipv4ToInt(config.baseGroup);
  if (first < MULTICAST_FIRST || first + config.groups - 1 > MULTICAST_LAST) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `groups ${config.baseGroup} + 0..${config.groups - 1} leave 224.0.0.0/4`);
  }
  return config;
}

export function bucketOf(address: string, groups: number): number {
  return createHash('sha256').update(address).digest().readUInt32BE(0) % groups;
}

export function groupAddress(bucket: number, baseGroup = DEFAULT_BASE_GROUP): string {
  return intToIpv4(ipv4ToInt(baseGroup) + bucket);
}

/* The support group a server with this address belongs to (and advertises to). */
export function supportGroupOf(address: string, config: GroupConfig = DEFAULT_GROUP_CONFIG): SupportGroup {
  const bucket = bucketOf(address, config.groups);
  return { bucket, address: groupAddress(bucket, config.baseGroup), port: config.port };
}

const MAX_REMEMBERED = 4096;

/* Whether an address belongs to one group: asked for every datagram received, and the group
 * hash is a SHA-256, so the answer is remembered per address (callers ask for authenticated
 * senders only, so the cache stays as small as the cluster). */
export class GroupMembership {
  private readonly config: GroupConfig;
  private readonly bucket: number;
  private readonly known = new Map<string, boolean>();

  constructor(config: GroupConfig, group: SupportGroup) {
    this.config = config;
    this.bucket = group.bucket;
  }

  has(address: string): boolean {
    let member = this.known.get(address);
    if (member === undefined) {
      if (this.known.size >= MAX_REMEMBERED) this.known.clear();
      member = supportGroupOf(address, this.config).bucket === this.bucket;
      this.known.set(address, member);
    }
    return member;
  }
}
