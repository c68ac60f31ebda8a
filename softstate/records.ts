/*
 * Soft-state records: the plain data a wedge multicasts to its support group.
 *
 * A ConnectionRecord describes one live client connection well enough for another member to
 * take it over: the 4-tuple, the owner, the migration number, the TCP state dumped by the native
 * helper, the TCP Migrate secrets, and the stream map (opaque here: stream-map/ and replication/records.ts own its shape).
 * Heartbeats carry a member's load; death notices carry an operator's (or monitor's) report
 * that a peer is dead.
 *
 * Everything that arrives from the network passes through the `parse*` functions below. They
 * are total: any decoded value yields either a well-formed object (fresh, holding no
 * references into the input apart from the opaque stream map) or `undefined`.
 */

export interface Endpoint {
  address: string;
  port: number;
}

/* TCP state read from the serving socket (TCP_REPAIR dump + TCP_INFO); see native/. */
export interface TransportState {
  sendSeq: number;
  recvSeq: number;
  mss: number;
  sndWscale: number;
  rcvWscale: number;
  sack: boolean;
  timestamps: boolean;
  /* The server's advertised TCP timestamp clock when it was read, and when (ms, wall clock). */
  tsClock: number;
  tsReadAt: number;
  sndWnd: number;
  rcvWnd: number;
}

export interface MigrateSecrets {
  token: Buffer;
  key: Buffer;
  /* The server endpoint the client's socket was opened to. After a TCP Migrate the connection
   * lives at `service` and the client's agent rewrites between the two; this one still names it. */
  original: Endpoint;
}

export interface ConnectionRecord {
  /* connectionId(client, migrate?.original ?? service): the connection as the client's socket sees it. */
  id: string;
  client: Endpoint;
  service: Endpoint;
  /* Address of the server serving the connection now. */
  owner: string;
  /* Bumped by every takeover; the highest number names the one legitimate owner. */
  migration: number;
  transport: TransportState;
  migrate?: MigrateSecrets;
  /* JSON form of the parsers' StreamMap, carried as opaque data. */
  streamMap: unknown;
  /* Owner's wall clock (ms) at the last change. */
  updatedAt: number;
  /* The owner, alive, asks its group to take the connection over (load shedding, or the client
   * asked to move): members race for it as if the owner were dead (TCP Migrate only). */
  handoff?: boolean;
}

export interface Load {
  connections: number;
  bytesPerSec: number;
  cpu?: number;
}

/*
 * A service address a server answers for, and how it came to: generation 0 is its own address,
 * n + 1 an adoption from a holder at generation n. When two live servers claim one address (one
 * was wrongly found dead), the higher generation (the newer adoption, which took the
 * connections) keeps it.
 */
export interface ServiceClaim {
  address: string;
  generation: number;
}

export interface Heartbeat {
  sender: string;
  /* The sender's epoch as 16 hex digits (the same value as in the datagram header). */
  epoch: string;
  load: Load;
  /* Service addresses the sender answers for now (its own and adopted ones), so that a dead
   * server's addresses are adopted even when it had no live connection. */
  services?: ServiceClaim[];
}

export interface DeathNotice {
  /* Who reports the death. */
  declarer: string;
  /* Who is reported dead. */
  peer: string;
  reason: string;
  /* The declarer's last authentic word from the peer, if any: a heartbeat newer than this
   * proves the peer alive again. */
  peerEpoch?: string;
  peerSeq?: number;
  /* Declarer's wall clock (ms). */
  at: number;
}

/* Withdrawal of a record by its owner (connection closed). Receivers drop their copy only if
 * it is not newer than this. */
export interface Withdrawal {
  id: string;
  owner: string;
  migration: number;
}

export const MAX_ADDRESS_LENGTH = 64;
export const MAX_REASON_LENGTH = 200;
export const MAX_SERVICES = 32;
const MAX_SECRET_LENGTH = 256;

export function connectionId(client: Endpoint, service: Endpoint): string {
  return `${client.address}:${client.port}>${service.address}:${service.port}`;
}

export function isAddress(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= MAX_ADDRESS_LENGTH &&
    /^[\x21-\x7e]+$/.test(value)
  );
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535;
}

function isUint(value: unknown, max = Number.MAX_SAFE_INTEGER): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= max;
}

function isFiniteNonNegative(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isBytes(value: unknown, maxLength: number): value is Uint8Array {
  return value instanceof Uint8Array && value.length <= maxLength;
}

function isEpochHex(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{16}$/.test(value);
}

const UINT32 = 0xffff_ffff;

export function parseTransport(value: unknown): TransportState | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const t = value as Record<string, unknown>;
  if (
    !isUint(t.sendSeq, UINT32) ||
    !isUint(t.recvSeq, UINT32) ||
    !isUint(t.mss, 65535) ||
    !isUint(t.sndWscale, 14) ||
    !isUint(t.rcvWscale, 14) ||
    typeof t.sack !== 'boolean' ||
    typeof t.timestamps !== 'boolean' ||
    !isUint(t.tsClock, UINT32) ||
    !isFiniteNonNegative(t.tsReadAt) ||
    !isUint(t.sndWnd, UINT32) ||
    !isUint(t.rcvWnd, UINT32)
  ) {
    return undefined;
  }
  return {
    sendSeq: t.sendSeq,
    recvSeq: t.recvSeq,
    mss: t.mss,
    sndWscale: t.sndWscale,
    rcvWscale: t.rcvWscale,
    sack: t.sack,
    timestamps: t.timestamps,
    tsClock: t.tsClock,
    tsReadAt: t.tsReadAt,
    sndWnd: t.sndWnd,
    rcvWnd: t.rcvWnd,
  };
}

