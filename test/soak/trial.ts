/*
 * One soak run: a scenario (scenario.ts) in, an outcome out. A lab of its own is made, a stock
 * client downloads from s1 reading slowly, the fault strikes at the scenario's moment, and what
 * the client got is judged against the file (every byte, not only the length) and against what
 * the live servers counted. The lab is always removed. No wait is unbounded: the clients have
 * their own stall timeouts, and a watchdog here kills a client whose output stops growing.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PACKAGE_ROOT } from '../../config/package.js';
import { chooseAdopter } from '../../takeover/choose.js';
import { Background, Lab, until } from '../support/lab.js';
import type { Scenario } from './scenario.js';

const KEEPALIVE_CLIENT = join(PACKAGE_ROOT, 'test', 'takeover', 'fixtures', 'keepalive-client.py');
/* A client whose output does not grow for this long is hung (the clients' own bounds match). */
export const STALL_S = 15;
const FILE = '/soak.bin';

export type Outcome = 'exact' | 'aborted' | 'client-abort' | 'corrupted' | 'hung' | 'uncounted' | 'leak' | 'server-died' | 'harness-error' | 'missed';
/* What may happen without failing the campaign. */
export const ACCEPTED: readonly Outcome[] = ['exact', 'aborted', 'client-abort', 'missed'];

export interface TrialResult {
  outcome: Outcome;
  detail: string;
  seconds: number;
}

/** Runs S in a lab named after TAG; for a run that was not exact, the servers' story goes to STORY. */
export async function trial(s: Scenario, tag: string, story: string): Promise<TrialResult> {
  const started = Date.now();
  const lab = new Lab(tag);
  try {
    const judged = await inLab(lab, s);
    if (judged.outcome !== 'exact' && judged.outcome !== 'client-abort') {
      await mkdir(dirname(story), { recursive: true });
      await writeFile(story, `${judged.outcome}: ${judged.detail}\n${await lab.story()}\n`);
      judged.detail += `; story in ${story}`;
    }
    return { ...judged, seconds: (Date.now() - started) / 1000 };
  } catch (err) {
    // The harness itself failed (lab up, a CLI call): not a verdict on the servers, but not a pass.
    return { outcome: 'harness-error', detail: `harness: ${(err as Error).message.split('\n')[0]}`, seconds: (Date.now() - started) / 1000 };
  } finally {
    await lab.down();
  }
}

