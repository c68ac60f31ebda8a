import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { isIPv4 } from 'node:net';
import { WedgeError } from '../errors/codes.js';
import type { Endpoint } from './option.js';

/*
 * Theory of operation: agreeing a per-connection TCP Migrate key and token.
 *
 * A Migrate SYN is only as good as the key its MAC is made with (migrate/option.ts). The
 * client agent and the wedge serving the connection agree that key right after the TCP
 * handshake, over UDP to the service address, on the same port number as the TCP service (UDP
 * and TCP ports are separate spaces, so the agent needs no configuration to find it). A 40-byte
 * TCP option cannot carry a public key, hence the side channel. A client without an agent never
 * sends a hello and its connection is served exactly as before; it just cannot be migrated.
 *
 *   agent -> server  HELLO  = magic "WMK1" | type 1 | binding (20) | client share (32)
 *   server -> agent  ACCEPT = magic "WMK1" | type 2 | binding (20) | client share (32)
 *                             | server share (32) | key id (8) | Ed25519 signature (64)
 *
 * binding = client address (4), client port (2), server address (4), server port (2), client
 * ISN (4), server ISN (4): the connection the key is for. Shares are fresh X25519 public keys
 * (ephemeral on both sides). The signature covers the transcript: the label
 * "wedge-migrate-kex-v1", binding, both shares and the key id. Both sides then compute
 *   secret = X25519(own private, peer share)
 *   key    = HKDF-SHA256(secret, salt = SHA-256(transcript), info "wedge-migrate key",   32 bytes)
 *   token  = HKDF-SHA256(secret, salt = SHA-256(transcript), info "wedge-migrate token",  8 bytes)
 *
 * Why a signature and not a MAC under a pre-shared service key: every agent must be able to
 * check the server, and a MAC key that every client holds lets any client impersonate the
 * service to every other client. With Ed25519 the replicas share the private service key (they
 * already share a cluster secret for soft state) and agents are configured with the public half
 * only; a compromised client learns nothing that lets it forge an ACCEPT.
 *
 * Security argument, for an attacker on the path who does not hold the service's private key:
 * - Impersonating the server to the agent fails: the agent accepts only an ACCEPT whose
 *   signature verifies under a configured key and covers its own fresh share.
 * - Replacing the agent's share (man in the middle) gives the attacker a key the server will use
 *   but the agent will never accept, because the ACCEPT it receives is signed over the
 *   attacker's share, not its own: migration is denied (which an on-path attacker can always
 *   do by dropping packets), never hijacked.
 * - Replaying an old ACCEPT, for this or another connection, fails: it is signed over another
 *   client share (fresh per exchange) and possibly another binding.
 * - A passive eavesdropper learns the shares only; ECDH keeps the key secret.
 * - An off-path attacker cannot pre-empt the agent at the server: the server answers only hellos
 *   whose binding (including both ISNs, 64 unguessable bits) names a live connection it serves,
 *   from the client's address. The server keeps the first share it accepted per connection, answers its
 *   retransmissions with the same ACCEPT, and refuses a different share.
 * The agent does not authenticate itself: holding the key only lets one *create* Migrate SYNs
 * for the agent that negotiated it, and the serving wedge is the party that needs to create them.
 *
 * Everything here is pure (sockets live in migrate/transport.ts): bytes in, bytes and keys
 * out. Messages from the network are never thrown on; they are rejected with a reason.
 */

const MAGIC = Buffer.from('WMK1', 'ascii');
const TYPE_HELLO = 1;
const TYPE_ACCEPT = 2;
const BINDING_LENGTH = 20;
const SHARE_LENGTH = 32;
const KEY_ID_LENGTH = 8;
const SIGNATURE_LENGTH = 64;
const HEADER_LENGTH = MAGIC.length + 1;
export const HELLO_LENGTH = HEADER_LENGTH + BINDING_LENGTH + SHARE_LENGTH;
export const ACCEPT_LENGTH = HELLO_LENGTH + SHARE_LENGTH + KEY_ID_LENGTH + SIGNATURE_LENGTH;
const TRANSCRIPT_LABEL = Buffer.from('wedge-migrate-kex-v1', 'ascii');
export const CONNECTION_KEY_LENGTH = 32;
export const CONNECTION_TOKEN_LENGTH = 8;

/** The TCP connection a key is for, as the client sees it. */
export interface ConnectionBinding {
  client: Endpoint;
  server: Endpoint;
  /** The client's initial sequence number (its SYN's seq). */
  clientIsn: number;
  /** The server's initial sequence number (its SYN-ACK's seq). */
  serverIsn: number;
}

export interface ConnectionKeys {
  key: Buffer;
  token: Buffer;
}

export type NegotiationRejection =
  | 'malformed'
  | 'not-for-this-connection'
  | 'unknown-service-key'
  | 'bad-signature'
  | 'bad-share'
  | 'not-served'
  | 'wrong-source'
  | 'already-negotiated';