function parseEndpoint(value: unknown): Endpoint | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const e = value as Record<string, unknown>;
  if (!isAddress(e.address) || !isPort(e.port)) return undefined;
  return { address: e.address, port: e.port };
}

/* Validates a record (from the wire or from the daemon) and returns a fresh copy whose id is
 * recomputed from the 4-tuple, so an id can never disagree with the endpoints it names. */
export function parseConnectionRecord(value: unknown): ConnectionRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  const client = parseEndpoint(r.client);
  const service = parseEndpoint(r.service);
  const transport = parseTransport(r.transport);
  if (!client || !service || !transport) return undefined;
  if (!isAddress(r.owner) || !isUint(r.migration) || !isFiniteNonNegative(r.updatedAt)) return undefined;
  let migrate: MigrateSecrets | undefined;
  if (r.migrate !== undefined && r.migrate !== null) {
    const m = r.migrate as Record<string, unknown>;
    const original = typeof m === 'object' ? parseEndpoint(m.original) : undefined;
    if (!original || !isBytes(m.token, MAX_SECRET_LENGTH) || !isBytes(m.key, MAX_SECRET_LENGTH)) return undefined;
    migrate = { token: Buffer.from(m.token), key: Buffer.from(m.key), original };
  }
  const id = connectionId(client, migrate?.original ?? service);
  if (r.id !== undefined && r.id !== id) return undefined;
  const record: ConnectionRecord = {
    id,
    client,
    service,
    owner: r.owner,
    migration: r.migration,
    transport,
    streamMap: r.streamMap ?? null,
    updatedAt: r.updatedAt,
  };
  if (migrate) record.migrate = migrate;
  if (r.handoff === true) record.handoff = true;
  return record;
}

export function parseLoad(value: unknown): Load | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const l = value as Record<string, unknown>;
  if (!isUint(l.connections) || !isFiniteNonNegative(l.bytesPerSec)) return undefined;
  const load: Load = { connections: l.connections, bytesPerSec: l.bytesPerSec };
  if (l.cpu !== undefined && l.cpu !== null) {
    if (!isFiniteNonNegative(l.cpu)) return undefined;
    load.cpu = l.cpu;
  }
  return load;
}

export function parseHeartbeat(value: unknown): Heartbeat | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const h = value as Record<string, unknown>;
  const load = parseLoad(h.load);
  if (!isAddress(h.sender) || !isEpochHex(h.epoch) || !load) return undefined;
  const services = h.services;
  if (!Array.isArray(services) || services.length > MAX_SERVICES) return undefined;
  const claims: ServiceClaim[] = [];
  for (const claim of services as unknown[]) {
    const c = claim as Partial<ServiceClaim> | null;
    if (typeof c !== 'object' || c === null || !isAddress(c.address) || !isUint(c.generation)) return undefined;
    claims.push({ address: c.address, generation: c.generation });
  }
  return { sender: h.sender, epoch: h.epoch, load, services: claims };
}

export function parseDeathNotice(value: unknown): DeathNotice | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const d = value as Record<string, unknown>;
  if (!isAddress(d.declarer) || !isAddress(d.peer) || !isFiniteNonNegative(d.at)) return undefined;
  if (typeof d.reason !== 'string' || d.reason.length > MAX_REASON_LENGTH) return undefined;
  const notice: DeathNotice = { declarer: d.declarer, peer: d.peer, reason: d.reason, at: d.at };
  const hasEpoch = d.peerEpoch !== undefined && d.peerEpoch !== null;
  const hasSeq = d.peerSeq !== undefined && d.peerSeq !== null;
  if (hasEpoch !== hasSeq) return undefined;
  if (hasEpoch) {
    if (!isEpochHex(d.peerEpoch) || !isUint(d.peerSeq)) return undefined;
    notice.peerEpoch = d.peerEpoch;
    notice.peerSeq = d.peerSeq;
  }
  return notice;
}

export function parseWithdrawal(value: unknown): Withdrawal | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const w = value as Record<string, unknown>;
  if (typeof w.id !== 'string' || w.id.length > 4 * MAX_ADDRESS_LENGTH) return undefined;
  if (!isAddress(w.owner) || !isUint(w.migration)) return undefined;
  return { id: w.id, owner: w.owner, migration: w.migration };
}
