/**
 * The benchmarked daemon's configuration, shared by bench/run.ts and bench/read-ab.ts: a `god`
 * user who sees and writes only active pages (a row filter on every PageView operation), rate
 * limiting on with limits far above the load, the audit file (fsync on unless told otherwise),
 * and the service token the benchmark authenticates with.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SERVICE_TOKEN, type TestDatabase, writeConfig } from "../test/support/services.js"

/** Writes the rules file into `dir` and answers its path. */
export const writeBenchRules = (dir: string): string => {
  const rulesFile = path.join(dir, "bench_rules.yaml")
  fs.writeFileSync(
    rulesFile,
    JSON.stringify({ rules: [{ roles: ["god"], entities: ["PageView"], operations: "*", filter: { isActive: true } }] }, null, 2)
  )
  return rulesFile
}

export interface BenchDaemonOptions {
  readonly db: TestDatabase
  /** The configuration's folder (its audit file goes below it). */
  readonly dir: string
  readonly rulesFile: string
  readonly pool: number
  readonly auditFsync?: boolean
  readonly performance?: Record<string, unknown>
}

/** Writes the daemon's configuration into `o.dir` and answers its path. */
export const writeBenchDaemonConfig = (o: BenchDaemonOptions): string => {
  fs.mkdirSync(o.dir, { recursive: true })
  return writeConfig(
    {
      server: { host: "127.0.0.1", port: 0, max_connections: 20_000, max_connections_per_address: 20_000 },
      database: { ...o.db.databaseConfig, pool_size: o.pool, auto_migrate: true },
      security: {
        audit_log: true,
        audit_log_path: path.join(o.dir, "audit", "audit.log"),
        audit: { fsync: o.auditFsync ?? true },
        rate_limit: { enabled: true, requests_per_minute: 100_000_000, burst: 10_000_000 },
        auth: { service_tokens: [{ name: "bench", token: SERVICE_TOKEN }] },
        acl: { rules_file: o.rulesFile }
      },
      performance: { cache_enabled: false, ...o.performance }
    },
    o.dir
  )
}