async function inLab(lab: Lab, s: Scenario): Promise<{ outcome: Outcome; detail: string }> {
  // The servers' links are shaped to the client's rate too: curl 7.88's --limit-rate does not hold
  // above about 1 MB/s, and a download that is over before its moment tests nothing.
  const rate = `${Math.round((s.rate * 8) / 1000)}kbit`;
  await lab.up({ servers: s.servers, origin: s.origin, files: [`soak.bin:${s.mib}`], rate, subnets: s.transport === 'migrate', agent: s.transport === 'migrate' });
  const file = await readFile(join(lab.server('s1').root, FILE.slice(1)));
  const expected = Buffer.concat(Array.from({ length: s.requests }, () => file));
  const out = lab.out('client.out');
  const pause = lab.out('go');
  const timeoutS = Math.ceil((expected.length / s.rate) * 3 + 60);
  const child = spawn('ip', ['netns', 'exec', lab.namespace('client'), ...command(lab, s, out, pause, timeoutS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const client = new Background(child);

  let stalled = false;
  const watchdog = watch(out, client, () => s.moment === 'idle' && !existsSync(pause), () => (stalled = true));
  const crashed: string[] = [];
  let faultAt = 0;
  try {
    faultAt = await awaitMoment(s, out, client, child.pid!);
    if (!client.running) return { outcome: 'missed', detail: `the client ended (exit ${await client.exited}) before the fault's moment` };
    await strike(lab, s, client, crashed);
    if (s.moment === 'idle') {
      await sleep(s.idleMs);
      await writeFile(pause, '');
    }
    await client.done(timeoutS * 1000);
  } finally {
    client.kill();
    watchdog.stop();
  }
  const code = await client.exited;
  const got = await readFile(out).catch(() => Buffer.alloc(0));
  const live = lab.servers.map((server) => server.name).filter((name) => !crashed.includes(name));
  const resumed = (await Promise.all(live.map((server) => lab.logged(server, 'connection resumed')))).flat().map((line) => line.serverOffset);
  const at = `fault at ${faultAt} B, got ${got.length}/${expected.length} B, exit ${code}${resumed.length ? `, resumed at ${resumed.join(',')}` : ''}`;
  const why = `${at}: ${client.stderr.trim().split('\n').slice(-1)[0] ?? ''}`;

  // Every byte the client took must be the file's, whatever else happened; only an error
  // answer's body (python appends it too) is not the file.
  const responses = pythonResponses(s, client.stdout);
  const statuses = responses.map((r) => r.status);
  const failedAt = statuses.findIndex((status) => status !== 200);
  const body = failedAt < 0 ? got : got.subarray(0, responses.slice(0, failedAt).reduce((sum, r) => sum + r.bytes, 0));
  const shared = Math.min(body.length, expected.length);
  if (body.length > expected.length || !body.subarray(0, shared).equals(expected.subarray(0, shared))) {
    return { outcome: 'corrupted', detail: `${why}; first difference at byte ${firstDifference(body, expected)}` };
  }
  const counted = await abortsCounted(lab, live, s.transport);
  if (counted === undefined) return { outcome: 'server-died', detail: `${why}; a server that was not crashed no longer answers /metrics` };
  if (s.fault === 'client-reset') {
    const left = await drained(lab, live);
    return left ? { outcome: 'leak', detail: `${at}; ${left}` } : { outcome: 'client-abort', detail: at };
  }
  if (code === 0 && statuses.every((status) => status === 200)) {
    return got.length === expected.length ? { outcome: 'exact', detail: at } : { outcome: 'corrupted', detail: `${why}; the client exited 0 on a short body` };
  }
  if (stalled || timedOut(s, code, client.stderr)) return { outcome: 'hung', detail: `${why}; no progress for ${STALL_S} s` };
  const http = statuses.some((status) => status !== 200) ? `; HTTP ${statuses.join(',')}` : '';
  return counted.total > 0 ? { outcome: 'aborted', detail: `${why}${http}; counted: ${counted.reasons}` } : { outcome: 'uncounted', detail: `${why}${http}; no server counted an abort` };
}

function command(lab: Lab, s: Scenario, out: string, pause: string, timeoutS: number): string[] {
  const url = lab.url('s1', FILE);
  switch (s.client) {
    case 'curl':
      return ['curl', '-sS', '-f', '--limit-rate', String(s.rate), '--speed-limit', '1', '--speed-time', String(STALL_S), '--max-time', String(timeoutS), '-o', out, url];
    case 'wget':
      return ['wget', '-nv', '--tries=1', `--read-timeout=${STALL_S}`, `--limit-rate=${s.rate}`, '-O', out, url];
    case 'python':
      return ['python3', KEEPALIVE_CLIENT, lab.server('s1').vip, FILE, String(s.requests), out, '--rate', String(s.rate), ...(s.moment === 'idle' ? ['--pause', pause] : [])];
  }
}

/* Waits for the scenario's moment; returns how many bytes the client had then. */
async function awaitMoment(s: Scenario, out: string, client: Background, pid: number): Promise<number> {
  const bound = Date.now() + 30_000;
  for (;;) {
    if (!client.running || Date.now() > bound) return size(out);
    if (s.moment === 'idle' && client.stdout.includes('"idle"')) return size(out);
    // 'headers': as soon as the client's connection is up, so the request and the response head
    // are on their way: read from the client's own /proc/PID/net/tcp (its namespace's), far
    // quicker than starting `ss` in it. (Slowing s1's link cannot hold a head back: its tbf lets 64 KiB through
    // at once and queues 4 MiB, which would keep a reset client's RST from coming back for minutes.)
    if (s.moment === 'headers' && (await connected(pid))) return size(out);
    if ((s.moment === 'early-body' || s.moment === 'mid-body') && (await size(out)) >= s.atBytes) return size(out);
    await sleep(s.moment === 'headers' ? 1 : 20);
  }
}

async function strike(lab: Lab, s: Scenario, client: Background, crashed: string[]): Promise<void> {
  switch (s.fault) {
    case 'crash':
      crashed.push('s1');
      await (s.linksFirst ? lab.crashNow('s1') : lab.crash('s1'));
      return;
    case 'cascade': {
      // Address takeover: s1's adopter is the rendezvous choice over the others. TCP Migrate ranks
      // per connection; the first of the others by name is as likely as any to be it.
      const others = lab.servers.filter((server) => server.name !== 's1');
      const chosen = s.transport === 'address' ? chooseAdopter(lab.server('s1').vip, others.map((o) => o.address)) : others[0]!.address;
      const adopter = others.find((o) => o.address === chosen)!.name;
      crashed.push('s1', adopter);
      const first = lab.crashNow('s1');
      await sleep(s.cascadeMs);
      await Promise.all([first, lab.crashNow(adopter)]);
      return;
    }
    case 'wrong-death': {
      const first = lab.declareDeadNow('s1');
      if (s.repeatMs > 0) {
        await sleep(s.repeatMs);
        await lab.declareDeadNow('s1');
      }
      await first;
      return;
    }
    case 'client-reset':
      client.kill('SIGKILL');
      return;
  }
}

/* Polls OUT; calls STALLED and kills the client when it stops growing (not while PAUSED). */
function watch(out: string, client: Background, paused: () => boolean, stalled: () => void): { stop(): void } {
  let last = -1;
  let since = Date.now();
  const timer = setInterval(() => {
    void size(out).then((now) => {
      if (now !== last || paused()) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since > (STALL_S + 5) * 1000 && client.running) {
        stalled();
        client.kill();
      }
    });
  }, 250);
  return { stop: () => clearInterval(timer) };
}

/*
 * Aborts the live servers counted (resets and aborted takeovers), and the client agent's resets
 * of connections no replica could move, with their reasons; undefined if a server is gone.
 */
async function abortsCounted(lab: Lab, live: string[], transport: Scenario['transport']): Promise<{ total: number; reasons: string } | undefined> {
  const counted: string[] = [];
  let total = 0;
  for (const server of transport === 'migrate' ? [...live, 'client-agent'] : live) {
    try {
      const metrics = await lab.metrics(server);
      const samples = [
        ...metrics.all('wedge_aborts_total'),
        ...metrics.all('wedge_takeovers_total').filter((sample) => sample.labels.result === 'aborted'),
        ...metrics.all('wedge_agent_orphan_resets_total'),
      ];
      for (const sample of samples.filter((sample) => sample.value > 0)) {
        total += sample.value;
        counted.push(`${server} ${sample.name.replace(/^wedge_|_total$/g, '')}{${sample.labels.reason ?? sample.labels.result ?? ''}}=${sample.value}`);
      }
    } catch {
      return undefined;
    }
  }
  return { total, reasons: counted.join(', ') };
}

/* After a client reset, every live server must forget the connection; what is left otherwise. */
async function drained(lab: Lab, live: string[]): Promise<string | undefined> {
  const left = async () => (await Promise.all(live.map(async (server) => (await lab.connections(server)).map((row) => `${server} ${row.state} ${row.bytes.toClient} B out`)))).flat();
  try {
    await until('the servers to drop the reset connection', async () => (await left()).length === 0, 15_000);
    return undefined;
  } catch {
    return `connections left after 15 s: ${(await left()).join(', ')}`;
  }
}

/* Whether the client (PID, in its namespace) has an established TCP connection to port 80. */
async function connected(pid: number): Promise<boolean> {
  const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '');
  // Columns: sl local_address rem_address st ...; 0050 is port 80, 01 ESTABLISHED.
  return table.split('\n').some((line) => / [0-9A-F]{8}:0050 01 /.test(line));
}

/* The keep-alive client's report of each response (none from curl and wget, which fail on an error status). */
function pythonResponses(s: Scenario, stdout: string): { status: number; bytes: number }[] {
  if (s.client !== 'python') return [];
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    return (JSON.parse(last) as { requests: { status: number; bytes: number }[] }).requests;
  } catch {
    return [];
  }
}

function timedOut(s: Scenario, code: number, stderr: string): boolean {
  if (s.client === 'curl' && code === 28) return true;
  return /timed? ?out/i.test(stderr);
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

async function size(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.size ?? 0;
}
