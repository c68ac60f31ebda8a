import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { WedgeError } from '../errors/codes.js';

/*
 * Theory of operation: the TCP Migrate option carried by a Migrate SYN.
 *
 * A candidate server that wants to take over a client's connection sends the client host a SYN
 * from its own address (draft-snoeren-tcp-migrate-00). The client's Wedge agent must tell a
 * genuine request from a forgery or a replay without any state but the per-connection key and
 * token agreed at connection start (migrate/negotiation.ts). The option is an RFC 6994
 * experimental option (kind 253) so it never collides with another experiment.
 *
 * Exact byte layout (32 bytes, all integers big-endian):
 *
 *   offset  size  field
 *        0     1  kind     = 253 (RFC 4727/6994 experimental)
 *        1     1  length   = 32
 *        2     2  ExID     = 0x5745 ("WE"). A 16-bit ExID chosen for Wedge; it is not
 *                          registered with IANA, so it is for experiments between cooperating
 *                          hosts only (RFC 6994 section 3: receivers ignore unknown ExIDs).
 *        4     8  token    connection token: names the connection without revealing its
 *                          addresses (the SYN comes from the new server, not the old one)
 *       12     4  request  migration request number; the agent accepts a request number at
 *                          most once, and only above the last accepted one
 *       16    16  MAC      first 16 bytes of HMAC-SHA256(connection key, MAC input below)
 *
 * MAC input (fixed 60 bytes): the ASCII label "wedge-migrate-syn-v1" (20 bytes, domain
 * separation from any other use of the key), ExID (2), client address (4) and port (2), old
 * server address (4) and port (2), new server address (4) and port (2), token (8), request
 * number (4), the SYN's sequence number (4), and the SYN's acknowledgment field (4). Following
 * the draft, the SYN carries the last acknowledged sequence: its acknowledgment field (with the
 * ACK flag clear) holds the new server's view of the client's next byte, and its sequence
 * number the server's send sequence. Binding both means a captured SYN cannot be replayed with
 * other sequence numbers, and binding every address means it cannot be redirected to another
 * client, taken from another old server, or claimed by a server other than the one it names.
 * 16 MAC bytes (128 bits) keep forgery hopeless for an attacker who gets one try per SYN.
 *
 * Option budget (40 bytes): Migrate (32) + MSS (4) = 36, a multiple of 4, so no padding.
 * Dropped on purpose: window scale, SACK-permitted and timestamps. They are properties of the
 * connection, agreed at the original handshake and carried to the new server in soft state; the
 * client's unmodified socket never sees the Migrate SYN (the agent consumes it), so it could not
 * renegotiate them anyway. MSS stays because the path to the new server may differ.
 * The Migrate option is always the FIRST option: the agent's kernel capture filter (native
 * migrate.cc) tests only the first option's kind and ExID; the full parse here is authoritative.
 *
 * IPv4 only, like the rest of the native layer.
 */

export const MIGRATE_OPTION_KIND = 253;
export const MIGRATE_EXID = 0x5745;
export const MIGRATE_OPTION_LENGTH = 32;
export const MIGRATE_TOKEN_LENGTH = 8;
export const MIGRATE_MAC_LENGTH = 16;
/** TCP option kinds used in the Migrate SYN besides ours. */
const TCPOPT_EOL = 0;
const TCPOPT_NOP = 1;
const TCPOPT_MSS = 2;
const MAX_OPTION_BYTES = 40;
const MAC_LABEL = Buffer.from('wedge-migrate-syn-v1', 'ascii');

export interface Endpoint {
  address: string;
  port: number;
}

/** Everything the MAC binds besides token and request number. */
export interface MigrateSegmentFields {
  client: Endpoint;
  oldServer: Endpoint;
  newServer: Endpoint;
  /** The SYN's sequence number. */
  seq: number;
  /** The SYN's acknowledgment field: the last client byte the new server acknowledges. */
  ack: number;
}

export interface MigrateOption {
  token: Buffer;
  request: number;
  mac: Buffer;
}

export type OptionRejection = 'absent' | 'truncated' | 'bad-length' | 'malformed-options';

export type DecodedOption = { ok: true; option: MigrateOption } | { ok: false; reason: OptionRejection };

function putEndpoint(out: Buffer, at: number, endpoint: Endpoint, role: string): number {
  if (!isIPv4(endpoint.address)) throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `${role} address ${endpoint.address} is not IPv4`);
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 0xffff) {
    throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `${role} port ${endpoint.port} out of range`);
  }
  for (const part of endpoint.address.split('.')) out[at++] = Number(part);
  out.writeUInt16BE(endpoint.port, at);
  return at + 2;
}

function checkToken(token: Buffer): void {
  if (token.length !== MIGRATE_TOKEN_LENGTH) {
    throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `token must be ${MIGRATE_TOKEN_LENGTH} bytes, got ${token.length}`);
  }
}

function checkUint32(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `${name} ${value} is not a 32-bit unsigned integer`);
  }
}

/** The 16-byte MAC of a Migrate SYN (layout in the header comment). */
export function migrateMac(key: Buffer, fields: MigrateSegmentFields, token: Buffer, request: number): Buffer {
  checkToken(token);
  checkUint32(request, 'request number');
  checkUint32(fields.seq, 'sequence number');
  checkUint32(fields.ack, 'acknowledgment number');
  const input = Buffer.alloc(MAC_LABEL.length + 2 + 3 * 6 + MIGRATE_TOKEN_LENGTH + 12);
  let at = MAC_LABEL.copy(input, 0);
  at = input.writeUInt16BE(MIGRATE_EXID, at);
  at = putEndpoint(input, at, fields.client, 'client');
  at = putEndpoint(input, at, fields.oldServer, 'old server');
  at = putEndpoint(input, at, fields.newServer, 'new server');
  at += token.copy(input, at);
  at = input.writeUInt32BE(request, at);
  at = input.writeUInt32BE(fields.seq, at);
  input.writeUInt32BE(fields.ack, at);
  return createHmac('sha256', key).update(input).digest().subarray(0, MIGRATE_MAC_LENGTH);
}

