/**
 * Database layer: one SqlClient chosen by `database.adapter` (sqlite, postgresql, mysql), set up
 * so that the three behave alike (UTC, binary string comparison, foreign keys enforced), and the
 * migration that creates what is missing.
 *
 * Operations (timeouts and outages):
 * - Every connection carries the database's own statement time limit, equal to
 *   `performance.query_timeout`, so that a statement of a request that timed out (504) does not
 *   keep running: PostgreSQL `statement_timeout` (a startup parameter of each connection of our own
 *   pg.Pool; PgClient.layer cannot pass it), besides the pg_cancel_backend PgClient sends when the
 *   request's fiber is interrupted; MariaDB `max_statement_time` (seconds, every statement) or
 *   MySQL `max_execution_time` (milliseconds, read-only SELECTs only), set by `SET SESSION` on each
 *   new connection of our own mysql2 pool (MysqlClient hides its pool, so the client is built here
 *   with the same SqlClient.make; the flavour is read once with SELECT VERSION() before the pool
 *   opens). SQLite (better-sqlite3) cannot be interrupted: a statement runs to its end, writers
 *   wait at most `busy_timeout` for the lock, and the 504 is answered when it returns.
 * - Connection attempts are bounded by min(database.timeout, performance.query_timeout); a
 *   refused connection fails at once. A pool slot is waited for at most that long (pg's
 *   connectionTimeoutMillis covers the queue too; mysql2 opens connections up to the pool size and
 *   fails each waiting request with the connection error). Broken connections are dropped by the
 *   pools and new ones opened on demand, so the daemon recovers by itself when the database
 *   returns.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { type ConfigError, Context, Effect, Layer, Redacted, Stream } from "effect"
import * as Mysql from "mysql2"
import pg from "pg"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { createIndexes, createTable, type Dialect, schemaDdl } from "../src/entity/Ddl.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"
import { Database } from "../src/services/Database.js"

const poolSize = (cfg: DaemonConfig) => cfg.database.pool_size ?? cfg.performance.connection_pool_size

/** Connect (and pool wait) bound: never longer than a request may take. */
export const connectTimeoutMs = (cfg: DaemonConfig) => Math.min(cfg.database.timeout, cfg.performance.query_timeout)

const APPLICATION_NAME = "dbal-daemon"

/**
 * PostgreSQL through our own pg.Pool: the options PgClient.layer would set, plus the server-side
 * `statement_timeout` of every connection.
 */
const pgLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient, SqlError> => {
  const c = cfg.database.connection
  const connectMs = connectTimeoutMs(cfg)
  const acquire = Effect.gen(function* () {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = new pg.Pool({
          Client: PreparingClient,
          host: c.host!,
          ...(c.port === undefined ? {} : { port: c.port }),
          database: c.database!,
          user: c.user!,
          ...(c.password === undefined ? {} : { password: Redacted.value(c.password) }),
          ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } }),
          max: poolSize(cfg),
          connectionTimeoutMillis: connectMs,
          application_name: APPLICATION_NAME,
          statement_timeout: cfg.performance.query_timeout
        })
        // An idle client that loses its connection is dropped by the pool; nothing to do here.
        p.on("error", () => undefined)
        return p
      }),
      (p) => Effect.promise(() => p.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
    )
    yield* Effect.tryPromise({
      try: () => pool.query("SELECT 1"),
      catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
    }).pipe(
      Effect.timeoutFail({
        duration: connectMs,
        onTimeout: () => new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
      })
    )
    return pool
  })
  return PgClient.layerFromPool({ acquire, applicationName: APPLICATION_NAME })
}

/**
 * Prepared statement reuse on PostgreSQL: a parameterized statement is sent as a named statement,
 * so each connection parses and plans it once and then only binds and executes it. The names of
 * the first PREPARED_STATEMENTS distinct texts are kept (the daemon's statements come from a
 * small set of shapes); texts beyond them run unnamed, so the server's memory stays bounded.
 */
const PREPARED_STATEMENTS = 500
const statementNames = new Map<string, string>()
const statementName = (text: string): string | undefined => {
  let name = statementNames.get(text)
  if (name === undefined && statementNames.size < PREPARED_STATEMENTS) {
    name = `dbal_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`
    statementNames.set(text, name)
  }
  return name
}

class PreparingClient extends pg.Client {
  override query(...args: Array<unknown>): never {
    const [text, values, callback] = args
    const name = typeof text === "string" && Array.isArray(values) && typeof callback === "function" ? statementName(text) : undefined
    const forward = super.query as unknown as (...a: Array<unknown>) => never
    return name === undefined ? forward.apply(this, args) : forward.call(this, { name, text, values }, callback)
  }
}

type MysqlFlavour = "mariadb" | "mysql"

/** The statement that bounds every statement of a new connection. */
export const mysqlStatementLimit = (flavour: MysqlFlavour, timeoutMs: number): string =>
  flavour === "mariadb"
    ? `SET SESSION max_statement_time = ${(Math.max(1, Math.trunc(timeoutMs)) / 1000).toFixed(3)}`
    : `SET SESSION max_execution_time = ${Math.max(1, Math.trunc(timeoutMs))}`

