/**
 * Database layer: one SqlClient chosen by `database.adapter` (sqlite, postgresql, mysql), set up
 * so that the three behave alike (UTC, binary string comparison, foreign keys enforced), and the
 * migration that creates what is missing.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { type ConfigError, Duration, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { createIndexes, createTable, type Dialect, schemaDdl } from "../src/entity/Ddl.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"
import { Database } from "../src/services/Database.js"

const poolSize = (cfg: DaemonConfig) => cfg.database.pool_size ?? cfg.performance.connection_pool_size

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
      return PgClient.layer({
        host: c.host!,
        ...(c.port === undefined ? {} : { port: c.port }),
        database: c.database!,
        username: c.user!,
        ...(c.password === undefined ? {} : { password: c.password }),
        ...(c.ssl_mode === "disable" ? {} : { ssl: c.ssl_mode === "verify-full" ? { rejectUnauthorized: true } : { rejectUnauthorized: false } }),
        maxConnections: poolSize(cfg),
        connectTimeout: Duration.millis(cfg.database.timeout),
        applicationName: "dbal-daemon"
      })
    case "mysql":
      return MysqlClient.layer({
        host: c.host!,
        ...(c.port === undefined ? {} : { port: c.port }),
        database: c.database!,
        username: c.user!,
        ...(c.password === undefined ? {} : { password: c.password }),
        maxConnections: poolSize(cfg),
        poolConfig: {
          timezone: "Z",
          charset: "UTF8MB4_BIN",
          jsonStrings: true,
          connectTimeout: cfg.database.timeout,
          ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } })
        }
      })
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


/** Creates missing tables and indexes; never drops or alters anything. */
export const migrate = (sql: SqlClient.SqlClient, dialect: Dialect, registry: EntityRegistryShape) =>
  Effect.gen(function* () {
    if (dialect !== "mysql") {
      for (const stmt of schemaDdl(dialect, registry)) yield* sql.unsafe(stmt)
      return
    }
    const collation = yield* noPadBinaryCollation(sql)
    // MySQL 8 has no CREATE INDEX IF NOT EXISTS: look the indexes up.
    for (const entity of registry.creationOrder) {
      yield* sql.unsafe(createTable(dialect, entity, registry, collation))
      const existing = yield* sql<{ name: string }>`SELECT DISTINCT INDEX_NAME AS name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ${entity.table}`
      const names = new Set(existing.map((r) => r.name))
      for (const ix of createIndexes(dialect, entity)) if (!names.has(ix.name)) yield* sql.unsafe(ix.sql)
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
