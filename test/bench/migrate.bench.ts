/*
 * TCP Migrate in the lab (issue 6), as the client sees it and as the servers log it. Every lab is
 * `--subnets --agent --servers 4`: each server on its own subnet behind a router, the client
 * agent on the client host; the downloads come from s1, and s2, s3, s4 are the candidates.
 *
 *   crash, 1 connection   one slow download (fixtures/migrate-client.py: reads at RATE, notes
 *                         when bytes arrive in its socket) from s1; s1 loses its links and is
 *                         killed mid-body. Client stall, detection (crash to the winner's
 *                         'peer dead'), migration (the winner's sinceTriggerMs, with moveMs,
 *                         probeMs, restoreMs), crash to the first resumed byte at the client
 *                         (the first arrival beyond the winner's serverOffset), bytes exact.
 *   shed, 1 connection    the same download; s1 stays up and is told `POST /shed?count=1`:
 *                         POST to the first resumed byte, both on this machine's clock.
 *   spread, N connections N slow downloads from s1 (default 60), s1 crashes: how many each
 *                         candidate won, lost-race and stood-down from /metrics, the agent's
 *                         refused SYNs, detection to the last resumed connection, downloads
 *                         byte-exact.
 * The single-connection runs are repeated (BENCH_MIGRATE_RUNS, default 3; fewer if the section
 * runs long), each pair (shed, then crash) in a fresh lab; every lab has its own name and is
 * always taken down. The whole section takes about 1.5 minutes. A run that fails is reported and
 * the others go on. Besides the rows, a summary (per run and median, the spread as a table, and
 * what looked wrong in the logs: aborts, failed probes, connections nobody resumed) is printed,
 * and every run's details go to bench-results/migrate.json. The address-takeover figures are not
 * measured here: the takeover section's last ones (bench-results/latest.json) are quoted in one
 * line for comparison.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../../config/package.js';
import { Lab, type Background, type LogLine as Line } from '../support/lab.js';
import { median, type BenchRow } from './report.js';

const CLIENT = join(PACKAGE_ROOT, 'test', 'bench', 'fixtures', 'migrate-client.py');
const RESULTS = join(PACKAGE_ROOT, 'bench-results');
const RUNS = Number(process.env.BENCH_MIGRATE_RUNS ?? 3);
const SPREAD = Number(process.env.BENCH_MIGRATE_CONNECTIONS ?? 60);
const CANDIDATES = ['s2', 's3', 's4'];
const KIB = 1024;
/* One connection: 6 MiB read at 1 MiB/s; the trigger comes 1.5 s into the body. */
const SINGLE = { mib: 6, rate: 1024 * KIB, leadMs: 1500 };
/* Spread: 2 MiB each at 256 KiB/s (N × 256 KiB/s through the router); trigger 2 s in. */
const SPREAD_LOAD = { mib: 2, rate: 256 * KIB, leadMs: 2000 };
/* A connection silent this long is given up by the client ("stalled"): never resumed. */
const GIVE_UP_S = 4;
/* Past this, no further single-connection lab is started (the spread lab still runs). */
const SINGLE_BUDGET_MS = 100_000;

interface ClientConn {
  port: number;
  bytes: number;
  length: number | null;
  exact: boolean;
  end: string;
  ended: number | null;
  /* [ms since base, stream bytes arrived, of which unread] each time that grew. */
  curve: Array<[number, number, number]>;
}

interface ClientResult {
  connections: number;
  base: number;
  complete: number;
  exact: number;
  conns: ClientConn[];
}

/* What the client saw of one connection around a trigger. */
interface Arrival {
  /* Epoch ms of the first byte beyond OFFSET, and of the arrival before it. */
  firstResumedAt: number;
  lastBeforeAt: number;
  /* Bytes the client had not read yet at that arrival before: a full buffer is a closed window. */
  unreadBefore: number;
}

