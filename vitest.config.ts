import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{gateway,cluster,web-min,bench,deploy}/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tests start real servers, browsers and timed multicast; one worker per core keeps them honest.
    maxWorkers: 2,
  },
});
