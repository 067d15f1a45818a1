import { defineConfig } from "vitest/config"

// `npm run test:reliability`: the long version of test/reliability (DBAL_RELIABILITY=long),
// one file at a time so that the load figures are not shared with another suite's work.
export default defineConfig({
  test: {
    include: ["test/reliability/**/*.test.ts"],
    testTimeout: 60 * 60_000,
    hookTimeout: 10 * 60_000,
    setupFiles: ["test/support/cleanup.ts"],
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
    fileParallelism: false,
    globalSetup: ["test/reliability/summary.ts"],
    reporters: ["default"]
  }
})
