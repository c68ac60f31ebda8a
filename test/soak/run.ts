/*
 * `npm run soak`: the fault campaign (issue 12). Runs of random scenarios (scenario.ts), each in a
 * lab of its own (trial.ts), one after the other; prints a line per run, then a table by scenario
 * kind and, for every run that was not exact, the command that replays it (the servers' story of
 * it is in soak-results/). A replay draws the same scenario; the timing is the machine's. Exits non-zero if any
 * run was corrupted, hung or otherwise failed (see ACCEPTED). Not part of `npm test`.
 *
 *   --runs N      at most N runs (default 200)
 *   --minutes M   start no run after M minutes (default 60)
 *   --seed S      the campaign's seed (default: random; always printed)
 *   --only N      only run N of that seed (a replay)
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PACKAGE_ROOT } from '../../config/package.js';
import { describe, kind, scenario } from './scenario.js';
import { ACCEPTED, trial, type Outcome } from './trial.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    minutes: { type: 'string', default: '60' },
    seed: { type: 'string' },
    only: { type: 'string' },
  },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const runs = values.only === undefined ? range(1, Number(values.runs)) : [Number(values.only)];
const deadline = Date.now() + Number(values.minutes) * 60_000;
if (!Number.isInteger(seed) || runs.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--seed, --runs and --only take whole numbers (runs count from 1)');

// Ctrl-C: the run under way finishes (it is bounded) and takes its lab down; no new run starts.
let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('soak: interrupted; finishing the current run (Ctrl-C again to leave its lab up)\n');
});

/* What the servers logged in each run that was not exact (*.log: ignored by git). */
const STORIES = join(PACKAGE_ROOT, 'soak-results');

const COLUMNS: [string, Outcome[]][] = [
  ['exact', ['exact']],
  ['aborted loudly', ['aborted']],
  ['client abort', ['client-abort']],
  ['corrupted', ['corrupted']],
  ['hung', ['hung']],
  ['fault missed', ['missed']],
  ['other failure', ['uncounted', 'leak', 'server-died', 'harness-error']],
];

process.stdout.write(`soak: seed ${seed}, ${runs.length === 1 ? `run ${runs[0]}` : `up to ${runs.length} runs`}, ${values.minutes} min\n`);
const started = Date.now();
const done: { run: number; kind: string; outcome: Outcome; detail: string }[] = [];
for (const run of runs) {
  if (interrupted || Date.now() > deadline) break;
  const s = scenario(seed, run);
  const result = await trial(s, `soak${run}`, join(STORIES, `seed-${seed}-run-${run}.log`));
  done.push({ run, kind: kind(s), outcome: result.outcome, detail: result.detail });
  process.stdout.write(`#${String(run).padStart(3)} ${result.outcome.padEnd(13)} ${result.seconds.toFixed(1).padStart(5)} s  ${describe(s)}  [${result.detail}]\n`);
}

const kinds = [...new Set(done.map((d) => d.kind))].sort();
const header = ['scenario', 'runs', ...COLUMNS.map(([name]) => name)];
const rows = [...kinds.map((k) => row(k, done.filter((d) => d.kind === k))), row('all', done)];
process.stdout.write(`\nsoak: ${done.length} runs in ${((Date.now() - started) / 60_000).toFixed(1)} min, seed ${seed}, ${new Date().toISOString().slice(0, 10)}\n`);
process.stdout.write(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|\n`);
for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);

const notExact = done.filter((d) => d.outcome !== 'exact');
if (notExact.length > 0) process.stdout.write('\nnot exact (replay with the command shown):\n');
for (const d of notExact) process.stdout.write(`  ${d.outcome.padEnd(13)} npm run soak -- --seed ${seed} --only ${d.run}   # ${d.kind}: ${d.detail}\n`);
const failed = done.filter((d) => !ACCEPTED.includes(d.outcome));
process.stdout.write(failed.length === 0 ? '\nsoak: no run corrupted, hung or failed\n' : `\nsoak: ${failed.length} run(s) failed\n`);
process.exitCode = failed.length === 0 ? 0 : 1;

function row(name: string, of: typeof done): string[] {
  return [name, String(of.length), ...COLUMNS.map(([, outcomes]) => String(of.filter((d) => outcomes.includes(d.outcome)).length))];
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}
