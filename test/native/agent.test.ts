import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentExchange, ServerNegotiator, serviceIdentity, trustedServiceKeys, type ConnectionBinding } from '../../migrate/negotiation.js';
import { encodeMigrateOption, migrateSynOptions, type Endpoint } from '../../migrate/option.js';
import { TCP_SYN } from '../../native/migrate.js';
import { assertBuilt, Lab, type NsProcess } from './lab.js';

/*
 * The client agent against real packets and a real nftables in the client namespace. Keys come
 * from a real (in-process) negotiation. Server B sends SYNs with its raw socket: a wrong MAC, an
 * unknown token, then a valid request 5 (B takes over from A), then that SYN again (answered with
 * the same SYN-ACK, nothing else), an older request number (3) validly MACed for the current
 * state, and request 5 again (duplicate). Every bad SYN is answered with RST and leaves the rules
 * exactly as they were; the valid one installs exactly the three expected rewrite chains;
 * stopping removes the table.
 */

const run = promisify(execFile);
const CLIENT_PORT = 40000;

describe('wedge agent: Migrate SYN handling', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
  });
  afterAll(async () => lab?.close());

  it('rejects forged, unknown, replayed and old requests with RST and rewrites for the valid one', async () => {
    const service = generateKeyPairSync('ed25519');
    const binding: ConnectionBinding = {
      client: { address: lab.clientAddress, port: CLIENT_PORT },
      server: { address: lab.addressA, port: 8080 },
      clientIsn: 1000,
      serverIsn: 2000,
    };
    const agentSide = new AgentExchange(binding);
    const served = new ServerNegotiator(serviceIdentity(service.privateKey), () => true).handleHello(agentSide.hello, lab.clientAddress);
    if (!served.ok) throw new Error(served.reason);
    const received = agentSide.receive(served.value.reply, trustedServiceKeys([service.publicKey]));
    if (!received.ok) throw new Error(received.reason);
    const { key, token } = received.value;

    const a: Endpoint = { address: lab.addressA, port: 8080 };
    const b: Endpoint = { address: lab.addressB, port: 8080 };
    const syn = (seq: number, request: number, oldServer: Endpoint, newServer: Endpoint, options: { key?: Buffer; token?: Buffer } = {}) => ({
      localAddress: newServer.address,
      localPort: newServer.port,
      remoteAddress: lab.clientAddress,
      remotePort: CLIENT_PORT,
      seq,
      ack: 7777,
      flags: TCP_SYN,
      options: migrateSynOptions(
        encodeMigrateOption(options.key ?? key, { client: binding.client, oldServer, newServer, seq, ack: 7777 }, options.token ?? token, request),
        1460,
      ).toString('hex'),
    });

    const agent: NsProcess = lab.start(lab.client, 'migrate-agent.mjs', lab.clientAddress, lab.ifClient, JSON.stringify({ binding, key: key.toString('hex'), token: token.toString('hex') }));
    const { table } = (await agent.event('started')) as { table: string };
    const observer = lab.start(lab.serverB, 'capture.py', lab.ifB);
    await observer.event('ready');
    const listTable = async () => (await run('ip', ['netns', 'exec', lab.client, 'nft', 'list', 'table', 'ip', table])).stdout;
    const send = (...segments: unknown[]) => lab.start(lab.serverB, 'migrate-raw.mjs', 'send', JSON.stringify(segments)).event('sent');
    const resetFor = (seq: number) =>
      observer.waitFor((p) => p.src === lab.clientAddress && p.sport === CLIENT_PORT && String(p.flags).includes('R') && p.ack === seq + 1);
    const rejection = (seq: number) => agent.waitFor((e) => e.event === 'rejected' && e.seq === seq);

    const pristine = await listTable();
    expect(pristine).toContain('chain migrate_syn');
    expect(pristine).not.toContain('pre_t');

    await send(syn(101, 1, a, b, { key: randomBytes(32) }), syn(102, 1, a, b, { token: randomBytes(8) }));
    expect(await rejection(101)).toMatchObject({ reason: 'bad-mac' });
    expect(await rejection(102)).toMatchObject({ reason: 'unknown-token' });
    await resetFor(101);
    await resetFor(102);
    expect(await listTable()).toBe(pristine);

    const valid = syn(200, 5, a, b);
    await send(valid);
    expect(await agent.event('migrated')).toMatchObject({ token: token.toString('hex'), request: 5, from: a, to: b });
    const synAck = await observer.waitFor((p) => p.src === lab.clientAddress && p.flags === 'SA');
    expect(synAck).toMatchObject({ sport: CLIENT_PORT, dport: 8080, ack: 201, seq: 7776 });
    const migrated = await listTable();
    const id = token.toString('hex');
    const rules = migrated.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('ip '));
    expect(rules).toHaveLength(5);
    expect(rules[0]).toMatch(/@th,160,8 0xfd @th,176,16 0x5745 drop$/);
    expect(migrated).toContain(`chain pre_t${id}`);
    expect(migrated).toContain(`chain in_t${id}`);
    expect(migrated).toContain(`chain out_t${id}`);
    expect(rules).toContain(`ip saddr ${b.address} tcp sport 8080 tcp dport ${CLIENT_PORT} ip daddr ${lab.clientAddress} tcp flags ! syn ip saddr set ${a.address} tcp sport set 8080 meta mark set 0x57450001 notrack accept`);
    expect(rules).toContain(`ip saddr ${a.address} tcp sport 8080 tcp dport ${CLIENT_PORT} ip daddr ${lab.clientAddress} meta mark != 0x57450001 reject with tcp reset`);
    expect(rules).toContain(`ip saddr ${lab.clientAddress} tcp sport ${CLIENT_PORT} tcp dport 8080 ip daddr ${a.address} tcp flags rst / rst,ack accept`);
    expect(rules).toContain(`ip saddr ${lab.clientAddress} tcp sport ${CLIENT_PORT} tcp dport 8080 ip daddr ${a.address} ip daddr set ${b.address} tcp dport set 8080 notrack accept`);

    // The accepted SYN again (a retransmission, or a replay of it: the same SYN-ACK, nothing else
    // changes), an older request validly MACed for the current state, and the accepted request
    // number again from the current server.
    await send({ ...valid }, syn(301, 3, b, b), syn(302, 5, b, b));
    expect(await agent.event('repeated')).toMatchObject({ token: token.toString('hex'), request: 5, to: b });
    expect(await rejection(301)).toMatchObject({ reason: 'duplicate-request' });
    expect(await rejection(302)).toMatchObject({ reason: 'duplicate-request' });
    await resetFor(301);
    await resetFor(302);
    const synAcks = () => observer.events.filter((p) => p.src === lab.clientAddress && p.flags === 'SA');
    await observer.waitFor(() => synAcks().length === 2);
    expect(synAcks()[1]).toMatchObject({ ack: 201, seq: 7776 });
    expect(await listTable()).toBe(migrated);
    expect(agent.events.filter((e) => e.event === 'migrated')).toHaveLength(1);

    agent.child.stdin!.end();
    expect(await agent.event('stopped')).toMatchObject({ rejected: { 'bad-mac': 1, 'unknown-token': 1, 'duplicate-request': 2 } });
    await expect(listTable()).rejects.toThrow();
  });
});