interface SingleRun {
  trigger: 'crash' | 'shed';
  lab: string;
  triggerAt: number;
  winner: string | null;
  /* crash: the winner's 'peer dead' for s1; shed: s1's 'shedding load' log. */
  detectionMs: number | null;
  /* Trigger to the winner's race start ('Migrate race over' time minus its ms). */
  raceStartMs: number | null;
  sinceTriggerMs: number | null;
  moveMs: number | null;
  probeMs: number | null;
  restoreMs: number | null;
  probes: number | null;
  serverOffset: number | null;
  /* Unread bytes in the client's socket at its last byte from s1 (about 64 KiB: window closed). */
  unreadAtStall: number | null;
  /* The agent accepting the winner's SYN, from the trigger. */
  agentMigratedMs: number | null;
  /* Client clock: trigger → first resumed byte; and the silence around it. */
  firstResumedByteMs: number | null;
  /* The winner's 'connection resumed' log to that first byte at the client. */
  resumedToByteMs: number | null;
  stallMs: number | null;
  /* The longest silence of the whole download, wherever it was. */
  longestGapMs: number;
  rejectedSyns: number;
  bytes: number;
  length: number | null;
  exact: boolean;
  end: string;
  notes: string[];
}

interface CandidateRow {
  server: string;
  won: number;
  wonByAgent: number;
  lostRace: number;
  stoodDown: number;
  aborted: number;
  peerDeadMs: number | null;
  raceMs: number | null;
}

interface SpreadRun {
  lab: string;
  connections: number;
  negotiated: number;
  triggerAt: number;
  candidates: CandidateRow[];
  rejectedSyns: Record<string, number>;
  detectionMs: number | null;
  firstResumedMs: number | null;
  lastResumedMs: number | null;
  clientLastResumedMs: number | null;
  stallMedianMs: number | null;
  stallMaxMs: number | null;
  resumed: number;
  complete: number;
  exact: number;
  ends: Record<string, number>;
  notes: string[];
}

export default async function bench(): Promise<BenchRow[]> {
  const started = Date.now();
  const takeover = takeoverPointer(); // before run.ts rewrites latest.json
  const crashes: SingleRun[] = [];
  const sheds: SingleRun[] = [];
  const failures: string[] = [];
  for (let i = 1; i <= RUNS; i++) {
    if (i > 1 && Date.now() - started > SINGLE_BUDGET_MS) {
      process.stderr.write(`bench: migrate: ${i - 1} of ${RUNS} single-connection runs (time budget)\n`);
      break;
    }
    await withLab(`${i}`, SINGLE.mib, async (lab) => {
      for (const [trigger, runs] of [['shed', sheds], ['crash', crashes]] as const) {
        // A failed run is reported and skipped; the lab goes on (s1 is only crashed last).
        await oneConnection(lab, trigger).then(
          (run) => runs.push(run),
          (err: Error) => failures.push(`${trigger} run ${i}: ${err.message}`),
        );
      }
    }).catch((err: Error) => failures.push(`lab ${i}: ${err.message}`));
  }
  let spread: SpreadRun | undefined;
  await withLab('spread', SPREAD_LOAD.mib, async (lab) => {
    spread = await spreadRun(lab, SPREAD);
  }).catch((err: Error) => failures.push(`spread: ${err.message}`));
  for (const failure of failures) process.stderr.write(`bench: migrate: ${failure}\n`);
  if (failures.length) process.exitCode = 1;

  const rows = [...singleRows('crash', crashes), ...singleRows('shed', sheds), ...(spread ? spreadRows(spread) : [])];
  process.stdout.write(summary(crashes, sheds, spread, takeover, failures));
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'migrate.json'), JSON.stringify({ at: new Date().toISOString(), crash: crashes, shed: sheds, spread, takeover, failures }, null, 2));
  process.stderr.write(`bench: migrate: details in ${join(RESULTS, 'migrate.json')}\n`);
  return rows;
}

async function withLab(tag: string, mib: number, body: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = new Lab(`bench-mg-${tag}`);
  try {
    await lab.up({ servers: 4, files: [`big.bin:${mib}`], subnets: true, agent: true, clientRmem: null });
    await body(lab);
  } finally {
    await lab.down();
  }
}