export type Outcome<T> = { ok: true; value: T } | { ok: false; reason: NegotiationRejection };

/** The service's signing identity, held by every replica. */
export interface ServiceIdentity {
  privateKey: KeyObject;
  keyId: Buffer;
}

/** What an agent trusts: service public keys by key id. */
export type TrustedServiceKeys = ReadonlyMap<string, KeyObject>;

function rawEd25519Public(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url');
}

/** Key id of a service public key: the first 8 bytes of SHA-256 of its 32 raw bytes. */
export function serviceKeyId(publicKey: KeyObject): Buffer {
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', 'service key must be Ed25519');
  return createHash('sha256').update(rawEd25519Public(publicKey)).digest().subarray(0, KEY_ID_LENGTH);
}

/** A replica's identity from the service's private key (PEM or a KeyObject). */
export function serviceIdentity(privateKey: KeyObject | string): ServiceIdentity {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', 'service key must be Ed25519');
  return { privateKey: key, keyId: serviceKeyId(createPublicKey(key)) };
}

/** The agent's trust table from service public keys (PEM or KeyObjects). */
export function trustedServiceKeys(publicKeys: (KeyObject | string)[]): TrustedServiceKeys {
  const table = new Map<string, KeyObject>();
  for (const given of publicKeys) {
    const key = typeof given === 'string' ? createPublicKey(given) : given;
    table.set(serviceKeyId(key).toString('hex'), key);
  }
  return table;
}

function encodeBinding(binding: ConnectionBinding): Buffer {
  const out = Buffer.alloc(BINDING_LENGTH);
  let at = 0;
  for (const endpoint of [binding.client, binding.server]) {
    if (!isIPv4(endpoint.address) || !Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 0xffff) {
      throw new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', `binding endpoint ${endpoint.address}:${endpoint.port} is not IPv4 address:port`);
    }
    for (const part of endpoint.address.split('.')) out[at++] = Number(part);
    at = out.writeUInt16BE(endpoint.port, at);
  }
  for (const isn of [binding.clientIsn, binding.serverIsn]) {
    if (!Number.isInteger(isn) || isn < 0 || isn > 0xffffffff) throw new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', `ISN ${isn} is not 32-bit`);
    at = out.writeUInt32BE(isn, at);
  }
  return out;
}

function decodeBinding(bytes: Buffer): ConnectionBinding {
  const endpoint = (at: number): Endpoint => ({ address: [...bytes.subarray(at, at + 4)].join('.'), port: bytes.readUInt16BE(at + 4) });
  return { client: endpoint(0), server: endpoint(6), clientIsn: bytes.readUInt32BE(12), serverIsn: bytes.readUInt32BE(16) };
}

/** A stable text key for a binding (tables of exchanges are keyed by it). */
export function bindingKey(binding: ConnectionBinding): string {
  return encodeBinding(binding).toString('hex');
}

function x25519Public(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function rawX25519Public(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url');
}

function transcript(binding: Buffer, clientShare: Buffer, serverShare: Buffer, keyId: Buffer): Buffer {
  return Buffer.concat([TRANSCRIPT_LABEL, binding, clientShare, serverShare, keyId]);
}

/** X25519 then HKDF; undefined if the peer share is invalid (e.g. a low-order point: all-zero secret). */
function deriveKeys(privateKey: KeyObject, peerShare: Buffer, transcriptBytes: Buffer): ConnectionKeys | undefined {
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey, publicKey: x25519Public(peerShare) });
  } catch {
    return undefined;
  }
  if (secret.every((byte) => byte === 0)) return undefined;
  const salt = createHash('sha256').update(transcriptBytes).digest();
  const expand = (info: string, length: number) => Buffer.from(hkdfSync('sha256', secret, salt, Buffer.from(info, 'ascii'), length));
  return { key: expand('wedge-migrate key', CONNECTION_KEY_LENGTH), token: expand('wedge-migrate token', CONNECTION_TOKEN_LENGTH) };
}

function header(type: number): Buffer {
  return Buffer.concat([MAGIC, Buffer.from([type])]);
}

function hasHeader(bytes: Buffer, type: number, length: number): boolean {
  return bytes.length === length && bytes.subarray(0, MAGIC.length).equals(MAGIC) && bytes[MAGIC.length] === type;
}

/**
 * The agent's side of one exchange: created with a fresh X25519 key pair; `hello` is what to
 * send (and resend until answered); `receive` checks an ACCEPT and yields the keys. Once it has
 * succeeded, later ACCEPTs (retransmissions) are rejected as already negotiated.
 */