type MysqlTarget = Mysql.Pool | Mysql.PoolConnection

const mysqlRun = (target: MysqlTarget, method: "execute" | "query", sql: string, params: ReadonlyArray<unknown>, rowsAsArray = false) =>
  Effect.async<unknown, SqlError>((resume) => {
    const cb = (cause: unknown, results: unknown) => {
      if (cause) resume(Effect.fail(new SqlError({ cause, message: "Failed to execute statement" })))
      else resume(Effect.succeed(results))
    }
    const options = { sql, values: [...params], rowsAsArray }
    if (method === "execute") target.execute(options, cb)
    else target.query(options, cb)
  })

const rowsOf = (results: unknown): ReadonlyArray<never> => (Array.isArray(results) ? (results as Array<never>) : [])

/** The SqlClient Connection of MysqlClient (0.53), over a pool or one reserved connection. */
const mysqlConnection = (target: MysqlTarget): Connection => ({
  execute: (sql, params, transformRows) =>
    Effect.map(mysqlRun(target, "execute", sql, params), (r) => (transformRows ? transformRows(rowsOf(r)) : rowsOf(r))),
  executeRaw: (sql, params) => mysqlRun(target, "execute", sql, params),
  executeValues: (sql, params) => Effect.map(mysqlRun(target, "execute", sql, params, true), rowsOf),
  executeUnprepared: (sql, params, transformRows) =>
    Effect.map(mysqlRun(target, "query", sql, params), (r) => (transformRows ? transformRows(rowsOf(r)) : rowsOf(r))),
  executeStream: (sql, params, transformRows) =>
    Stream.fromIterableEffect(
      Effect.map(mysqlRun(target, "query", sql, params), (r) => (transformRows ? transformRows(rowsOf(r)) : rowsOf(r)))
    )
})

/**
 * MySQL / MariaDB through our own mysql2 pool, so that each new connection gets its statement time
 * limit before it is handed out (a command queued in the 'connection' event runs before the first
 * statement of the request that asked for the connection).
 */
const mysqlLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient, SqlError> => {
  const c = cfg.database.connection
  const connectMs = connectTimeoutMs(cfg)
  const options: Mysql.PoolOptions = {
    host: c.host!,
    ...(c.port === undefined ? {} : { port: c.port }),
    database: c.database!,
    user: c.user!,
    ...(c.password === undefined ? {} : { password: Redacted.value(c.password) }),
    timezone: "Z",
    charset: "UTF8MB4_BIN",
    jsonStrings: true,
    supportBigNumbers: true,
    connectTimeout: connectMs,
    ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } })
  }
  const connectFailed = (cause: unknown) => new SqlError({ cause, message: "MysqlClient: Failed to connect" })
  const make = Effect.gen(function* () {
    // The flavour decides the statement limit's variable; this first connection also checks that
    // the database answers at all.
    const flavour = yield* Effect.async<MysqlFlavour, SqlError>((resume) => {
      const probe = Mysql.createConnection(options)
      probe.on("error", () => undefined)
      probe.query("SELECT VERSION() AS v", (err: unknown, rows: unknown) => {
        probe.destroy()
        if (err) return resume(Effect.fail(connectFailed(err)))
        const v = String((rowsOf(rows)[0] as { v?: unknown } | undefined)?.v ?? "")
        resume(Effect.succeed(/mariadb/i.test(v) ? "mariadb" : "mysql"))
      })
    }).pipe(Effect.timeoutFail({ duration: connectMs + 1000, onTimeout: () => connectFailed(new Error("connection timeout")) }))
    const limit = mysqlStatementLimit(flavour, cfg.performance.query_timeout)
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = Mysql.createPool({ ...options, connectionLimit: poolSize(cfg), maxIdle: 0 })
        p.on("connection", (conn) => {
          conn.query(limit, () => undefined)
        })
        return p
      }),
      (p) => Effect.async<void>((resume) => p.end(() => resume(Effect.void)))
    )
    const reserve = Effect.acquireRelease(
      Effect.async<Mysql.PoolConnection, SqlError>((resume) => {
        // A request interrupted (timed out) while waiting for a free connection: the connection
        // that comes later goes straight back to the pool instead of being lost.
        let abandoned = false
        pool.getConnection((cause, conn) => {
          if (abandoned) return void (cause ? undefined : conn.release())
          if (cause) resume(Effect.fail(new SqlError({ cause, message: "Failed to acquire connection" })))
          else resume(Effect.succeed(conn))
        })
        return Effect.sync(() => {
          abandoned = true
        })
      }),
      (conn) => Effect.sync(() => conn.release())
    )
    const client = yield* SqlClient.make({
      acquirer: Effect.succeed(mysqlConnection(pool)),
      transactionAcquirer: Effect.map(reserve, mysqlConnection),
      compiler: MysqlClient.makeCompiler(),
      spanAttributes: [
        ["db.system.name", flavour],
        ["db.namespace", c.database!],
        ["server.address", c.host!],
        ["server.port", c.port ?? 3306]
      ]
    })
    return Context.make(SqlClient.SqlClient, client)
  })
  return Layer.scopedContext(make).pipe(Layer.provide(Reactivity.layer))
}

