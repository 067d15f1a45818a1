/** MySQL / MariaDB adapter (loaded only when database.adapter is mysql). */
import * as Reactivity from "@effect/experimental/Reactivity"
import { MysqlClient } from "@effect/sql-mysql2"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Runtime, Stream } from "effect"
import * as Mysql from "mysql2"
import type { DaemonConfig } from "../../src/Config.js"
import { type PoolStats, PooledQuery } from "../../src/services/Database.js"
import { connectTimeoutMs, type LoginPassword, logPasswordSwitch, loginPassword, poolSize } from "./settings.js"
type MysqlFlavour = "mariadb" | "mysql"

/** The statement that bounds every statement of a new connection. */
export const mysqlStatementLimit = (flavour: MysqlFlavour, timeoutMs: number): string =>
  flavour === "mariadb"
    ? `SET SESSION max_statement_time = ${(Math.max(1, Math.trunc(timeoutMs)) / 1000).toFixed(3)}`
    : `SET SESSION max_execution_time = ${Math.max(1, Math.trunc(timeoutMs))}`

type MysqlTarget = Mysql.Pool | Mysql.PoolConnection

const mysqlRun = (target: MysqlTarget, method: "execute" | "query", sql: string, params: ReadonlyArray<unknown>, rowsAsArray = false) =>
  Effect.async<unknown, SqlError>((resume) => {
    const options = { sql, values: [...params], rowsAsArray }
    const run = (conn: MysqlTarget, done: () => void) => {
      const cb = (cause: unknown, results: unknown) => {
        if (cause) resume(Effect.fail(new SqlError({ cause, message: "Failed to execute statement" })))
        else resume(Effect.succeed(results))
      }
      const command = method === "execute" ? conn.execute(options, cb) : conn.query(options, cb)
      command.once("end", done)
    }
    if (!("getConnection" in target)) return run(target, () => undefined)
    // As mysql2's pool.execute, with a failure to get a connection said so (Retry.ts: nothing was
    // sent, so it is retried, writes included): a refused login during a password rotation, say.
    target.getConnection((cause, conn) => {
      if (cause) return resume(Effect.fail(new SqlError({ cause, message: "Failed to acquire connection" })))
      try {
        run(conn, () => conn.release())
      } catch (e) {
        conn.release()
        resume(Effect.fail(new SqlError({ cause: e, message: "Failed to execute statement" })))
      }
    })
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

/** ER_ACCESS_DENIED_ERROR: the server refused the login (for a user that exists: its password). */
const ACCESS_DENIED = "ER_ACCESS_DENIED_ERROR"

const reportLogin = (logins: LoginPassword, password: string, error: unknown) => {
  if (!error) logins.report(password, true)
  else if ((error as { code?: unknown }).code === ACCESS_DENIED) logins.report(password, false)
}

/**
 * `password_file` read again for each new connection of the pool (see LoginPassword). mysql2 gives
 * a new connection a copy of the pool's connection settings, password included, when getConnection
 * opens it, and has no hook before that; so getConnection is wrapped: when it is about to open a
 * connection (no idle one, room for another) the password is read, put into the pool's settings,
 * and the server's answer to that login is reported. Connections already open keep their session.
 *
 * Whether a call opens a connection is read from the pool's queues (mysqlPoolStats). Were they
 * gone in a later mysql2, every getConnection would read the file first (slower, still correct)
 * and no login would be reported (no switch to the previous password).
 */
const readPasswordPerConnection = (pool: Mysql.Pool, logins: LoginPassword, limit: number): void => {
  const settings = (pool as unknown as { readonly config: { readonly connectionConfig: { password?: string } } }).config.connectionConfig
  const getConnection = pool.getConnection.bind(pool)
  pool.getConnection = (callback) => {
    const before = mysqlPoolStats(pool)
    if (before.idle > 0 || before.total >= limit) return getConnection(callback)
    void logins.next().then((password) => {
      if (password !== undefined) settings.password = password
      const total = mysqlPoolStats(pool).total
      let opened = false
      getConnection((error, conn) => {
        if (opened && password !== undefined) reportLogin(logins, password, error)
        callback(error, conn)
      })
      opened = mysqlPoolStats(pool).total > total
    })
  }
}

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
    timezone: "Z",
    charset: "UTF8MB4_BIN",
    jsonStrings: true,
    supportBigNumbers: true,
    connectTimeout: connectMs,
    ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } })
  }
  const connectFailed = (cause: unknown) => new SqlError({ cause, message: "MysqlClient: Failed to connect" })
  const make = Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const logins = loginPassword(c, (to) => Runtime.runFork(runtime)(logPasswordSwitch(to)))
    const password = yield* Effect.promise(logins.next)
    // The flavour decides the statement limit's variable; this first connection also checks that
    // the database answers at all.
    const flavour = yield* Effect.async<MysqlFlavour, SqlError>((resume) => {
      const probe = Mysql.createConnection({ ...options, ...(password === undefined ? {} : { password }) })
      probe.on("error", () => undefined)
      probe.query("SELECT VERSION() AS v", (err: unknown, rows: unknown) => {
        probe.destroy()
        if (password !== undefined) reportLogin(logins, password, err)
        if (err) return resume(Effect.fail(connectFailed(err)))
        const v = String((rowsOf(rows)[0] as { v?: unknown } | undefined)?.v ?? "")
        resume(Effect.succeed(/mariadb/i.test(v) ? "mariadb" : "mysql"))
      })
    }).pipe(Effect.timeoutFail({ duration: connectMs + 1000, onTimeout: () => connectFailed(new Error("connection timeout")) }))
    const limit = mysqlStatementLimit(flavour, cfg.performance.query_timeout)
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = Mysql.createPool({
          ...options,
          ...(password === undefined ? {} : { password }),
          connectionLimit: poolSize(cfg),
          maxIdle: 0
        })
        p.on("connection", (conn) => {
          conn.query(limit, () => undefined)
        })
        if (c.password_file !== undefined) readPasswordPerConnection(p, logins, poolSize(cfg))
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
