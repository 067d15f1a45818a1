/**
 * Database layer: one SqlClient chosen by `database.adapter` (sqlite, postgresql, mysql), set up
 * so that the three behave alike (UTC, binary string comparison, foreign keys enforced), and the
 * migration that creates what is missing.
 *
 * Operations (timeouts and outages):
 * - Every connection carries the database's own statement time limit, equal to
 *   `performance.query_timeout`, so that a statement of a request that timed out (504) does not
 *   keep running: PostgreSQL `statement_timeout` (a startup parameter of each connection of our own
 *   pg.Pool; PgClient.layer cannot pass it), besides the pg_cancel_backend sent when the request's
 *   fiber is interrupted (by PgClient, and by the direct path statements take outside transactions:
 *   layers/db/Pg.ts); MariaDB `max_statement_time` (seconds, every statement) or
 *   MySQL `max_execution_time` (milliseconds, read-only SELECTs only), set by `SET SESSION` on each
 *   new connection of our own mysql2 pool (MysqlClient hides its pool, so the client is built here
 *   with the same SqlClient.make; the flavour is read once with SELECT VERSION() before the pool
 *   opens). SQLite statements run in executor processes (layers/db/Sqlite.ts): the 504 comes at
 *   the bound, and the process of the abandoned statement is killed (ending it) and replaced.
 * - Connection attempts are bounded by min(database.timeout, performance.query_timeout); a
 *   refused connection fails at once. A pool slot is waited for at most that long (pg's
 *   connectionTimeoutMillis covers the queue too; mysql2 opens connections up to the pool size and
 *   fails each waiting request with the connection error). Broken connections are dropped by the
 *   pools and new ones opened on demand, so the daemon recovers by itself when the database
 *   returns.
 */
import { SqlClient, type Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { type ConfigError, Effect, Layer } from "effect"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { createIndexes, createTable, type Dialect, dialectOf, schemaDdl } from "../src/entity/Ddl.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"
import { Database, type DatabaseShape, PooledQuery, type PooledResult } from "../src/services/Database.js"

export { connectTimeoutMs } from "./db/settings.js"

const noPooledQuery = Layer.succeed(PooledQuery, { run: undefined })

/** The SqlClient for the configured adapter, and its direct path (PooledQuery: `run` on PostgreSQL only, pool counts on PostgreSQL and MySQL). */
export const sqlClientLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient | PooledQuery, SqlError | ConfigError.ConfigError> =>
  // Each adapter's driver is loaded only when it is configured (less memory, fewer native addons).
  Layer.unwrapEffect(
    Effect.promise(async (): Promise<Layer.Layer<SqlClient.SqlClient | PooledQuery, SqlError | ConfigError.ConfigError>> => {
      switch (cfg.database.adapter) {
        case "sqlite":
          return Layer.merge((await import("./db/Sqlite.js")).sqliteLayer(cfg), noPooledQuery)
        case "postgresql":
          return (await import("./db/Pg.js")).pgLayer(cfg)
        case "mysql":
          return (await import("./db/Mysql.js")).mysqlLayer(cfg)
      }
    })
  )

/**
 * Where a statement runs: outside a transaction, the adapter's direct path when it has one
 * (compiled here as the SqlClient would compile it: same text, same parameters); otherwise, and
 * always inside `sql.withTransaction`, through the SqlClient as it is. On the direct path an
 * interrupted statement's connection goes back only after its cancel was sent (layers/db/Pg.ts):
 * a late cancel must not stop another request's statement.
 */
const routed = <X>(
  pooled: PooledQuery["Type"]["run"],
  statement: Statement.Statement<unknown>,
  viaClient: () => Effect.Effect<X, SqlError>,
  fromPool: (result: PooledResult) => X
): Effect.Effect<X, SqlError> =>
  pooled === undefined
    ? viaClient()
    : Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (tx) => {
        if (tx._tag === "Some") return viaClient()
        const [text, params] = statement.compile()
        return Effect.map(pooled(text, params), fromPool)
      })

/** Rows changed by an INSERT, UPDATE or DELETE, as each driver reports it. */
const affectedRows = (raw: unknown): number => {
  const r = raw as { rowCount?: unknown; affectedRows?: unknown; changes?: unknown } | null
  const n = r?.rowCount ?? r?.affectedRows ?? r?.changes ?? 0
  return Number(n)
}

/** `DatabaseShape.query`, routed as `routed` says. */
export const queryVia =
  (pooled: PooledQuery["Type"]["run"]): DatabaseShape["query"] =>
  <A extends object>(statement: Statement.Statement<A>) =>
    routed(pooled, statement, () => statement, (r) => r.rows as ReadonlyArray<A>)

/** `DatabaseShape.execute`, routed as `routed` says. */
export const executeVia =
  (pooled: PooledQuery["Type"]["run"]): DatabaseShape["execute"] =>
  (statement) =>
    routed(pooled, statement, () => Effect.map(statement.raw, affectedRows), (r) => r.rowCount ?? 0)

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
    const dialect = dialectOf(cfg.database.adapter)
    const database = Layer.effect(
      Database,
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pooled = yield* PooledQuery
        const registry = yield* EntityRegistry
        if (cfg.database.auto_migrate) yield* migrate(sql, dialect, registry)
        const ping = Effect.suspend(() => {
          const t0 = performance.now()
          return sql.unsafe("SELECT 1").pipe(Effect.map(() => Math.round((performance.now() - t0) * 1000) / 1000))
        })
        return {
          sql,
          dialect,
          adapter: cfg.database.adapter,
          ping,
          query: queryVia(pooled.run),
          execute: executeVia(pooled.run),
          ...(pooled.stats === undefined ? {} : { poolStats: pooled.stats })
        }
      })
    )
    return Layer.provideMerge(database, sqlClientLayer(cfg))
  })
)
