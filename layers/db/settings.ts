/** Settings shared by the database adapters. */
import { Redacted } from "effect"
import * as fs from "node:fs"
import type { DaemonConfig } from "../../src/Config.js"

export const poolSize = (cfg: DaemonConfig) => cfg.database.pool_size ?? cfg.performance.connection_pool_size

/** Connect (and pool wait) bound: never longer than a request may take. */
export const connectTimeoutMs = (cfg: DaemonConfig) => Math.min(cfg.database.timeout, cfg.performance.query_timeout)

export const APPLICATION_NAME = "dbal-daemon"

/**
 * The password a new database connection sends. With `password_file` the file is read again for
 * each connection, so that a rotated password is used from the next reconnect on without a
 * restart; a file that cannot be read then (being replaced, say) falls back to the last password
 * read, which the server may still accept.
 */
export const connectionPassword = (c: DaemonConfig["database"]["connection"]): string | (() => Promise<string>) | undefined => {
  const file = c.password_file
  let last = c.password === undefined ? undefined : Redacted.value(c.password)
  if (file === undefined) return last
  return async () => {
    try {
      last = (await fs.promises.readFile(file, "utf8")).replace(/\r?\n$/, "")
    } catch {
      // keep the last password read
    }
    return last ?? ""
  }
}
