import { execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';
import { TCP_ACK, TCP_SYN } from '../../native/migrate.js';
import { encodeMigrateOption, migrateSynOptions, type Endpoint } from '../../migrate/option.js';
import { assertBuilt, Lab, NsProcess } from '../native/lab.js';

/*
 * The real `wedge agent` command in the client namespace of a lab (client on a bridge, servers A
 * and B behind it), against small services in the server namespaces (test/agent/fixtures):
 *   A:80 and A:8080   Wedge-like services with the real NegotiationResponder, which report the
 *                     MOVE datagrams they receive (the /fast-then-slow download provokes one);
 *   B:80    a plain TCP service (not a Wedge), and A:9090 one on a port the agent does not watch.
 * Each connection must be learned and negotiated exactly once.
 */

const run = promisify(execFile);
const CLI = join(PACKAGE_ROOT, 'dist', 'cli', 'cli.js');
const FIXTURES = join(PACKAGE_ROOT, 'test', 'agent', 'fixtures');
const METRICS = '127.0.0.1:9191';

type Event = Record<string, unknown>;

describe('wedge agent', () => {
  let lab: Lab;
  let dir: string;
  let agent: NsProcess;
  let table: string;
  let serviceA: NsProcess;
  let serviceMove: NsProcess;
  let serviceB: NsProcess;
  let serviceOther: NsProcess;
  const processes: NsProcess[] = [];

  const startIn = (ns: string, ...command: string[]) => {
    const started = new NsProcess(spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['pipe', 'pipe', 'pipe'] }));
    processes.push(started);
    return started;
  };
  const fixture = (ns: string, name: string, ...args: (string | number)[]) => startIn(ns, process.execPath, join(FIXTURES, name), ...args.map(String));
  const inClient = async (...command: string[]) => (await run('ip', ['netns', 'exec', lab.client, ...command])).stdout;
  const logged = (msg: string, match: (e: Event) => boolean = () => true, timeoutMs?: number) => agent.waitFor((e) => e.msg === msg && match(e), timeoutMs);
  const metric = async (series: string) => {
    const text = await inClient('curl', '-sf', `http://${METRICS}/metrics`);
    const line = text.split('\n').find((l) => l.startsWith(series + ' '));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const listTable = () => inClient('nft', 'list', 'table', 'ip', table);
  const clientEndpoint = (port: unknown) => `${lab.clientAddress}:${String(port)}`;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
    dir = mkdtempSync(join(tmpdir(), 'wedge-agent-test-'));
    const service = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'service.key'), service.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'service.pub'), service.publicKey.export({ type: 'spki', format: 'pem' }));
    serviceA = fixture(lab.serverA, 'service.mjs', lab.addressA, 80, 'wedge', join(dir, 'service.key'));
    serviceMove = fixture(lab.serverA, 'service.mjs', lab.addressA, 8080, 'wedge', join(dir, 'service.key'));
    serviceB = fixture(lab.serverB, 'service.mjs', lab.addressB, 80, 'plain');
    serviceOther = fixture(lab.serverA, 'service.mjs', lab.addressA, 9090, 'plain');
    await Promise.all([serviceA, serviceMove, serviceB, serviceOther].map((s) => s.event('listening')));
    // The agent logs JSON lines to stderr; NsProcess reads stdout, hence the swap.
    agent = startIn(lab.client, 'sh', '-c', 'exec "$@" 2>&1 >/dev/null', 'sh', process.execPath, CLI, 'agent', '--address', lab.clientAddress,
      '--service-key', join(dir, 'service.pub'), '--ports', '80,8080', '--metrics', METRICS, '--log-level', 'debug');
    table = String((await logged('agent started')).table);
  });

  afterAll(async () => {
    for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.exited));
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('learns a connection to a Wedge, negotiates its key once, and forgets it (and its rules) when it ends', async () => {
    const client = fixture(lab.client, 'client.mjs', lab.addressA, 80, '/small');
    const { localPort } = await client.event('connected');
    await client.event('response');
    const learned = await logged('connection learned', (e) => e.client === clientEndpoint(localPort));
    expect(learned.server).toBe(`${lab.addressA}:80`);

    const accepted = await serviceA.waitFor((e) => e.event === 'accepted' && (e.binding as { client: Endpoint }).client.port === localPort);
    const serverSide = await serviceA.waitFor((e) => e.event === 'negotiated' && (e.binding as { client: Endpoint }).client.port === localPort);
    expect(serverSide.binding).toEqual(accepted.binding);
    const agentSide = await logged('negotiated', (e) => e.client === clientEndpoint(localPort));
    const token = String(serverSide.token);
    expect(agentSide.token).toBe(token);
    expect(await metric('wedge_agent_connections')).toBe(1);
    expect(await metric('wedge_agent_negotiations_total{result="ok"}')).toBe(1);
    expect(await metric('wedge_agent_negotiations_total{result="unnegotiated"}')).toBe(0);
    expect(agent.events.filter((e) => e.msg === 'connection learned' && e.client === clientEndpoint(localPort))).toHaveLength(1);

    // Server B takes the connection over with a valid Migrate SYN: the agent installs its rewrite.
    const a: Endpoint = { address: lab.addressA, port: 80 };
    const b: Endpoint = { address: lab.addressB, port: 8081 };
    const client_: Endpoint = { address: lab.clientAddress, port: Number(localPort) };
    const fields = { client: client_, oldServer: a, newServer: b, seq: 5000, ack: 9000 };
    const options = migrateSynOptions(encodeMigrateOption(Buffer.from(String(serverSide.key), 'hex'), fields, Buffer.from(token, 'hex'), 1), 1460);
    const segment = { localAddress: b.address, localPort: b.port, remoteAddress: client_.address, remotePort: client_.port, seq: 5000, ack: 9000, flags: TCP_SYN, options: options.toString('hex') };
    await lab.start(lab.serverB, 'migrate-raw.mjs', 'send', JSON.stringify([segment])).event('sent');
    expect(await logged('migrated', (e) => e.token === token)).toMatchObject({ request: 1, from: `${a.address}:80`, to: `${b.address}:8081` });
    expect(await listTable()).toContain(`chain pre_t${token}`);
    expect(await metric('wedge_agent_migrations_total')).toBe(1);

    // Spoofed SYN-ACKs in A's name: other ISNs for this live connection (A does not vouch for
    // them, so the connection and its rewrite stay), and one for a port the client has no socket
    // on (nothing is sent anywhere for it).
    const spoof = (port: number, seq: number) => ({ localAddress: a.address, localPort: a.port, remoteAddress: client_.address, remotePort: port, seq, ack: 777, flags: TCP_SYN | TCP_ACK, options: '' });
    const unused = client_.port === 65000 ? 65001 : 65000;
    await lab.start(lab.serverA, 'migrate-raw.mjs', 'send', JSON.stringify([spoof(client_.port, 123456), spoof(unused, 654321)])).event('sent');
    expect(await logged('SYN-ACK ignored', (e) => e.client === clientEndpoint(unused))).toMatchObject({ reason: 'no-socket' });
    expect(await logged('SYN-ACK ignored', (e) => e.client === clientEndpoint(localPort), 10_000)).toMatchObject({ reason: 'not-a-reuse' });
    expect(await listTable()).toContain(`chain pre_t${token}`);
    expect(agent.events.some((e) => e.msg === 'forgotten' && e.token === token)).toBe(false);
    expect(agent.events.some((e) => e.msg === 'connection learned' && e.client === clientEndpoint(unused))).toBe(false);
    expect(await metric('wedge_agent_ignored_synacks_total{reason="no-socket"}')).toBe(1);
    expect(await metric('wedge_agent_connections')).toBe(1);

    client.child.stdin!.end();
    await client.event('closed');
    await logged('forgotten', (e) => e.token === token, 5000);
    const after = await listTable();
    expect(after).toContain('chain migrate_syn');
    expect(after).not.toMatch(/chain (pre|in|out)_t/);
    expect(await metric('wedge_agent_connections')).toBe(0);
    expect(await metric('wedge_agent_rejected_syns_total{reason="duplicate-request"}')).toBeUndefined();
  });

  it('counts a connection to a server that is not a Wedge as unnegotiated and leaves it alone; ignores unwatched ports', async () => {
    const client = fixture(lab.client, 'client.mjs', lab.addressB, 80, '/small');
    const { localPort } = await client.event('connected');
    await client.event('response');
    await logged('connection learned', (e) => e.client === clientEndpoint(localPort));
    const unnegotiated = await logged('unnegotiated', (e) => e.client === clientEndpoint(localPort), 10_000);
    expect(unnegotiated.level).toBe(20); // debug, not an error
    expect(await metric('wedge_agent_negotiations_total{result="unnegotiated"}')).toBe(1);
    expect(await metric('wedge_agent_connections')).toBe(0);

    client.child.stdin!.write('again\n');
    expect(await client.waitFor((e) => e.event === 'response' && e.n === 2)).toBeTruthy();
    expect(agent.events.some((e) => e.msg === 'negotiated' && e.client === clientEndpoint(localPort))).toBe(false);
    expect(agent.events.some((e) => Number(e.level) >= 40 && e.client === clientEndpoint(localPort))).toBe(false);
    client.child.stdin!.end();
    await client.event('closed');

    const elsewhere = fixture(lab.client, 'client.mjs', lab.addressA, 9090, '/small');
    const other = await elsewhere.event('connected');
    await elsewhere.event('response');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(agent.events.some((e) => e.client === clientEndpoint(other.localPort))).toBe(false);
    elsewhere.child.stdin!.end();
  });

  it('asks the current server to move a connection whose throughput fell well below its best', async () => {
    const client = fixture(lab.client, 'client.mjs', lab.addressA, 8080, '/fast-then-slow');
    const { localPort } = await client.event('connected');
    const serverSide = await serviceMove.waitFor((e) => e.event === 'negotiated' && (e.binding as { client: Endpoint }).client.port === localPort);
    const move = await serviceMove.waitFor((e) => e.event === 'move', 30_000);
    expect(move).toMatchObject({ token: serverSide.token, sequence: 1, valid: true, from: lab.clientAddress });
    expect(await logged('move requested', (e) => e.token === serverSide.token)).toMatchObject({ server: `${lab.addressA}:8080`, sequence: 1 });
    expect(await metric('wedge_agent_move_requests_total')).toBe(1);
    client.child.stdin!.end();
  });

  it('removes its nftables table and exits 0 on SIGTERM', async () => {
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    await expect(listTable()).rejects.toThrow();
  });
});
