/** Settings shared by the database adapters. */
import type { DaemonConfig } from "../../src/Config.js"

export const poolSize = (cfg: DaemonConfig) => cfg.database.pool_size ?? cfg.performance.connection_pool_size

/** Connect (and pool wait) bound: never longer than a request may take. */
export const connectTimeoutMs = (cfg: DaemonConfig) => Math.min(cfg.database.timeout, cfg.performance.query_timeout)

export const APPLICATION_NAME = "dbal-daemon"
