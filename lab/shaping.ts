/*
 * Bandwidth shaping of each server's egress link. This kernel has no netem, so there is no added
 * delay or loss, only a rate: a token bucket filter (tbf) whose bucket holds 20 ms of traffic (at
 * least 64 KiB, so full-size GSO packets pass whole) and whose queue holds 4 MiB (queueBytes). It
 * sits under an htb root whose filter sends UDP
 * (the soft-state multicast) around it: a link saturated by resumed downloads must not drop the
 * heartbeats, or peers would think the busy adopter dead (as a cluster network gives its
 * control traffic priority). In subnets mode the shaped link is the server's service link to the
 * router, which carries no soft state (that stays on the backplane): a plain tbf there.
 */
import { WedgeError } from '../errors/codes.js';
import { run, tryRun } from './run.js';

const UNITS: Record<string, number> = {
  bit: 1 / 8,
  kbit: 1000 / 8,
  mbit: 1_000_000 / 8,
  gbit: 1_000_000_000 / 8,
  bps: 1,
  kbps: 1000,
  mbps: 1_000_000,
  gbps: 1_000_000_000,
};

export interface Rate {
  /** As tc spells it, e.g. "100mbit". */
  text: string;
  bytesPerSecond: number;
}

export function parseRate(text: string): Rate {
  const match = /^([0-9]+(?:\.[0-9]+)?)([a-z]+)$/.exec(text.toLowerCase());
  const factor = match?.[2] === undefined ? undefined : UNITS[match[2]];
  const bytesPerSecond = Number(match?.[1]) * (factor ?? Number.NaN);
  if (!match || !(bytesPerSecond >= 1000)) {
    throw new WedgeError(
      'WEDGE_ERR_CONFIG',
      `--rate "${text}" must be a number and a unit (bit, kbit, mbit, gbit, or bytes: bps, kbps, mbps, gbps), at least 8kbit, e.g. 100mbit`,
    );
  }
  return { text: match[0], bytesPerSecond };
}

/**
 * The rates of `lab up --rate`: each spec is either a rate (every server) or `SERVER=RATE` (that
 * server only, overriding a lab-wide one), e.g. `--rate 100mbit --rate s1=10mbit`.
 */
export interface RateSpecs {
  all: Rate | undefined;
  perServer: Map<string, Rate>;
}

export function parseRateSpecs(specs: readonly string[], servers: readonly string[]): RateSpecs {
  const result: RateSpecs = { all: undefined, perServer: new Map() };
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq < 0) {
      if (result.all !== undefined) throw new WedgeError('WEDGE_ERR_CONFIG', `--rate for every server given twice ("${result.all.text}", "${spec}")`);
      result.all = parseRate(spec);
      continue;
    }
    const server = spec.slice(0, eq);
    if (!servers.includes(server)) {
      throw new WedgeError('WEDGE_ERR_CONFIG', `--rate "${spec}": no server "${server}" (servers: ${servers.join(', ')})`);
    }
    if (result.perServer.has(server)) throw new WedgeError('WEDGE_ERR_CONFIG', `--rate for ${server} given twice`);
    result.perServer.set(server, parseRate(spec.slice(eq + 1)));
  }
  return result;
}

/** The rate a server gets from `specs`: its own, else the lab-wide one. */
export function rateFor(specs: RateSpecs, server: string): Rate | undefined {
  return specs.perServer.get(server) ?? specs.all;
}

/**
 * Shapes the egress of `iface` in `ns` to `rate`, replacing any shaping already there (so it can
 * change a running lab). With `bypassUdp` (a link carrying soft state) UDP goes around the tbf.
 */
export async function shapeEgress(ns: string, iface: string, rate: Rate, options: { bypassUdp?: boolean } = {}): Promise<void> {
  const burst = Math.max(64 * 1024, Math.ceil(rate.bytesPerSecond / 50));
  const limit = String(queueBytes(rate));
  const tc = (...args: string[]) => run('tc', ['-n', ns, ...args]);
  await unshapeEgress(ns, iface);
  if (options.bypassUdp === false) {
    await tc('qdisc', 'add', 'dev', iface, 'root', 'handle', '20:', 'tbf', 'rate', rate.text, 'burst', String(burst), 'limit', limit);
    return;
  }
  await tc('qdisc', 'add', 'dev', iface, 'root', 'handle', '1:', 'htb', 'default', '20');
  for (const classid of ['1:10', '1:20']) await tc('class', 'add', 'dev', iface, 'parent', '1:', 'classid', classid, 'htb', 'rate', UNSHAPED, 'quantum', '60000');
  await tc('qdisc', 'add', 'dev', iface, 'parent', '1:20', 'handle', '20:', 'tbf', 'rate', rate.text, 'burst', String(burst), 'limit', limit);
  await tc('filter', 'add', 'dev', iface, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'protocol', '17', '0xff', 'flowid', '1:10');
}

/** Removes any shaping from `iface` (back to the default qdisc); nothing to remove is fine. */
export async function unshapeEgress(ns: string, iface: string): Promise<void> {
  await tryRun('tc', ['-n', ns, 'qdisc', 'del', 'dev', iface, 'root']);
}

/*
 * The tbf's queue: 4 MiB, but at least 50 ms and at most 500 ms of traffic. Not smaller: the
 * shaper is the bottleneck here, on the server itself, and Linux gives up on a socket whose
 * probes its own qdisc drops 15 times in a row (about 8 s; tcp_retries2, probes every 500 ms
 * under "local congestion"). A 50 ms queue shared by 1,000 flows holds about one packet each,
 * so after a mass takeover, when every restored socket starts with nothing in flight, some
 * never got a packet in. A server's real egress queue is not the bottleneck of its flows.
 */
function queueBytes(rate: Rate): number {
  return Math.round(Math.min(Math.max(4 * 1024 * 1024, rate.bytesPerSecond * 0.05), rate.bytesPerSecond * 0.5));
}

/* The htb classes only sort traffic; the rate is the tbf's. */
const UNSHAPED = '10gbit';