/** Whether a datagram claims to be a HELLO (its full check is ServerNegotiator.handleHello). */
export function isHello(message: Buffer): boolean {
  return message.length > HEADER_LENGTH && message.subarray(0, MAGIC.length).equals(MAGIC) && message[MAGIC.length] === TYPE_HELLO;
}

export class AgentExchange {
  readonly hello: Buffer;
  private readonly privateKey: KeyObject;
  private readonly share: Buffer;
  private readonly binding: Buffer;
  private keys: ConnectionKeys | undefined;

  constructor(readonly connection: ConnectionBinding) {
    const pair = generateKeyPairSync('x25519');
    this.privateKey = pair.privateKey;
    this.share = rawX25519Public(pair.publicKey);
    this.binding = encodeBinding(connection);
    this.hello = Buffer.concat([header(TYPE_HELLO), this.binding, this.share]);
  }

  get negotiated(): ConnectionKeys | undefined {
    return this.keys;
  }

  receive(accept: Buffer, trusted: TrustedServiceKeys): Outcome<ConnectionKeys> {
    if (!hasHeader(accept, TYPE_ACCEPT, ACCEPT_LENGTH)) return { ok: false, reason: 'malformed' };
    if (this.keys) return { ok: false, reason: 'already-negotiated' };
    let at = HEADER_LENGTH;
    const take = (length: number) => accept.subarray(at, (at += length));
    const binding = take(BINDING_LENGTH);
    const clientShare = take(SHARE_LENGTH);
    const serverShare = take(SHARE_LENGTH);
    const keyId = take(KEY_ID_LENGTH);
    const signature = take(SIGNATURE_LENGTH);
    if (!binding.equals(this.binding) || !clientShare.equals(this.share)) return { ok: false, reason: 'not-for-this-connection' };
    const serviceKey = trusted.get(keyId.toString('hex'));
    if (!serviceKey) return { ok: false, reason: 'unknown-service-key' };
    const signed = transcript(binding, clientShare, serverShare, keyId);
    if (!verify(null, signed, serviceKey, signature)) return { ok: false, reason: 'bad-signature' };
    const keys = deriveKeys(this.privateKey, serverShare, signed);
    if (!keys) return { ok: false, reason: 'bad-share' };
    this.keys = keys;
    return { ok: true, value: keys };
  }
}

export interface ServerNegotiated {
  connection: ConnectionBinding;
  keys: ConnectionKeys;
  /** The ACCEPT to send back. */
  reply: Buffer;
  /** False when this hello repeated an already answered one (same reply, same keys). */
  fresh: boolean;
}

/**
 * The serving wedge's side. `isServed` says whether a binding names a live connection this
 * replica serves (4-tuple and both ISNs). One exchange per connection: the first valid hello
 * wins, its retransmissions get the same ACCEPT, another share is refused. `forget` drops a
 * connection's exchange when the connection ends.
 */
export class ServerNegotiator {
  private readonly exchanges = new Map<string, { share: Buffer; result: ServerNegotiated }>();

  constructor(
    private readonly identity: ServiceIdentity,
    private readonly isServed: (connection: ConnectionBinding) => boolean,
  ) {}

  handleHello(hello: Buffer, sourceAddress: string): Outcome<ServerNegotiated> {
    if (!hasHeader(hello, TYPE_HELLO, HELLO_LENGTH)) return { ok: false, reason: 'malformed' };
    const binding = Buffer.from(hello.subarray(HEADER_LENGTH, HEADER_LENGTH + BINDING_LENGTH));
    const clientShare = Buffer.from(hello.subarray(HEADER_LENGTH + BINDING_LENGTH));
    const connection = decodeBinding(binding);
    if (connection.client.address !== sourceAddress) return { ok: false, reason: 'wrong-source' };
    const known = this.exchanges.get(binding.toString('hex'));
    if (known) {
      return known.share.equals(clientShare) ? { ok: true, value: { ...known.result, fresh: false } } : { ok: false, reason: 'already-negotiated' };
    }
    if (!this.isServed(connection)) return { ok: false, reason: 'not-served' };
    const pair = generateKeyPairSync('x25519');
    const serverShare = rawX25519Public(pair.publicKey);
    const signed = transcript(binding, clientShare, serverShare, this.identity.keyId);
    const keys = deriveKeys(pair.privateKey, clientShare, signed);
    if (!keys) return { ok: false, reason: 'bad-share' };
    const signature = sign(null, signed, this.identity.privateKey);
    const reply = Buffer.concat([header(TYPE_ACCEPT), binding, clientShare, serverShare, this.identity.keyId, signature]);
    const result: ServerNegotiated = { connection, keys, reply, fresh: true };
    this.exchanges.set(binding.toString('hex'), { share: clientShare, result });
    return { ok: true, value: result };
  }

  forget(connection: ConnectionBinding): void {
    this.exchanges.delete(bindingKey(connection));
  }

  get size(): number {
    return this.exchanges.size;
  }
}