/* One slow download from s1, then the trigger 1.5 s into its body. */
async function oneConnection(lab: Lab, trigger: 'crash' | 'shed'): Promise<SingleRun> {
  const file = lab.file('/big.bin');
  const since = Date.now();
  const client = lab.background('client', ['python3', CLIENT, lab.url('s1', '/big.bin'), '1', String(SINGLE.rate), file.sha256, '40', String(GIVE_UP_S)]);
  const notes: string[] = [];
  let triggerAt: number;
  let result: ClientResult;
  try {
    const readyAt = await ready(client, 15_000);
    await negotiated(lab, since, 1, 10_000);
    await sleep(Math.max(0, readyAt + SINGLE.leadMs - Date.now()));
    triggerAt = Date.now();
    if (trigger === 'crash') {
      await lab.crashNow('s1');
    } else {
      const answer = await lab.execNow('s1', ['curl', '-fsS', '-X', 'POST', 'http://127.0.0.1:9090/shed?count=1']);
      if (!/"handedOff":1\b/.test(answer)) notes.push(`shed answered ${answer.trim()}`);
    }
    await client.done(60_000);
    result = clientResult(client);
  } finally {
    client.kill();
  }

  const conn = result.conns[0]!;
  const id = `${lab.clientAddress}:${conn.port}>${lab.server('s1').vip}:80`;
  const after = (lines: Line[]) => lines.filter((l) => l.time >= triggerAt);
  let winner: string | null = null;
  let won: Line | undefined;
  let resumed: Line | undefined;
  for (const server of CANDIDATES) {
    const w = after(await lab.logged(server, 'won the Migrate race')).find((l) => l.conn === id);
    if (w && !won) {
      winner = server;
      won = w;
      resumed = after(await lab.logged(server, 'connection resumed')).find((l) => l.conn === id);
    } else if (w) notes.push(`${server} also won the race for the connection`);
  }
  let detectionMs: number | null = null;
  if (trigger === 'crash' && winner) {
    const dead = after(await lab.logged(winner, 'peer dead')).find((l) => l.peer === lab.server('s1').address);
    detectionMs = dead ? dead.time - triggerAt : null;
  } else if (trigger === 'shed') {
    const shed = after(await lab.logged('s1', 'shedding load: connections handed to the group'))[0];
    detectionMs = shed ? shed.time - triggerAt : null;
  }
  const race = winner ? after(await lab.logged(winner, 'Migrate race over')).find((l) => l.trigger === (trigger === 'crash' ? 'death' : 'handoff')) : undefined;
  const token = (await lab.logged('client-agent', 'negotiated')).find((l) => l.client === `${lab.clientAddress}:${conn.port}`)?.token;
  const migrated = after(await lab.logged('client-agent', 'migrated')).find((l) => l.token === token);
  const rejected = after(await lab.logged('client-agent', 'rejected Migrate SYN')).filter((l) => l.time <= triggerAt + 10_000);
  const arrival = resumed ? arrivalBeyond(result, conn, Number(resumed.serverOffset)) : undefined;
  notes.push(...(await oddities(lab, triggerAt, conn, winner)));
  if (arrival && resumed && arrival.firstResumedAt - resumed.time > 200) {
    notes.push(`slow first byte: ${round(arrival.firstResumedAt - resumed.time)} ms from ${winner}'s resume to the client; the client had ${arrival.unreadBefore} bytes unread at its last byte from s1`);
  }

  return {
    trigger,
    lab: lab.name,
    triggerAt,
    winner,
    detectionMs,
    raceStartMs: race ? round(race.time - Number(race.ms) - triggerAt) : null,
    sinceTriggerMs: num(won?.sinceTriggerMs),
    moveMs: num(resumed?.moveMs),
    probeMs: num(resumed?.probeMs),
    restoreMs: num(resumed?.restoreMs),
    probes: num(resumed?.probes),
    serverOffset: num(resumed?.serverOffset),
    unreadAtStall: arrival ? arrival.unreadBefore : null,
    agentMigratedMs: migrated ? migrated.time - triggerAt : null,
    firstResumedByteMs: arrival ? round(arrival.firstResumedAt - triggerAt) : null,
    resumedToByteMs: arrival && resumed ? round(arrival.firstResumedAt - resumed.time) : null,
    stallMs: arrival ? round(arrival.firstResumedAt - arrival.lastBeforeAt) : null,
    longestGapMs: longestGap(result, conn),
    rejectedSyns: rejected.length,
    bytes: conn.bytes,
    length: conn.length,
    exact: conn.exact && conn.bytes === conn.length,
    end: conn.end,
    notes,
  };
}

