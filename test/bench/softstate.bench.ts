/*
 * Soft-state costs: what 1,000 advertised connections cost per second at the default period
 * (sender: encrypt + send of the cached encodings; receiver: open + decode + table), the
 * heartbeat overhead, and how long a triggered advert takes to reach another member.
 * Runs on the loopback interface (multicast loop on, TTL 1, random port and group).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { Outbox } from '../../softstate/channel.js';
import {
  DEFAULT_ADVERT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  SoftStateMember,
} from '../../softstate/member.js';
import { MulticastTransport } from '../../softstate/transport.js';
import { sampleRecord } from '../softstate/sample.js';
import type { BenchRow } from './report.js';

const SUITE = 'softstate';
const CONNECTIONS = 1000;
const IP_UDP_HEADERS = 28;
const keyRing = { current: 1, keys: new Map([[1, randomBytes(32)]]) };
const port = randomInt(20000, 60000);
const baseGroup = `239.78.${randomInt(1, 250)}.1`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

async function drained(transport: MulticastTransport): Promise<void> {
  while (transport.queued > 0) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 5));
}

/* A record as the daemon would advertise it: ~250 bytes of recorded response headers. */
const records = Array.from({ length: CONNECTIONS }, (_, i) => sampleRecord(i, { owner: '10.99.0.1' }, 250));

async function advertCost(): Promise<BenchRow[]> {
  const outbox = new Outbox({ ring: keyRing, self: '10.99.0.1' });
  const transport = new MulticastTransport({ group: baseGroup, port, interfaceAddress: '127.0.0.1', loopback: false });
  await transport.start();
  const receiver = new SoftStateMember({ self: '10.99.0.2', keyRing, baseGroup, port });
  try {
    const encodeStart = process.cpuUsage();
    const encoded = records.map((record) => outbox.encodeItem({ kind: 'record', record }));
    const encodeCpu = cpuSeconds(encodeStart);
    const senderCpu: number[] = [];
    const receiverCpu: number[] = [];
    let bytes = 0;
    let datagramCount = 0;
    for (let round = 0; round < 7; round++) {
      const start = process.cpuUsage();
      const { datagrams } = outbox.adverts(encoded);
      for (const d of datagrams) transport.send(d);
      await drained(transport);
      senderCpu.push(cpuSeconds(start));
      bytes = datagrams.reduce((n, d) => n + d.length + IP_UDP_HEADERS, 0);
      datagramCount = datagrams.length;
      const receiveStart = process.cpuUsage();
      for (const d of datagrams) receiver.receive(d);
      receiverCpu.push(cpuSeconds(receiveStart));
    }
    const heartbeatBytes = outbox.heartbeat({ connections: CONNECTIONS, bytesPerSec: 1e8, cpu: 0.3 }).length + IP_UDP_HEADERS;
    const period = DEFAULT_ADVERT_INTERVAL_MS / 1000;
    const perSecond = 1000 / DEFAULT_HEARTBEAT_INTERVAL_MS;
    const note = `${CONNECTIONS} connections, advert every ${period} s`;
    return [
      { suite: SUITE, name: 'encoded record size', value: encoded.reduce((n, b) => n + b.length, 0) / CONNECTIONS, unit: 'B', note: 'msgpack, ~250 B of recorded headers in the stream map' },
      { suite: SUITE, name: 'records per advert datagram', value: CONNECTIONS / datagramCount, unit: 'records', note: `${datagramCount} datagrams per round, MTU budget 1400 B` },
      { suite: SUITE, name: 'advert bandwidth per member (1,000 connections)', value: bytes / period, unit: 'B/s', note: `${note}, incl. IP/UDP headers` },
      { suite: SUITE, name: 'advert sender CPU (1,000 connections)', value: median(senderCpu) / period, unit: 'CPU s/s', note: `${note}: seal + send (median of 7 rounds)` },
      { suite: SUITE, name: 'advert receiver CPU (1,000 connections)', value: median(receiverCpu) / period, unit: 'CPU s/s', note: `${note}: open + decode + table, per receiving member` },
      { suite: SUITE, name: 'record encode CPU (once per change)', value: (encodeCpu / CONNECTIONS) * 1e6, unit: 'us/record', note: 'msgpack encode at upsert' },
      { suite: SUITE, name: 'heartbeat bandwidth per member', value: heartbeatBytes * perSecond, unit: 'B/s', note: `${heartbeatBytes} B every ${DEFAULT_HEARTBEAT_INTERVAL_MS} ms` },
    ];
  } finally {
    await transport.stop();
  }
}

async function triggeredLatency(): Promise<BenchRow[]> {
  const common = { keyRing, baseGroup, port: port + 1, interfaceAddress: '127.0.0.1', loopback: true };
  const sender = new SoftStateMember({ ...common, self: '10.99.0.1' });
  const receiver = new SoftStateMember({ ...common, self: '10.99.0.2' });
  await sender.start();
  await receiver.start();
  try {
    const samples: number[] = [];
    for (let i = 0; i < 300; i++) {
      const record = sampleRecord(10_000 + i, { owner: '10.99.0.1' }, 250);
      const heard = once(receiver, 'record');
      const start = performance.now();
      sender.upsert(record);
      await heard;
      samples.push(performance.now() - start);
    }
    return [
      { suite: SUITE, name: 'triggered advert to another member, median', value: median(samples) * 1000, unit: 'us', note: 'upsert -> peer "record" event, loopback multicast, 300 samples' },
      { suite: SUITE, name: 'triggered advert to another member, p99', value: percentile(samples, 0.99) * 1000, unit: 'us' },
    ];
  } finally {
    await sender.stop();
    await receiver.stop();
  }
}

export default async function bench(): Promise<BenchRow[]> {
  return [...(await advertCost()), ...(await triggeredLatency())];
}
