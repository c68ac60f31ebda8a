/*
 * Soft state (issue 4): what the daemon imports. SoftStateMember is the whole service; the
 * rest is exported for tools (key loading at start-up, group arithmetic for status output) and
 * for tests.
 */
export {
  SoftStateMember,
  DEFAULT_ADVERT_INTERVAL_MS,
  DEFAULT_DEAD_AFTER_MS,
  DEFAULT_EXPIRE_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  type PeerInfo,
  type SoftStateMemberEvents,
  type SoftStateMemberOptions,
  type SoftStateMetrics,
} from './member.js';
export { DEFAULT_MAX_FRAGMENTS, DEFAULT_MTU, type Rejection } from './channel.js';
export { loadKeyRing, parseKeyMaterial, type KeyRing } from './crypto.js';
export {
  bucketOf,
  DEFAULT_BASE_GROUP,
  DEFAULT_GROUP_PORT,
  DEFAULT_GROUPS,
  groupAddress,
  supportGroupOf,
  validateGroupConfig,
  type GroupConfig,
  type SupportGroup,
} from './groups.js';
export { compareVersions } from './table.js';
export { heartbeatsHeard } from './listen.js';
export {
  connectionId,
  type ConnectionRecord,
  type DeathNotice,
  type Endpoint,
  type Heartbeat,
  type Load,
  type MigrateSecrets,
  type ServiceClaim,
  type TransportState,
} from './records.js';