/* SPREAD slow downloads from s1; s1 crashes 2 s into them. */
async function spreadRun(lab: Lab, count: number): Promise<SpreadRun> {
  const file = lab.file('/big.bin');
  const since = Date.now();
  const client = lab.background('client', ['python3', CLIENT, lab.url('s1', '/big.bin'), String(count), String(SPREAD_LOAD.rate), file.sha256, '60', String(GIVE_UP_S)]);
  const notes: string[] = [];
  let triggerAt: number;
  let result: ClientResult;
  let agreed: number;
  try {
    const readyAt = await ready(client, 30_000);
    agreed = await negotiated(lab, since, count, 15_000).catch(async () => {
      const n = (await lab.logged('s1', 'TCP Migrate key agreed with the client agent')).filter((l) => l.time >= since).length;
      notes.push(`only ${n} of ${count} connections had agreed a Migrate key at the crash`);
      return n;
    });
    await sleep(Math.max(0, readyAt + SPREAD_LOAD.leadMs - Date.now()));
    triggerAt = Date.now();
    await lab.crashNow('s1');
    await client.done(90_000);
    result = clientResult(client);
  } finally {
    client.kill();
  }

  const s1 = lab.server('s1');
  const after = (lines: Line[]) => lines.filter((l) => l.time >= triggerAt);
  const agentMigrated = after(await lab.logged('client-agent', 'migrated'));
  const candidates: CandidateRow[] = [];
  const resumedAt = new Map<string, { time: number; offset: number }>();
  const wonBy = new Map<string, string>();
  let firstDead = Infinity;
  for (const server of CANDIDATES) {
    const metrics = await lab.metrics(server);
    const dead = after(await lab.logged(server, 'peer dead')).find((l) => l.peer === s1.address);
    if (dead) firstDead = Math.min(firstDead, dead.time);
    const won = after(await lab.logged(server, 'won the Migrate race'));
    for (const line of won) {
      const conn = String(line.conn);
      if (wonBy.has(conn)) notes.push(`${conn} won by ${wonBy.get(conn)} and ${server}`);
      wonBy.set(conn, server);
    }
    for (const line of after(await lab.logged(server, 'connection resumed'))) resumedAt.set(String(line.conn), { time: line.time, offset: Number(line.serverOffset) });
    const race = after(await lab.logged(server, 'Migrate race over')).find((l) => l.trigger === 'death');
    const service = `${lab.server(server).vip}:80`;
    candidates.push({
      server,
      won: metrics.value('wedge_takeovers_total', { result: 'resumed' }),
      wonByAgent: agentMigrated.filter((l) => l.to === service).length,
      lostRace: metrics.value('wedge_takeovers_total', { result: 'lost-race' }),
      stoodDown: metrics.value('wedge_takeovers_total', { result: 'stood-down' }),
      aborted: metrics.value('wedge_takeovers_total', { result: 'aborted' }),
      peerDeadMs: dead ? dead.time - triggerAt : null,
      raceMs: num(race?.ms),
    });
    if (won.length !== candidates.at(-1)!.won) notes.push(`${server}: ${won.length} 'won the Migrate race' logs but resumed=${candidates.at(-1)!.won} in /metrics`);
  }
  const agent = await lab.metrics('client-agent');
  const rejectedSyns: Record<string, number> = {};
  for (const sample of agent.all('wedge_agent_rejected_syns_total')) rejectedSyns[sample.labels.reason!] = sample.value;

  // Client side: per resumed connection, its first byte beyond the winner's serverOffset.
  const stalls: number[] = [];
  let clientLast = -Infinity;
  const ends: Record<string, number> = {};
  let notResumed = 0;
  for (const conn of result.conns) {
    ends[conn.end] = (ends[conn.end] ?? 0) + 1;
    const id = `${lab.clientAddress}:${conn.port}>${s1.vip}:80`;
    const resumed = resumedAt.get(id);
    if (!resumed) {
      if (!(conn.exact && conn.end === 'complete' && (conn.ended ?? 0) < triggerAt)) notResumed++;
      continue;
    }
    const arrival = arrivalBeyond(result, conn, resumed.offset);
    if (!arrival) continue;
    stalls.push(arrival.firstResumedAt - arrival.lastBeforeAt);
    clientLast = Math.max(clientLast, arrival.firstResumedAt);
  }
  if (notResumed > 0) notes.push(`${notResumed} of ${count} connections not resumed by anyone`);
  // Connections the agent moved (SYN-ACK sent, rewrite installed) to a server that never resumed them.
  const portOfToken = new Map((await lab.logged('client-agent', 'negotiated')).map((l) => [String(l.token), String(l.client).split(':')[1]]));
  const orphans = new Map<string, number>();
  for (const line of agentMigrated) {
    const to = lab.servers.find((x) => `${x.vip}:80` === line.to)?.name ?? String(line.to);
    const id = `${lab.clientAddress}:${portOfToken.get(String(line.token))}>${s1.vip}:80`;
    if (wonBy.get(id) !== to) orphans.set(to, (orphans.get(to) ?? 0) + 1);
  }
  for (const [to, n] of orphans) notes.push(`${n} connection(s) the agent moved to ${to} (SYN-ACK sent, rewrite installed) were not resumed by ${to}`);
  notes.push(...(await oddities(lab, triggerAt)));
  const resumedTimes = [...resumedAt.values()].map((r) => r.time);
  stalls.sort((a, b) => a - b);
  return {
    lab: lab.name,
    connections: count,
    negotiated: agreed,
    triggerAt,
    candidates,
    rejectedSyns,
    detectionMs: Number.isFinite(firstDead) ? firstDead - triggerAt : null,
    firstResumedMs: resumedTimes.length && Number.isFinite(firstDead) ? Math.min(...resumedTimes) - firstDead : null,
    lastResumedMs: resumedTimes.length && Number.isFinite(firstDead) ? Math.max(...resumedTimes) - firstDead : null,
    clientLastResumedMs: Number.isFinite(clientLast) ? round(clientLast - triggerAt) : null,
    stallMedianMs: stalls.length ? round(median(stalls)) : null,
    stallMaxMs: stalls.length ? round(stalls.at(-1)!) : null,
    resumed: resumedAt.size,
    complete: result.complete,
    exact: result.exact,
    ends,
    notes,
  };
}

