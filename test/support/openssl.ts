/**
 * The openssl command line, which the TLS tests use to make certificates. `checkOpenssl` says why
 * a suite must be skipped when openssl is missing, and fails the run instead under
 * DBAL_REQUIRE_SERVICES=1.
 */
import { spawnSync } from "node:child_process"
import { requireServices } from "./services.js"

const opensslMissing = (): string | undefined => {
  const r = spawnSync("openssl", ["version"], { encoding: "utf8", timeout: 10_000 })
  return r.error !== undefined
    ? `openssl is not installed (${r.error.message})`
    : r.status === 0
      ? undefined
      : `openssl version exited with ${r.status}`
}

/** Why `what` cannot run here (openssl missing), or undefined; throws under DBAL_REQUIRE_SERVICES=1. */
export const checkOpenssl = (what: string): string | undefined => {
  const missing = opensslMissing()
  if (missing !== undefined) {
    if (requireServices) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${missing}`)
    console.warn(`skipping ${what}: ${missing}`)
  }
  return missing
}

/** Runs openssl in `dir`; throws with its stderr when it fails. */
export const openssl = (dir: string, args: ReadonlyArray<string>): void => {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8", timeout: 30_000 })
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`)
}
