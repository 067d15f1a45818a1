/** MySQL / MariaDB adapter (loaded only when database.adapter is mysql). */
import * as Reactivity from "@effect/experimental/Reactivity"
import { MysqlClient } from "@effect/sql-mysql2"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import * as Mysql from "mysql2"
import type { DaemonConfig } from "../../src/Config.js"
import { type PoolStats, PooledQuery } from "../../src/services/Database.js"
import { connectTimeoutMs, poolSize } from "./settings.js"
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

/**
 * mysql2 keeps its pool's counts in queues it does not document (`_allConnections`,
 * `_freeConnections`, `_connectionQueue`, each with a `length`): read defensively, 0 when absent.
 */
const mysqlPoolStats = (pool: Mysql.Pool): PoolStats => {
  const inner = pool as unknown as Record<string, { readonly length?: unknown } | undefined>
  const count = (name: string) => {
    const n = inner[name]?.length
    return typeof n === "number" ? n : 0
  }
  return { total: count("_allConnections"), idle: count("_freeConnections"), waiting: count("_connectionQueue") }
}

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
export const mysqlLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient | PooledQuery, SqlError> => {
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
    // No direct path: statements go through the SqlClient. The pool's counts are read for the metrics.
    return Context.make(SqlClient.SqlClient, client).pipe(Context.add(PooledQuery, { run: undefined, stats: () => mysqlPoolStats(pool) }))
  })
  return Layer.scopedContext(make).pipe(Layer.provide(Reactivity.layer))
}