/* ---- lab steps ---- */

/* Waits for the client's "ready" (every connection has its first body bytes); returns when. */
async function ready(client: Background, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void client.exited.then(() => (exited = true));
  while (!client.stdout.startsWith('ready')) {
    if (exited || Date.now() > deadline) throw new Error(`the benchmark client did not get ready: ${client.stderr || client.stdout}`);
    await sleep(10);
  }
  return Date.now();
}

/* Waits until s1 agreed Migrate keys for COUNT connections opened since SINCE (and the agreed
 * secrets had time to reach the group in an advert); returns how many. */
async function negotiated(lab: Lab, since: number, count: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = (await lab.logged('s1', 'TCP Migrate key agreed with the client agent')).filter((l) => l.time >= since).length;
    if (n >= count) {
      await sleep(200);
      return n;
    }
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} Migrate keys agreed after ${timeoutMs} ms`);
    await sleep(50);
  }
}

function clientResult(client: Background): ClientResult {
  const line = client.stdout.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`the benchmark client printed no result: ${client.stderr}`);
  return JSON.parse(line) as ClientResult;
}

/* Warnings worth a look after TRIGGER_AT: aborted connections, failed probes or restores, moves
 * the agent asked for by itself, and how CONN's download ended if not complete. */
async function oddities(lab: Lab, triggerAt: number, conn?: ClientConn, winner?: string | null): Promise<string[]> {
  const notes: string[] = [];
  const watched = ['connection aborted', 'Migrate takeover failed', 'probe failed', 'restore failed; resetting the client', 'cannot resume exactly; resetting'];
  for (const server of ['s1', ...CANDIDATES]) {
    for (const msg of watched) {
      for (const line of await lab.logged(server, msg)) {
        if (line.time < triggerAt || (conn && line.conn !== undefined && !String(line.conn).includes(`:${conn.port}>`))) continue;
        notes.push(`${server} '${msg}' +${line.time - triggerAt} ms${line.reason ? ` (${String(line.reason)}${line.err ? `: ${String(line.err)}` : ''})` : line.err ? ` (${String(line.err)})` : ''}`);
      }
    }
  }
  const moves = (await lab.logged('client-agent', 'move requested')).filter((l) => l.time >= triggerAt - 5000);
  if (moves.length) notes.push(`the agent asked for ${moves.length} move(s) by itself (slow connection)`);
  if (conn && conn.end !== 'complete') notes.push(`download ended '${conn.end}' at ${conn.bytes} of ${conn.length} body bytes${winner ? ` (winner ${winner})` : ' (no winner)'}`);
  return dedupe(notes);
}

/* Notes that differ only in their "+N ms" collapse into one, with the range and a count. */
function dedupe(notes: string[]): string[] {
  const groups = new Map<string, { note: string; times: number[] }>();
  for (const note of notes) {
    const key = note.replace(/\+\d+ ms/, '+… ms');
    const time = /\+(\d+) ms/.exec(note)?.[1];
    const group = groups.get(key) ?? { note: key, times: [] };
    if (time !== undefined) group.times.push(Number(time));
    else group.times.push(NaN);
    groups.set(key, group);
  }
  return [...groups.values()].map(({ note, times }) => {
    const known = times.filter(Number.isFinite);
    const range = known.length ? (Math.min(...known) === Math.max(...known) ? `+${known[0]} ms` : `+${Math.min(...known)}…${Math.max(...known)} ms`) : '';
    return `${note.replace('+… ms', range)}${times.length > 1 ? ` (×${times.length})` : ''}`;
  });
}

/* ---- client arrival curves ---- */

/* The first arrival beyond stream byte OFFSET (the client's next wanted byte when the winner
 * probed it): the first resumed byte, and the arrival before it. */
function arrivalBeyond(result: ClientResult, conn: ClientConn, offset: number): Arrival | undefined {
  const i = conn.curve.findIndex(([, total]) => total > offset);
  if (i <= 0) return undefined;
  return { firstResumedAt: result.base + conn.curve[i]![0], lastBeforeAt: result.base + conn.curve[i - 1]![0], unreadBefore: conn.curve[i - 1]![2] };
}

function longestGap(_result: ClientResult, conn: ClientConn): number {
  let longest = 0;
  for (let i = 1; i < conn.curve.length; i++) longest = Math.max(longest, conn.curve[i]![0] - conn.curve[i - 1]![0]);
  return round(longest);
}

/* ---- rows and summary ---- */

function singleRows(trigger: 'crash' | 'shed', runs: SingleRun[]): BenchRow[] {
  if (runs.length === 0) return [];
  const label = `${trigger}, 1 connection`;
  const row = (name: string, pick: (r: SingleRun) => number | null, unit: string, extra?: string): BenchRow => ({
    suite: 'migrate',
    name: `${label}: ${name}`,
    value: medianOf(runs.map(pick)),
    unit,
    note: `median of ${runs.length}: ${runs.map((r) => fmt(pick(r))).join(' | ')}${extra ? `; ${extra}` : ''}`,
  });
  const exact = runs.filter((r) => r.exact).length;
  const steps = `move ${fmt(medianOf(runs.map((r) => r.moveMs)))}, probe ${fmt(medianOf(runs.map((r) => r.probeMs)))}, restore ${fmt(medianOf(runs.map((r) => r.restoreMs)))} ms (medians)`;
  if (trigger === 'crash') {
    return [
      row('client stall (last byte from s1 to first resumed)', (r) => r.stallMs, 'ms'),
      row('detection (crash to winner\'s peer dead)', (r) => r.detectionMs, 'ms'),
      row('migration (peer dead to resumed: sinceTriggerMs)', (r) => r.sinceTriggerMs, 'ms', steps),
      row('crash to first resumed byte at the client', (r) => r.firstResumedByteMs, 'ms'),
      row('winner\'s resumed log to first byte at the client', (r) => r.resumedToByteMs, 'ms'),
      { suite: 'migrate', name: `${label}: downloads byte-exact`, value: exact, unit: `of ${runs.length}`, note: `winners ${runs.map((r) => r.winner ?? '-').join(' ')}` },
    ];
  }
  return [
    row('POST /shed to first resumed byte at the client', (r) => r.firstResumedByteMs, 'ms'),
    row('POST to shed logged on s1', (r) => r.detectionMs, 'ms', 'curl start-up and the admin API'),
    row('POST to the winner\'s race start (handoff advert)', (r) => r.raceStartMs, 'ms'),
    row('migration (handoff to resumed: sinceTriggerMs)', (r) => r.sinceTriggerMs, 'ms', steps),
    row('winner\'s resumed log to first byte at the client', (r) => r.resumedToByteMs, 'ms'),
    row('client stall (last byte from s1 to first resumed)', (r) => r.stallMs, 'ms'),
    { suite: 'migrate', name: `${label}: downloads byte-exact`, value: exact, unit: `of ${runs.length}`, note: `winners ${runs.map((r) => r.winner ?? '-').join(' ')}; ends ${runs.map((r) => r.end).join(' ')}` },
  ];
}

function spreadRows(s: SpreadRun): BenchRow[] {
  const label = `spread, ${s.connections} connections`;
  const rows: BenchRow[] = s.candidates.map((c) => ({
    suite: 'migrate',
    name: `${label}: won by ${c.server}`,
    value: c.won,
    unit: 'conns',
    note: `lost-race ${c.lostRace}, stood-down ${c.stoodDown}, aborted ${c.aborted}; agent saw ${c.wonByAgent}`,
  }));
  const rejected = Object.values(s.rejectedSyns).reduce((a, b) => a + b, 0);
  const lost = s.candidates.reduce((a, c) => a + c.lostRace, 0);
  rows.push(
    { suite: 'migrate', name: `${label}: agent refused Migrate SYNs`, value: rejected, unit: 'SYNs', note: `${Object.entries(s.rejectedSyns).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; lost-race total ${lost}` },
    { suite: 'migrate', name: `${label}: detection (crash to first peer dead)`, value: s.detectionMs ?? NaN, unit: 'ms' },
    { suite: 'migrate', name: `${label}: peer dead to last resumed (server logs)`, value: s.lastResumedMs ?? NaN, unit: 'ms', note: `first resumed +${fmt(s.firstResumedMs)} ms; ${s.resumed} resumed` },
    { suite: 'migrate', name: `${label}: crash to last first-resumed byte at the client`, value: s.clientLastResumedMs ?? NaN, unit: 'ms' },
    { suite: 'migrate', name: `${label}: client stall per connection (median)`, value: s.stallMedianMs ?? NaN, unit: 'ms', note: `longest ${fmt(s.stallMaxMs)} ms` },
    { suite: 'migrate', name: `${label}: downloads byte-exact`, value: s.exact, unit: `of ${s.connections}`, note: `complete ${s.complete}; ends ${Object.entries(s.ends).map(([k, v]) => `${k} ${v}`).join(', ')}` },
  );
  return rows;
}

function summary(crashes: SingleRun[], sheds: SingleRun[], spread: SpreadRun | undefined, takeover: string, failures: string[]): string {
  const out: string[] = ['', 'TCP Migrate (4 servers on own subnets, client agent; downloads from s1)'];
  const table = (title: string, runs: SingleRun[], first: string) => {
    const cells = (r: Array<string>) => `  ${r[0]!.padEnd(4)} ${r[1]!.padEnd(6)} ${r.slice(2, 5).map((c) => c.padStart(9)).join(' ')}  ${r[5]!.padEnd(17)} ${r.slice(6, 9).map((c) => c.padStart(8)).join(' ')}  ${r[9]}`;
    out.push('', title, cells(['run', 'winner', first, 'race', 'migrate', 'move/probe/rest.', '→1st B', '1st byte', 'stall', 'bytes']));
    runs.forEach((r, i) => {
      out.push(cells([`#${i + 1}`, r.winner ?? '-', fmt(r.detectionMs), fmt(r.raceStartMs), fmt(r.sinceTriggerMs), `${fmt(r.moveMs)}/${fmt(r.probeMs)}/${fmt(r.restoreMs)}`,
        fmt(r.resumedToByteMs), fmt(r.firstResumedByteMs), fmt(r.stallMs), r.exact ? 'exact' : `${r.end} ${r.bytes}/${r.length}`]));
      for (const note of r.notes) out.push(`        ! ${note}`);
    });
    const med = (pick: (r: SingleRun) => number | null) => fmt(medianOf(runs.map(pick)));
    out.push(cells(['med', '', med((r) => r.detectionMs), med((r) => r.raceStartMs), med((r) => r.sinceTriggerMs), `${med((r) => r.moveMs)}/${med((r) => r.probeMs)}/${med((r) => r.restoreMs)}`,
      med((r) => r.resumedToByteMs), med((r) => r.firstResumedByteMs), med((r) => r.stallMs), `${runs.filter((r) => r.exact).length}/${runs.length} exact`]));
  };
  const legend = 'race = to the winner\'s race start; migrate = its sinceTriggerMs (race start to resumed); →1st B = resumed log to the first resumed byte at the client';
  table('crash, 1 connection (ms from the crash; detection = the winner\'s peer dead)', crashes, 'detection');
  table('shed, 1 connection (ms from the POST; POST→log = s1 logs the shed)', sheds, 'POST→log');
  out.push(`  (${legend})`);
  if (spread) {
    out.push('', `spread: ${spread.connections} connections from s1, s1 crashed (${spread.negotiated} with agreed keys)`);
    out.push('  candidate  won  (agent)  lost-race  stood-down  aborted  peer dead  race');
    for (const c of spread.candidates) {
      out.push(`  ${c.server.padEnd(9)}  ${String(c.won).padStart(3)}  ${`(${c.wonByAgent})`.padStart(7)}  ${String(c.lostRace).padStart(9)}  ${String(c.stoodDown).padStart(10)}  ${String(c.aborted).padStart(7)}  ${`+${fmt(c.peerDeadMs)}`.padStart(9)}  ${fmt(c.raceMs)} ms`);
    }
    const rejected = Object.entries(spread.rejectedSyns).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    out.push(`  agent refused SYNs: ${rejected}`);
    out.push(`  detection ${fmt(spread.detectionMs)} ms; peer dead → first resumed ${fmt(spread.firstResumedMs)} ms, → last resumed ${fmt(spread.lastResumedMs)} ms; crash → last first-resumed byte at the client ${fmt(spread.clientLastResumedMs)} ms`);
    out.push(`  client stall per connection: median ${fmt(spread.stallMedianMs)} ms, longest ${fmt(spread.stallMaxMs)} ms; ${spread.resumed} resumed, ${spread.complete} complete, ${spread.exact}/${spread.connections} byte-exact`);
    for (const note of spread.notes) out.push(`        ! ${note}`);
  }
  for (const failure of failures) out.push(`  FAILED ${failure}`);
  out.push('', takeover, '');
  return out.join('\n');
}

