import { defineConfig } from 'vitest/config';

// Lab tests build network namespaces and start real daemons: give them time, and at most two
// files at once on this two-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
