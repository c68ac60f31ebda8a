/* One measured figure. Each bench module (test/bench/*.bench.ts) exports
 * `default async function bench(): Promise<BenchRow[]>`; test/bench/run.ts runs them all and
 * prints one table, ratios included. Benchmarks never assert timings. */
export interface BenchRow {
  suite: string;
  name: string;
  value: number;
  unit: string;
  note?: string;
}
