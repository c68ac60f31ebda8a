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

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/* "min–max" of a series, for a row's note (a shared machine is noisy: say how much). */
export function spread(values: number[], digits = 2): string {
  return `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
}