/* One line quoting the takeover section's last figures (not re-measured here). */
function takeoverPointer(): string {
  try {
    const latest = JSON.parse(readFileSync(join(RESULTS, 'latest.json'), 'utf8')) as { at: string; suites?: Record<string, string>; rows: BenchRow[] };
    const rows = latest.rows.filter((r) => r.suite === 'takeover' && r.name.startsWith('1 connection'));
    const pick = (prefix: string) => rows.find((r) => r.name.startsWith(`1 connection: ${prefix}`))?.value;
    if (rows.length === 0) throw new Error('no takeover rows');
    return `compare: address takeover, 1 connection (takeover section, ${latest.suites?.takeover ?? latest.at}, not re-run): detection ${fmt(pick('detection') ?? null)} ms, takeover ${fmt(pick('takeover') ?? null)} ms, longest client stall ${fmt(pick('longest') ?? null)} ms (npm run bench -- takeover)`;
  } catch {
    return 'compare: address takeover figures: `npm run bench -- takeover` (none in bench-results/latest.json)';
  }
}

/* ---- numbers ---- */

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}


function medianOf(values: Array<number | null>): number {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v));
  return known.length ? median(known) : NaN;
}

function fmt(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  return Math.abs(value) >= 100 ? value.toFixed(0) : String(+value.toFixed(1));
}
