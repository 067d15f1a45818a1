/**
 * Shared by the audit test files: daemon configurations with the audit log on, the audit file
 * parsed, and direct SQL on a test database (PostgreSQL through pg, SQLite through the
 * better-sqlite3 driver the daemon itself uses) to check what really reached the database.
 */
import { until } from "../support/wait.js"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import pg from "pg"
import type { AuditRecord } from "../../src/services/AuditLog.js"
import { daemonConfig, PG, type TestDatabase } from "../support/services.js"

interface SqliteStatement {
  all(...params: Array<unknown>): Array<Record<string, unknown>>
}
interface SqliteDb {
  prepare(sql: string): SqliteStatement
  close(): void
}
type SqliteCtor = new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => SqliteDb

const require = createRequire(import.meta.url)

const connectionOf = (db: TestDatabase): Record<string, unknown> =>
  (db.databaseConfig as { connection: Record<string, unknown> }).connection

/** Runs one read-only query directly on the test database (no daemon involved). */
export const query = async (db: TestDatabase, sql: string): Promise<Array<Record<string, unknown>>> => {
  const conn = connectionOf(db)
  if (db.dialect === "postgresql") {
    const c = new pg.Client({ ...PG, database: String(conn.database), connectionTimeoutMillis: 5000 })
    await c.connect()
    try {
      return (await c.query<Record<string, unknown>>(sql)).rows
    } finally {
      await c.end()
    }
  }
  if (db.dialect === "sqlite") {
    const Sqlite = require("better-sqlite3") as SqliteCtor
    const s = new Sqlite(String(conn.filename), { readonly: true, fileMustExist: true })
    try {
      return s.prepare(sql).all()
    } finally {
      s.close()
    }
  }
  throw new Error(`query: dialect ${db.dialect} is not used by the audit tests`)
}

/** The security section of `daemonConfig(db)` merged with `security` (audit on by default). */
export const auditDaemonConfig = (db: TestDatabase, security: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
  const base = daemonConfig(db)
  return { ...base, ...extra, security: { ...(base.security as Record<string, unknown>), audit_log: true, ...security } }
}

/** Every line of an audit file, parsed (a line that is not JSON fails the test). */
export const readAudit = (file: string): Array<AuditRecord> =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as AuditRecord)

/** The audit records a daemon printed on stdout (`{"audit": record}` lines). */
export const stdoutAudit = (output: string): Array<AuditRecord> =>
  output
    .split("\n")
    .filter((l) => l.startsWith('{"audit":'))
    .map((l) => (JSON.parse(l) as { audit: AuditRecord }).audit)

/** Polls `probe` until it returns a value other than undefined, failing after `timeoutMs`. */
export const waitFor = <A>(what: string, probe: () => Promise<A | undefined> | A | undefined, timeoutMs = 15_000): Promise<A> =>
  until(what, probe, timeoutMs)
