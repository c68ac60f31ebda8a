import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ACCEPT_LENGTH,
  AgentExchange,
  HELLO_LENGTH,
  ServerNegotiator,
  bindingKey,
  serviceIdentity,
  trustedServiceKeys,
  type ConnectionBinding,
} from '../../migrate/negotiation.js';
import { NegotiationResponder, isRefusal, negotiateConnectionKey } from '../../migrate/transport.js';
import { WedgeError } from '../../errors/codes.js';

const service = generateKeyPairSync('ed25519');
const identity = serviceIdentity(service.privateKey);
const trusted = trustedServiceKeys([service.publicKey.export({ type: 'spki', format: 'pem' }) as string]);

const connection: ConnectionBinding = {
  client: { address: '10.77.0.1', port: 40000 },
  server: { address: '10.77.0.11', port: 8080 },
  clientIsn: 0x11223344,
  serverIsn: 0xaabbccdd,
};

function servingOnly(...served: ConnectionBinding[]) {
  const keys = new Set(served.map(bindingKey));
  return (c: ConnectionBinding) => keys.has(bindingKey(c));
}

function exchange(binding = connection, negotiator = new ServerNegotiator(identity, servingOnly(binding))) {
  const agent = new AgentExchange(binding);
  const served = negotiator.handleHello(agent.hello, binding.client.address);
  if (!served.ok) throw new Error(`server refused: ${served.reason}`);
  return { agent, negotiator, served: served.value };
}

describe('Migrate key negotiation (pure)', () => {
  it('both sides derive the same 32-byte key and 8-byte token', () => {
    const { agent, served } = exchange();
    expect(agent.hello.length).toBe(HELLO_LENGTH);
    expect(served.reply.length).toBe(ACCEPT_LENGTH);
    const got = agent.receive(served.reply, trusted);
    expect(got).toEqual({ ok: true, value: served.keys });
    expect(served.keys.key.length).toBe(32);
    expect(served.keys.token.length).toBe(8);
    expect(served.connection).toEqual(connection);
  });

  it('every exchange yields different keys, even for the same connection', () => {
    const first = exchange().served.keys;
    const second = exchange().served.keys;
    expect(first.key.equals(second.key)).toBe(false);
    expect(first.token.equals(second.token)).toBe(false);
  });

  it('rejects every single-bit flip of the ACCEPT (binding, shares, key id, signature, header)', () => {
    const negotiator = new ServerNegotiator(identity, servingOnly(connection));
    const agent = new AgentExchange(connection);
    const served = negotiator.handleHello(agent.hello, connection.client.address);
    if (!served.ok) throw new Error(served.reason);
    for (let bit = 0; bit < served.value.reply.length * 8; bit++) {
      const tampered = Buffer.from(served.value.reply);
      tampered[bit >> 3]! ^= 0x80 >> (bit & 7);
      expect(agent.receive(tampered, trusted).ok, `bit ${bit}`).toBe(false);
    }
    expect(agent.receive(served.value.reply, trusted).ok).toBe(true);
  });

  it('rejects an ACCEPT signed by a key the agent does not trust (server impersonation)', () => {
    const impostor = generateKeyPairSync('ed25519');
    const { agent, served } = exchange(connection, new ServerNegotiator(serviceIdentity(impostor.privateKey), servingOnly(connection)));
    expect(agent.receive(served.reply, trusted)).toEqual({ ok: false, reason: 'unknown-service-key' });
  });

  it('rejects an impostor that reuses the genuine key id with its own signature', () => {
    const impostor = generateKeyPairSync('ed25519');
    const forged = { privateKey: impostor.privateKey, keyId: identity.keyId };
    const { agent, served } = exchange(connection, new ServerNegotiator(forged, servingOnly(connection)));
    expect(agent.receive(served.reply, trusted)).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('rejects a replayed ACCEPT of an old exchange, for this connection and for another one', () => {
    const old = exchange().served.reply;
    expect(new AgentExchange(connection).receive(old, trusted)).toEqual({ ok: false, reason: 'not-for-this-connection' });
    const other = { ...connection, client: { ...connection.client, port: 40001 } };
    expect(new AgentExchange(other).receive(old, trusted)).toEqual({ ok: false, reason: 'not-for-this-connection' });
  });

  it('a man in the middle that swaps the client share cannot make the agent accept', () => {
    const agent = new AgentExchange(connection);
    const attacker = new AgentExchange(connection);
    const negotiator = new ServerNegotiator(identity, servingOnly(connection));
    const served = negotiator.handleHello(attacker.hello, connection.client.address);
    if (!served.ok) throw new Error(served.reason);
    expect(agent.receive(served.value.reply, trusted)).toEqual({ ok: false, reason: 'not-for-this-connection' });
    // Rewriting the echoed share to the agent's breaks the signature.
    const rewritten = Buffer.from(served.value.reply);
    agent.hello.copy(rewritten, 25, 25, 57);
    expect(agent.receive(rewritten, trusted)).toEqual({ ok: false, reason: 'bad-signature' });
    // And the genuine agent is now refused by the server: denial, never hijack.
    expect(negotiator.handleHello(agent.hello, connection.client.address)).toEqual({ ok: false, reason: 'already-negotiated' });
  });

  it('server: answers retransmissions identically, refuses unknown connections, spoofed sources and garbage', () => {
    const { agent, negotiator, served } = exchange();
    const again = negotiator.handleHello(agent.hello, connection.client.address);
    expect(again.ok && again.value.reply.equals(served.reply) && !again.value.fresh).toBe(true);
    expect(negotiator.handleHello(agent.hello, '10.77.0.99')).toEqual({ ok: false, reason: 'wrong-source' });
    const wrongIsn = new AgentExchange({ ...connection, serverIsn: connection.serverIsn + 1 });
    expect(negotiator.handleHello(wrongIsn.hello, connection.client.address)).toEqual({ ok: false, reason: 'not-served' });
    expect(negotiator.handleHello(agent.hello.subarray(0, HELLO_LENGTH - 1), connection.client.address)).toEqual({ ok: false, reason: 'malformed' });
    expect(negotiator.handleHello(served.reply, connection.client.address)).toEqual({ ok: false, reason: 'malformed' });
    negotiator.forget(connection);
    expect(negotiator.size).toBe(0);
  });

  it('server: refuses a low-order (all-zero) client share', () => {
    const agent = new AgentExchange(connection);
    const hello = Buffer.from(agent.hello);
    hello.fill(0, 25);
    const negotiator = new ServerNegotiator(identity, servingOnly(connection));
    expect(negotiator.handleHello(hello, connection.client.address)).toEqual({ ok: false, reason: 'bad-share' });
  });

  it('agent: ignores a second ACCEPT once negotiated', () => {
    const { agent, served } = exchange();
    expect(agent.receive(served.reply, trusted).ok).toBe(true);
    expect(agent.receive(served.reply, trusted)).toEqual({ ok: false, reason: 'already-negotiated' });
    expect(agent.negotiated).toEqual(served.keys);
  });

  it('configuration errors are WEDGE_ERR_MIGRATE_NEGOTIATION', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => serviceIdentity(rsa.privateKey)).toThrow(WedgeError);
    expect(() => new AgentExchange({ ...connection, clientIsn: -1 })).toThrow(WedgeError);
  });
});