/** The 32 option bytes for a Migrate SYN described by `fields`. */
export function encodeMigrateOption(key: Buffer, fields: MigrateSegmentFields, token: Buffer, request: number): Buffer {
  const mac = migrateMac(key, fields, token, request);
  const out = Buffer.alloc(MIGRATE_OPTION_LENGTH);
  out[0] = MIGRATE_OPTION_KIND;
  out[1] = MIGRATE_OPTION_LENGTH;
  out.writeUInt16BE(MIGRATE_EXID, 2);
  token.copy(out, 4);
  out.writeUInt32BE(request, 12);
  mac.copy(out, 16);
  return out;
}

/*
 * An invitation: a Migrate SYN with the all-zero token, request 0 and no MAC. A replica sends it
 * to the client of a connection it must adopt but whose key never reached the group (its server
 * died during the key exchange). It moves nothing: the agent only runs the key exchange of that
 * connection once more, with the invitation's sender (one HELLO per invitation); the exchange's
 * signature is what proves the sender a replica, and only then can it send a real Migrate SYN.
 */
export const INVITATION_TOKEN = Buffer.alloc(MIGRATE_TOKEN_LENGTH);

export function invitationOption(): Buffer {
  const out = Buffer.alloc(MIGRATE_OPTION_LENGTH);
  out[0] = MIGRATE_OPTION_KIND;
  out[1] = MIGRATE_OPTION_LENGTH;
  out.writeUInt16BE(MIGRATE_EXID, 2);
  return out;
}

export function isInvitation(option: MigrateOption): boolean {
  return option.token.equals(INVITATION_TOKEN);
}

/** The whole option block of a Migrate SYN: our option first (see header), then MSS. */
export function migrateSynOptions(migrateOption: Buffer, mss: number): Buffer {
  if (migrateOption.length !== MIGRATE_OPTION_LENGTH) {
    throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `Migrate option must be ${MIGRATE_OPTION_LENGTH} bytes`);
  }
  if (!Number.isInteger(mss) || mss < 1 || mss > 0xffff) throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `MSS ${mss} out of range`);
  const mssOption = Buffer.from([TCPOPT_MSS, 4, mss >> 8, mss & 0xff]);
  return Buffer.concat([migrateOption, mssOption]);
}

/**
 * Finds and decodes our Migrate option in a TCP option block (the bytes after the 20-byte TCP
 * header). Never throws: the input comes from the network. Other kind-253 experiments (another
 * ExID) are skipped, as RFC 6994 asks.
 */
export function findMigrateOption(options: Buffer): DecodedOption {
  if (options.length > MAX_OPTION_BYTES) return { ok: false, reason: 'malformed-options' };
  let at = 0;
  while (at < options.length) {
    const kind = options[at]!;
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      at++;
      continue;
    }
    if (at + 1 >= options.length) return { ok: false, reason: 'malformed-options' };
    const length = options[at + 1]!;
    if (length < 2 || at + length > options.length) {
      const ours = kind === MIGRATE_OPTION_KIND && at + 4 <= options.length && options.readUInt16BE(at + 2) === MIGRATE_EXID;
      return { ok: false, reason: ours ? 'truncated' : 'malformed-options' };
    }
    if (kind === MIGRATE_OPTION_KIND && length >= 4 && options.readUInt16BE(at + 2) === MIGRATE_EXID) {
      return decodeMigrateOption(options.subarray(at, at + length));
    }
    at += length;
  }
  return { ok: false, reason: 'absent' };
}

/** Decodes exactly one Migrate option (kind, length, ExID, fields). Never throws. */
export function decodeMigrateOption(bytes: Buffer): DecodedOption {
  if (bytes.length < 4 || bytes[0] !== MIGRATE_OPTION_KIND || bytes.readUInt16BE(2) !== MIGRATE_EXID) {
    return { ok: false, reason: bytes.length < 4 ? 'truncated' : 'absent' };
  }
  if (bytes[1] !== MIGRATE_OPTION_LENGTH) return { ok: false, reason: 'bad-length' };
  if (bytes.length < MIGRATE_OPTION_LENGTH) return { ok: false, reason: 'truncated' };
  if (bytes.length > MIGRATE_OPTION_LENGTH) return { ok: false, reason: 'bad-length' };
  return {
    ok: true,
    option: {
      token: Buffer.from(bytes.subarray(4, 12)),
      request: bytes.readUInt32BE(12),
      mac: Buffer.from(bytes.subarray(16, 32)),
    },
  };
}

/** True iff `option`'s MAC is right for `fields` under `key` (constant-time comparison). */
export function verifyMigrateOption(key: Buffer, fields: MigrateSegmentFields, option: MigrateOption): boolean {
  if (option.mac.length !== MIGRATE_MAC_LENGTH || option.token.length !== MIGRATE_TOKEN_LENGTH) return false;
  let expected: Buffer;
  try {
    expected = migrateMac(key, fields, option.token, option.request);
  } catch {
    return false;
  }
  return timingSafeEqual(expected, option.mac);
}
