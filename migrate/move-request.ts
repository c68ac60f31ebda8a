import { createHmac, timingSafeEqual } from 'node:crypto';
import { WedgeError } from '../errors/codes.js';
import { CONNECTION_TOKEN_LENGTH } from './negotiation.js';

/*
 * Theory of operation: the client agent's MOVE request (client-triggered migration).
 *
 * When a connection's throughput stays well below its best, the client agent asks the server it
 * currently talks to to move the connection elsewhere. The request is one UDP datagram to that
 * server's address on its TCP port number: the same socket that answers the key exchange
 * (migrate/negotiation.ts), which tells the two apart by the type byte.
 *
 *   MOVE = magic "WMK1" | type 3 | token (8) | sequence (uint32 BE) | MAC (16)
 *   MAC  = first 16 bytes of HMAC-SHA256(connection key, "wedge-migrate-move-v1" | token | sequence)
 *
 * Only the agent that negotiated the connection and the servers that serve it hold the key, so
 * nobody else can ask for a connection to be moved. The sequence grows
 * strictly per connection; the server keeps the last one it accepted and drops anything not
 * above it, so a replayed MOVE does nothing. Pure: bytes in, bytes out; network input is never
 * thrown on.
 */

const MAGIC = Buffer.from('WMK1', 'ascii');
const TYPE_MOVE = 3;
const LABEL = Buffer.from('wedge-migrate-move-v1', 'ascii');
const MAC_LENGTH = 16;
const HEADER_LENGTH = MAGIC.length + 1;
export const MOVE_REQUEST_LENGTH = HEADER_LENGTH + CONNECTION_TOKEN_LENGTH + 4 + MAC_LENGTH;

export interface MoveRequest {
  token: Buffer;
  sequence: number;
  mac: Buffer;
}

export type MoveRejection = 'wrong-length' | 'not-a-move';

export type MoveDecoding = { ok: true; value: MoveRequest } | { ok: false; reason: MoveRejection };

function sequenceBytes(sequence: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(sequence);
  return bytes;
}

function moveMac(key: Buffer, token: Buffer, sequence: number): Buffer {
  return createHmac('sha256', key).update(LABEL).update(token).update(sequenceBytes(sequence)).digest().subarray(0, MAC_LENGTH);
}

/** Cheap test for the server's demultiplexer: magic and type 3 (length and MAC not checked). */
export function isMoveRequest(message: Buffer): boolean {
  return message.length >= HEADER_LENGTH && message.subarray(0, MAGIC.length).equals(MAGIC) && message[MAGIC.length] === TYPE_MOVE;
}

/** The MOVE datagram for a connection; throws WEDGE_ERR_MIGRATE_OPTION on a bad field. */
export function encodeMoveRequest(key: Buffer, token: Buffer, sequence: number): Buffer {
  if (token.length !== CONNECTION_TOKEN_LENGTH) throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `MOVE token must be ${CONNECTION_TOKEN_LENGTH} bytes, not ${token.length}`);
  if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff) throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', `MOVE sequence ${sequence} is not 32-bit`);
  if (key.length === 0) throw new WedgeError('WEDGE_ERR_MIGRATE_OPTION', 'MOVE key is empty');
  return Buffer.concat([MAGIC, Buffer.from([TYPE_MOVE]), token, sequenceBytes(sequence), moveMac(key, token, sequence)]);
}

/** Splits a datagram into its fields (copies); rejects anything that is not exactly a MOVE. */
export function decodeMoveRequest(message: Buffer): MoveDecoding {
  if (!isMoveRequest(message)) return { ok: false, reason: 'not-a-move' };
  if (message.length !== MOVE_REQUEST_LENGTH) return { ok: false, reason: 'wrong-length' };
  let at = HEADER_LENGTH;
  const token = Buffer.from(message.subarray(at, (at += CONNECTION_TOKEN_LENGTH)));
  const sequence = message.readUInt32BE(at);
  const mac = Buffer.from(message.subarray(at + 4));
  return { ok: true, value: { token, sequence, mac } };
}

/** Whether the MOVE was made with `key` (constant time in the MAC). */
export function verifyMoveRequest(key: Buffer, decoded: MoveRequest): boolean {
  if (decoded.mac.length !== MAC_LENGTH || decoded.token.length !== CONNECTION_TOKEN_LENGTH) return false;
  return timingSafeEqual(moveMac(key, decoded.token, decoded.sequence), decoded.mac);
}
