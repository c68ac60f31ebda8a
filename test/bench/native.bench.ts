import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkPrivileges, socketFd, splice } from '../../native/index.js';
import { Lab, PORT, startFixture, type NsProcess } from '../native/lab.js';
import { median, type BenchRow } from './report.js';

/*
 * The native helper's costs:
 *   - relay of a 256 MiB stream on loopback, splice engine vs a plain Node `pipe()`: throughput
 *     and the relay process's CPU seconds (producer and sink run in another process);
 *   - takeover in the namespace lab: probe round trip (client kernel's answer, 20 per round)
 *     and restore() time, with the CPU each costs;
 *   - probing many idle connections: one probeMany() of all against one probe() each, 32 at a
 *     time (as the takeover ran them before), and the ratio.
 * Medians of a few rounds; no assertions.
 */

const SUITE = 'native';
const RELAY_BYTES = 256 * 1024 * 1024;
const RELAY_ROUNDS = 3;
const TAKEOVER_ROUNDS = 3;
const TAKEOVER_SIZE = 4 * 1024 * 1024;
const PROBE_MANY_CONNECTIONS = 1000;
const PROBE_MANY_ROUNDS = 3;

type Relay = (source: net.Socket, destination: net.Socket) => Promise<void>;

const RELAYS: Record<string, Relay> = {
  'splice engine': async (source, destination) => {
    (source as unknown as { _handle: { readStop(): void } })._handle.readStop();
    await splice(socketFd(source), socketFd(destination), null).done;
    destination.end();
  },
  'Node pipe()': (source, destination) =>
    new Promise((resolve) => {
      source.pipe(destination);
      destination.once('finish', () => resolve());
    }),
};


function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
  });
}

async function relayRound(ends: NsProcess, server: net.Server, sinkPort: number, relay: Relay) {
  const receipts = () => ends.events.filter((e) => e.event === 'received');
  const done = receipts().length;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  ends.child.stdin!.write('\n');
  const source = await accepted;
  const destination = await connect(sinkPort);
  const cpu = process.cpuUsage();
  const started = performance.now();
  await relay(source, destination);
  const received = await ends.waitFor((e) => receipts().indexOf(e) === done, 120_000);
  const seconds = (performance.now() - started) / 1000;
  const { user, system } = process.cpuUsage(cpu);
  source.destroy();
  if (received.bytes !== RELAY_BYTES) throw new Error(`relay delivered ${String(received.bytes)} of ${RELAY_BYTES} bytes`);
  return { mbPerSecond: RELAY_BYTES / 1e6 / seconds, cpuSeconds: (user + system) / 1e6 };
}

async function relayRows(): Promise<BenchRow[]> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const ends = startFixture([], 'stream-ends.mjs', [(server.address() as net.AddressInfo).port, RELAY_BYTES]);
  try {
    const sinkPort = (await ends.event('sink')).port as number;
    const rows: BenchRow[] = [];
    for (const [name, relay] of Object.entries(RELAYS)) {
      const rounds = [];
      for (let i = 0; i < RELAY_ROUNDS; i++) rounds.push(await relayRound(ends, server, sinkPort, relay));
      const note = `256 MiB on loopback, median of ${RELAY_ROUNDS}`;
      rows.push(
        { suite: SUITE, name: `relay throughput: ${name}`, value: median(rounds.map((r) => r.mbPerSecond)), unit: 'MB/s', note },
        { suite: SUITE, name: `relay CPU: ${name}`, value: median(rounds.map((r) => r.cpuSeconds)), unit: 's', note },
      );
    }
    return rows;
  } finally {
    ends.child.stdin!.end();
    ends.kill();
    server.close();
  }
}

async function takeoverRound(): Promise<{ rttMs: number[]; probeCpuMs: number; restoreMs: number; restoreCpuMs: number }> {
  const lab = await Lab.create({ timestamps: true });
  try {
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
    const a = lab.start(lab.serverA, 'server-a.mjs', lab.vip, PORT, TAKEOVER_SIZE, 16384, 10);
    await a.event('listening');
    const client = lab.start(lab.client, 'client.mjs', lab.vip, PORT, 256 * 1024);
    const { dump } = await a.event('dump');
    await client.waitFor((e) => e.event === 'read');
    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill();
    const b = lab.start(lab.serverB, 'server-b.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, TAKEOVER_SIZE, JSON.stringify(dump), 'bench');
    const probes = await b.event('probes');
    const restored = await b.event('restored');
    const end = await client.event('end', 60_000);
    if (end.bytes !== TAKEOVER_SIZE || end.firstMismatch !== -1) throw new Error(`takeover corrupted the stream: ${JSON.stringify(end)}`);
    return {
      rttMs: probes.rttMs as number[],
      probeCpuMs: probes.cpuMsEach as number,
      restoreMs: restored.restoreMs as number,
      restoreCpuMs: restored.restoreCpuMs as number,
    };
  } finally {
    await lab.close();
  }
}

async function probeManyRows(): Promise<BenchRow[]> {
  const lab = await Lab.create({ timestamps: true });
  try {
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
    const a = lab.start(lab.serverA, 'server-many.mjs', lab.vip, PORT, PROBE_MANY_CONNECTIONS);
    await a.event('listening');
    const client = lab.start(lab.client, 'many-client.mjs', lab.vip, PORT, PROBE_MANY_CONNECTIONS);
    const { dumps } = await a.event('dumps', 60_000);
    await client.event('read', 60_000);
    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill();
    const b = lab.start(lab.serverB, 'probe-many.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, 'bench', PROBE_MANY_ROUNDS);
    b.child.stdin!.write(JSON.stringify({ targets: dumps }) + '\n');
    const timings = await b.event('timings', 120_000);
    const batchMs = median(timings.batchMs as number[]);
    const singleMs = median(timings.singleMs as number[]);
    const note = `${PROBE_MANY_CONNECTIONS} idle connections, namespace lab, median of ${PROBE_MANY_ROUNDS}`;
    return [
      { suite: SUITE, name: `probeMany() of ${PROBE_MANY_CONNECTIONS} connections`, value: batchMs, unit: 'ms', note },
      { suite: SUITE, name: `${PROBE_MANY_CONNECTIONS} single probe()s, 32 at a time`, value: singleMs, unit: 'ms', note },
      { suite: SUITE, name: 'single probes / probeMany() time', value: singleMs / batchMs, unit: 'x', note },
    ];
  } finally {
    await lab.close();
  }
}

async function takeoverRows(): Promise<BenchRow[]> {
  if (!checkPrivileges().ok) {
    return [{ suite: SUITE, name: 'takeover (skipped)', value: 0, unit: '-', note: checkPrivileges().problems.join('; ') }];
  }
  const rounds = [];
  for (let i = 0; i < TAKEOVER_ROUNDS; i++) rounds.push(await takeoverRound());
  const note = `namespace lab, ${TAKEOVER_ROUNDS} rounds`;
  return [
    { suite: SUITE, name: 'probe round trip (median)', value: median(rounds.flatMap((r) => r.rttMs)), unit: 'ms', note },
    { suite: SUITE, name: 'probe CPU per probe', value: median(rounds.map((r) => r.probeCpuMs)), unit: 'ms', note },
    { suite: SUITE, name: 'restore() time', value: median(rounds.map((r) => r.restoreMs)), unit: 'ms', note },
    { suite: SUITE, name: 'restore() CPU', value: median(rounds.map((r) => r.restoreCpuMs)), unit: 'ms', note },
    ...(await probeManyRows()),
  ];
}

export default async function bench(): Promise<BenchRow[]> {
  return [...(await relayRows()), ...(await takeoverRows())];
}
