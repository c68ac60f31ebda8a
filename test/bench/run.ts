/*
 * `npm run bench`: runs every test/bench/*.bench.ts module (compiled to dist/) one after the
 * other, prints one table and writes bench-results/latest.json. Figures are medians of repeated
 * runs on a shared, noisy machine: compare rows of one run with each other (the ratios), not
 * with another day's numbers. `npm run bench -- relay` runs only the modules whose name matches
 * (`migrate`: the TCP Migrate lab section); latest.json then keeps the other sections' rows from
 * before, and `suites` says when each section last ran.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchRow } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv[2];
const modules = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js') && (!only || f.includes(only)))
  .sort();

const rows: BenchRow[] = [];
for (const file of modules) {
  process.stderr.write(`bench: ${file} ...\n`);
  const started = Date.now();
  try {
    const bench = (await import(pathToFileURL(join(here, file)).href)) as { default: () => Promise<BenchRow[]> };
    const result = await bench.default();
    rows.push(...result);
    for (const row of result) printRow(row);
  } catch (err) {
    process.stderr.write(`bench: ${file} failed: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  }
  process.stderr.write(`bench: ${file} took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

function printRow(row: BenchRow): void {
  const value = Math.abs(row.value) >= 100 ? row.value.toFixed(0) : row.value.toPrecision(3);
  process.stdout.write(`${row.suite.padEnd(10)} ${row.name.padEnd(58)} ${value.padStart(12)} ${row.unit.padEnd(10)} ${row.note ?? ''}\n`);
}

const out = join(here, '..', '..', '..', 'bench-results');
mkdirSync(out, { recursive: true });
const at = new Date().toISOString();
const suites: Record<string, string> = {};
let kept: BenchRow[] = [];
if (only) {
  // A partial run replaces only the rows of the sections it ran.
  try {
    const previous = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { at: string; suites?: Record<string, string>; rows: BenchRow[] };
    const ran = new Set(rows.map((row) => row.suite));
    kept = previous.rows.filter((row) => !ran.has(row.suite));
    for (const row of kept) suites[row.suite] = previous.suites?.[row.suite] ?? previous.at;
  } catch {
    // no earlier results
  }
}
for (const row of rows) suites[row.suite] = at;
writeFileSync(join(out, 'latest.json'), JSON.stringify({ at, suites, rows: [...kept, ...rows] }, null, 2));
process.stderr.write(`bench: wrote ${join(out, 'latest.json')}\n`);
