/*
 * The soak's scenarios: a campaign seed and a run number in, one scenario out (transport, origin,
 * client, fault, the moment it strikes and its timings). Run N of seed S is drawn from its own
 * PRNG seeded with (S, N), so `--seed S --only N` replays it alone, exactly as it was drawn.
 */

export type Transport = 'address' | 'migrate';
export type Origin = 'builtin' | 'apache';
export type Client = 'curl' | 'wget' | 'python';
export type Moment = 'headers' | 'early-body' | 'mid-body' | 'idle';
export type Fault = 'crash' | 'cascade' | 'wrong-death' | 'client-reset';

export interface Scenario {
  run: number;
  transport: Transport;
  origin: Origin;
  client: Client;
  moment: Moment;
  fault: Fault;
  servers: number;
  /* Size of the one file served. */
  mib: number;
  /* The client's read rate, bytes per second. */
  rate: number;
  /* Bodies over one keep-alive connection (python only; 1 otherwise). */
  requests: number;
  /* The fault strikes once this many bytes of the output are in (0: right after the request). */
  atBytes: number;
  /* crash: links down first in one batch (lab.crashNow) rather than `lab crash` alone. */
  linksFirst: boolean;
  /* cascade: the adopter dies this long after the first crash. */
  cascadeMs: number;
  /* wrong-death: the report is sent twice, this long apart (0: once). */
  repeatMs: number;
  /* idle: the client asks again this long after the fault. */
  idleMs: number;
}

/** mulberry32: small, fast, and the same on every machine. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function scenario(seed: number, run: number): Scenario {
  const random = prng(Math.imul(seed >>> 0, 0x9e3779b1) ^ run);
  const pick = <T>(choices: readonly T[]): T => choices[Math.floor(random() * choices.length)]!;
  const between = (low: number, high: number): number => low + random() * (high - low);

  const transport: Transport = random() < 0.25 ? 'migrate' : 'address';
  const origin: Origin = random() < 0.3 ? 'apache' : 'builtin';
  const fault: Fault = pick(['crash', 'crash', 'cascade', 'wrong-death', 'client-reset'] as const);
  // Only a keep-alive client can sit idle between requests, and only a live server can reset it.
  const client: Client = pick(['curl', 'wget', 'python'] as const);
  const moments: Moment[] = ['headers', 'early-body', 'mid-body', 'mid-body'];
  if (client === 'python' && fault !== 'client-reset') moments.push('idle', 'idle');
  const moment = pick(moments);
  const mib = pick([2, 3, 4]);
  const rate = Math.round(between(1, 3) * 1024 * 1024);
  const requests = client === 'python' ? pick([2, 3]) : 1;
  const bytes = mib * 1024 * 1024;
  const atBytes = moment === 'early-body' ? Math.round(between(0.02, 0.12) * bytes)
    : moment === 'mid-body' ? Math.round(between(0.25, 0.75) * bytes)
    : moment === 'idle' ? bytes
    : 0;
  return {
    run,
    transport,
    origin,
    client,
    moment,
    fault,
    servers: fault === 'cascade' || random() < 0.5 ? 3 : 2,
    mib,
    rate,
    requests,
    atBytes,
    // `lab crash` alone lands a CLI start-up (some 0.3 s) late: past the head already.
    linksFirst: random() < 0.5 || moment === 'headers',
    cascadeMs: Math.round(between(100, 500)),
    repeatMs: random() < 0.4 ? Math.round(between(5, 100)) : 0,
    idleMs: Math.round(between(200, 2000)),
  };
}

/** The scenario's kind, one row of the table. */
export function kind(s: Scenario): string {
  const fault = s.fault === 'wrong-death' && s.repeatMs > 0 ? 'wrong-death x2' : s.fault;
  return `${s.transport} ${fault}`;
}

export function describe(s: Scenario): string {
  const timing = s.fault === 'cascade' ? ` +${s.cascadeMs} ms` : s.fault === 'wrong-death' && s.repeatMs ? ` x2 +${s.repeatMs} ms` : s.fault === 'crash' && s.linksFirst ? ' (links first)' : '';
  return `${s.transport}, ${s.origin}, ${s.servers} servers, ${s.client} x${s.requests} ${s.mib} MiB at ${(s.rate / 1024).toFixed(0)} KiB/s, ${s.fault}${timing} ${s.moment} at ${s.atBytes} B`;
}
