/**
 * Database layer: one SqlClient chosen by `database.adapter` (sqlite, postgresql, mysql), set up
 * so that the three behave alike (UTC, binary string comparison, foreign keys enforced), and
 * `auto_migrate` at start: the additive steps of the migration plan (layers/db/Migrate.ts).
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
import { type Dialect, dialectOf } from "../src/entity/Ddl.js"
import * as Migrations from "./db/Migrate.js"
import type { MigrateOptions } from "./db/Migrate.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"
import { Database, type DatabaseShape, PooledQuery, type PooledResult } from "../src/services/Database.js"

export { connectTimeoutMs } from "./db/settings.js"

const noPooledQuery = Layer.succeed(PooledQuery, { run: undefined })

/**
 * The SqlClient for the configured adapter, and its direct path (PooledQuery: `run` on PostgreSQL
 * only, pool counts on PostgreSQL and MySQL).
 */
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
    routed(
      pooled,
      statement,
      () => statement,
      (r) => r.rows as ReadonlyArray<A>
    )

/** `DatabaseShape.queryCompiled`: the direct path's rows. */
const queryCompiledVia =
  (pooled: NonNullable<PooledQuery["Type"]["run"]>): NonNullable<DatabaseShape["queryCompiled"]> =>
  <A extends object>(text: string, params: ReadonlyArray<unknown>) =>
    Effect.map(pooled(text, params), (r) => r.rows as ReadonlyArray<A>)

/** `DatabaseShape.execute`, routed as `routed` says. */
export const executeVia =
  (pooled: PooledQuery["Type"]["run"]): DatabaseShape["execute"] =>
  (statement) =>
    routed(
      pooled,
      statement,
      () => Effect.map(statement.raw, affectedRows),
      (r) => r.rowCount ?? 0
    )

/**
 * Brings the database to the definitions (layers/db/Migrate.ts). By default as `auto_migrate`
 * does at start: the additive steps only; destructive ones are left for `dbal-daemon migrate
 * --allow-destructive` and returned as `skipped`.
 */
export const migrate = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  registry: EntityRegistryShape,
  options: MigrateOptions = { destructive: "skip" }
) => Migrations.migrate(sql, dialect, registry, options)

/** `auto_migrate` at start: additive steps applied and logged; destructive ones logged, not applied. */
const autoMigrate = (sql: SqlClient.SqlClient, dialect: Dialect, registry: EntityRegistryShape, cfg: DaemonConfig) =>
  Effect.gen(function* () {
    const audit = cfg.security.audit.sql_table
    const r = yield* migrate(sql, dialect, registry, { destructive: "skip", keep: audit === undefined ? [] : [audit] })
    // Debug: dbal_migrations records it, and the in-process client (development mode) would print it into the application's output.
    if (r.applied.length > 0) yield* Effect.logDebug(`auto_migrate applied: ${r.applied.map((s) => s.reason).join("; ")}`)
    if (r.skipped.length > 0) {
      yield* Effect.logWarning(
        `auto_migrate did not apply ${r.skipped.length} destructive change${r.skipped.length === 1 ? "" : "s"} (see dbal-daemon migrate --plan): ${r.skipped.map((s) => s.reason).join("; ")}`
      )
    }
  })

export const layer = Layer.unwrapEffect(
  Effect.map(AppConfig, (cfg) => {
    const dialect = dialectOf(cfg.database.adapter)
    const database = Layer.effect(
      Database,
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pooled = yield* PooledQuery
        const registry = yield* EntityRegistry
        if (cfg.database.auto_migrate) yield* autoMigrate(sql, dialect, registry, cfg)
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
          ...(pooled.run === undefined ? {} : { queryCompiled: queryCompiledVia(pooled.run) }),
          ...(pooled.stats === undefined ? {} : { poolStats: pooled.stats })
        }
      })
    )
    return Layer.provideMerge(database, sqlClientLayer(cfg))
  })
)