/** The SqlClient for the configured adapter. */
export const sqlClientLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient, SqlError | ConfigError.ConfigError> => {
  const c = cfg.database.connection
  switch (cfg.database.adapter) {
    case "sqlite": {
      const filename = c.filename!
      if (filename !== ":memory:") fs.mkdirSync(path.dirname(filename), { recursive: true })
      const client = SqliteClient.layer({ filename })
      // One connection (better-sqlite3 is synchronous): these pragmas hold for its whole life.
      const pragmas = Layer.effectDiscard(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql.unsafe(`PRAGMA busy_timeout = ${Math.trunc(c.busy_timeout)}`)
          yield* sql.unsafe("PRAGMA foreign_keys = ON")
          yield* sql.unsafe("PRAGMA case_sensitive_like = ON")
          yield* sql.unsafe("PRAGMA synchronous = NORMAL")
        })
      )
      return Layer.provideMerge(pragmas, client)
    }
    case "postgresql":
      return pgLayer(cfg)
    case "mysql":
      return mysqlLayer(cfg)
  }
}

const dialectOf = (cfg: DaemonConfig): Dialect =>
  cfg.database.adapter === "postgresql" ? "pg" : cfg.database.adapter === "mysql" ? "mysql" : "sqlite"

/**
 * `utf8mb4_bin` is a PAD SPACE collation on MySQL and MariaDB: 'a' = 'a ' there, so a filter, a
 * unique index and ORDER BY ignore trailing spaces, unlike PostgreSQL's "C" and SQLite's BINARY.
 * The NO PAD binary collation (code point order, every character significant) has another name on
 * each server: MySQL 8.0.17+ `utf8mb4_0900_bin`, MariaDB 10.2+ `utf8mb4_nopad_bin`. Older servers
 * keep `utf8mb4_bin`.
 */
const noPadBinaryCollation = (sql: SqlClient.SqlClient) =>
  sql<{ name: string }>`SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin')`.pipe(
    Effect.map((rows) => {
      const names = rows.map((r) => r.name)
      return names.includes("utf8mb4_0900_bin") ? "utf8mb4_0900_bin" : names.includes("utf8mb4_nopad_bin") ? "utf8mb4_nopad_bin" : "utf8mb4_bin"
    })
  )


/**
 * Creates missing tables and indexes; never drops or alters anything. The statement time limit of
 * requests does not apply to it (an index built on a large table may take longer): PostgreSQL runs
 * it in one transaction with `SET LOCAL statement_timeout = 0`, MariaDB runs each DDL statement as
 * `SET STATEMENT max_statement_time = 0 FOR ...` (MySQL's max_execution_time bounds SELECTs only).
 */
export const migrate = (sql: SqlClient.SqlClient, dialect: Dialect, registry: EntityRegistryShape) =>
  Effect.gen(function* () {
    if (dialect === "pg") {
      yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* sql.unsafe("SET LOCAL statement_timeout = 0")
          for (const stmt of schemaDdl(dialect, registry)) yield* sql.unsafe(stmt)
        })
      )
      return
    }
    if (dialect !== "mysql") {
      for (const stmt of schemaDdl(dialect, registry)) yield* sql.unsafe(stmt)
      return
    }
    const version = yield* sql<{ v: unknown }>`SELECT VERSION() AS v`
    const unbounded = /mariadb/i.test(String(version[0]?.v ?? "")) ? (stmt: string) => `SET STATEMENT max_statement_time = 0 FOR ${stmt}` : (stmt: string) => stmt
    const collation = yield* noPadBinaryCollation(sql)
    // MySQL 8 has no CREATE INDEX IF NOT EXISTS: look the indexes up.
    for (const entity of registry.creationOrder) {
      yield* sql.unsafe(unbounded(createTable(dialect, entity, registry, collation)))
      const existing = yield* sql<{ name: string }>`SELECT DISTINCT INDEX_NAME AS name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ${entity.table}`
      const names = new Set(existing.map((r) => r.name))
      for (const ix of createIndexes(dialect, entity)) if (!names.has(ix.name)) yield* sql.unsafe(unbounded(ix.sql))
    }
  }).pipe(Effect.withSpan("migrate"))

export const layer = Layer.unwrapEffect(
  Effect.map(AppConfig, (cfg) => {
    const dialect = dialectOf(cfg)
    const database = Layer.effect(
      Database,
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const registry = yield* EntityRegistry
        if (cfg.database.auto_migrate) yield* migrate(sql, dialect, registry)
        const ping = Effect.suspend(() => {
          const t0 = performance.now()
          return sql.unsafe("SELECT 1").pipe(Effect.map(() => Math.round((performance.now() - t0) * 1000) / 1000))
        })
        return { sql, dialect, adapter: cfg.database.adapter, ping }
      })
    )
    return Layer.provideMerge(database, sqlClientLayer(cfg))
  })
)
