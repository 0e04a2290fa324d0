import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Hang guards only: tests wait on events (tests/helpers/events.ts), never on deadlines of their
    // own, so these are sized for a two-core CI machine running every suite at once.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
  },
});
