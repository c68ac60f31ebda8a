/*
 * SoftStateMember's options: what the daemon passes in, the defaults, and the settings they
 * resolve to, checked once (WEDGE_ERR_CONFIG) so no part has to re-check them.
 *
 * The checks are the assumptions the parts' bounds rest on:
 *  - heartbeat lease >= heartbeat interval: the main thread checks in once per interval, so a
 *    shorter lease would stop the sender thread's heartbeats under a healthy daemon;
 *  - dead-after > heartbeat interval: a peer whose heartbeats all arrive is never found silent
 *    (the defaults tolerate three lost in a row, see liveness.ts);
 *  - expiry > advert interval: a record whose periodic rounds all arrive does not expire
 *    between two of them, give or take their ±10% jitter (the defaults tolerate two lost
 *    rounds in a row, see table.ts).
 */
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import { DEFAULT_MAX_FRAGMENTS, DEFAULT_MTU } from './channel.js';
import type { KeyRing } from './crypto.js';
import { DEFAULT_BASE_GROUP, DEFAULT_GROUP_PORT, DEFAULT_GROUPS, supportGroupOf, validateGroupConfig, type GroupConfig, type SupportGroup } from './groups.js';
import { isAddress } from './records.js';

export const DEFAULT_ADVERT_INTERVAL_MS = 3000;
export const DEFAULT_EXPIRE_MS = 10_000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;
export const DEFAULT_DEAD_AFTER_MS = 400;
/* Longer than any stall seen under load (a few hundred ms), far shorter than a hung daemon. */
export const DEFAULT_HEARTBEAT_LEASE_MS = 1000;

export interface SoftStateMemberOptions {
  /* This server's address: its sender id, its records' owner, the input of its group hash. */
  self: string;
  /* Local address of the cluster-network interface (default: self). */
  interfaceAddress?: string;
  keyRing: KeyRing;
  groups?: number;
  baseGroup?: string;
  port?: number;
  advertIntervalMs?: number;
  expireMs?: number;
  heartbeatIntervalMs?: number;
  deadAfterMs?: number;
  /* Heartbeats continue this long after the main thread last checked in. */
  heartbeatLeaseMs?: number;
  /* UDP payload budget per datagram. */
  mtu?: number;
  maxFragments?: number;
  /* Receive our own multicast (single-host setups); own datagrams are dropped by sender id. */
  loopback?: boolean;
  /* Fixed epoch (tests; an in-place upgrade carries its predecessor's on); default: boot time. */
  epoch?: bigint;
  /* With `epoch`: the predecessor's last sequence number (in-place upgrade). */
  lastSeq?: number;
  logger?: Pick<Logger, 'debug' | 'info' | 'warn'>;
}

/* Every option resolved; `group` is the support group of `self`. */
export interface MemberSettings {
  self: string;
  interfaceAddress: string;
  groupConfig: GroupConfig;
  group: SupportGroup;
  advertIntervalMs: number;
  expireMs: number;
  heartbeatIntervalMs: number;
  deadAfterMs: number;
  heartbeatLeaseMs: number;
  mtu: number;
  maxFragments: number;
  loopback: boolean;
}

export function memberSettings(options: SoftStateMemberOptions): MemberSettings {
  if (!isAddress(options.self)) throw new WedgeError('WEDGE_ERR_CONFIG', `invalid soft-state self address ${JSON.stringify(options.self)}`);
  const groupConfig = validateGroupConfig({
    groups: options.groups ?? DEFAULT_GROUPS,
    baseGroup: options.baseGroup ?? DEFAULT_BASE_GROUP,
    port: options.port ?? DEFAULT_GROUP_PORT,
  });
  const settings: MemberSettings = {
    self: options.self,
    interfaceAddress: options.interfaceAddress ?? options.self,
    groupConfig,
    group: supportGroupOf(options.self, groupConfig),
    advertIntervalMs: options.advertIntervalMs ?? DEFAULT_ADVERT_INTERVAL_MS,
    expireMs: options.expireMs ?? DEFAULT_EXPIRE_MS,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    deadAfterMs: options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS,
    heartbeatLeaseMs: options.heartbeatLeaseMs ?? DEFAULT_HEARTBEAT_LEASE_MS,
    mtu: options.mtu ?? DEFAULT_MTU,
    maxFragments: options.maxFragments ?? DEFAULT_MAX_FRAGMENTS,
    loopback: options.loopback ?? false,
  };
  const { heartbeatLeaseMs, heartbeatIntervalMs, deadAfterMs, expireMs, advertIntervalMs } = settings;
  if (heartbeatLeaseMs < heartbeatIntervalMs) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `heartbeat lease (${heartbeatLeaseMs} ms) must be at least the heartbeat interval (${heartbeatIntervalMs} ms)`);
  }
  if (deadAfterMs <= heartbeatIntervalMs) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `dead-after (${deadAfterMs} ms) must exceed the heartbeat interval (${heartbeatIntervalMs} ms)`);
  }
  if (expireMs <= advertIntervalMs) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `soft-state expiry (${expireMs} ms) must exceed the advert interval (${advertIntervalMs} ms)`);
  }
  return settings;
}
