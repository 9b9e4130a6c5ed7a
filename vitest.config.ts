import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{gateway,cluster,web-min,bench,deploy}/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tests start real servers and browsers; two machines' worth of cores is plenty.
    maxWorkers: 3,
  },
});
