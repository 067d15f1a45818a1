import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  // Tests use the client's sources (package.json exports the compiled dist/client to consumers).
  resolve: { alias: { "dbal-daemon/client": fileURLToPath(new URL("./src/client/index.ts", import.meta.url)) } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The dialect suites share the database servers; files run in parallel on 2 cores.
    setupFiles: ["test/support/cleanup.ts"],
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ["default"]
  }
})