describe('Migrate key negotiation over UDP (loopback)', () => {
  const local: ConnectionBinding = {
    client: { address: '127.0.0.1', port: 40000 },
    server: { address: '127.0.0.1', port: 0 },
    clientIsn: 1,
    serverIsn: 2,
  };

  it('agent and responder agree on the key; the responder reports it once', async () => {
    const reported: unknown[] = [];
    const negotiator = new ServerNegotiator(identity, (c) => c.clientIsn === 1 && c.serverIsn === 2);
    const responder = await NegotiationResponder.listen({ address: '127.0.0.1', port: 0, negotiator, onNegotiated: (n) => reported.push(n.keys) });
    try {
      const binding = { ...local, server: { address: '127.0.0.1', port: responder.port } };
      const keys = await negotiateConnectionKey({ connection: binding, trusted, timeoutMs: 2000, retryMs: 50 });
      expect(reported).toEqual([keys]);
    } finally {
      await responder.close();
    }
  });

  it('times out with WEDGE_ERR_MIGRATE_NEGOTIATION when the server does not serve the connection', async () => {
    const negotiator = new ServerNegotiator(identity, () => false);
    const responder = await NegotiationResponder.listen({ address: '127.0.0.1', port: 0, negotiator });
    try {
      const binding = { ...local, server: { address: '127.0.0.1', port: responder.port } };
      const attempt = negotiateConnectionKey({ connection: binding, trusted, timeoutMs: 300, retryMs: 50 });
      await expect(attempt).rejects.toMatchObject({ code: 'WEDGE_ERR_MIGRATE_NEGOTIATION' });
      expect(responder.rejected.get('not-served')).toBeGreaterThanOrEqual(2);
    } finally {
      await responder.close();
    }
  });

  it('fails at once, as a refusal, when nothing listens on the server\'s port (not a Wedge), but not on silence', async () => {
    const closed = await NegotiationResponder.listen({ address: '127.0.0.1', port: 0, negotiator: new ServerNegotiator(identity, () => false) });
    const port = closed.port;
    await closed.close();
    const refused = await negotiateConnectionKey({ connection: { ...local, server: { address: '127.0.0.1', port } }, trusted, timeoutMs: 5000, retryMs: 50 }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'WEDGE_ERR_MIGRATE_NEGOTIATION', message: expect.stringMatching(/refused/) });
    expect(isRefusal(refused)).toBe(true);

    const silent = await NegotiationResponder.listen({ address: '127.0.0.1', port: 0, negotiator: new ServerNegotiator(identity, () => false) });
    try {
      const timedOut = await negotiateConnectionKey({ connection: { ...local, server: { address: '127.0.0.1', port: silent.port } }, trusted, timeoutMs: 300, retryMs: 50 }).catch((error: unknown) => error);
      expect(timedOut).toMatchObject({ code: 'WEDGE_ERR_MIGRATE_NEGOTIATION' });
      expect(isRefusal(timedOut)).toBe(false);
    } finally {
      await silent.close();
    }
  });
});
