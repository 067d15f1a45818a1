/**
 * The database the daemon serves: one SqlClient chosen by `database.adapter`, with the dialect
 * it speaks. Implemented by layers/Database.ts.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Statement } from "@effect/sql/Statement"
import { Context, type Effect } from "effect"
import type { Adapter } from "../Config.js"
import type { Dialect } from "../entity/Ddl.js"

export interface DatabaseShape {
  readonly sql: SqlClient
  readonly dialect: Dialect
  readonly adapter: Adapter
  /** Round trip to the database, in milliseconds. */
  readonly ping: Effect.Effect<number, SqlError>
  /**
   * Runs a statement that returns rows: the same rows and errors as running the statement itself,
   * by the adapter's shortest path. On PostgreSQL, outside a transaction, that is the pool
   * directly (`PooledQuery`); inside `sql.withTransaction` it is always the transaction's
   * connection.
   */
  readonly query: <A extends object>(statement: Statement<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /**
   * Runs a statement that changes rows (INSERT, UPDATE, DELETE) and answers how many it changed,
   * by the same path as `query`.
   */
  readonly execute: (statement: Statement<unknown>) => Effect.Effect<number, SqlError>
  /**
   * The direct path itself, for a statement compiled already (text and parameters) that the
   * caller knows runs outside any transaction; absent when the adapter has none (only PostgreSQL
   * has one).
   */
  readonly queryCompiled?: <A extends object>(text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** The connection pool's counts, for the metrics (adapters with a pool: PostgreSQL, MySQL). */
  readonly poolStats?: () => PoolStats
}

/** Connections of the pool: open in total, idle among them, and requests waiting for one. */
export interface PoolStats {
  readonly total: number
  readonly idle: number
  readonly waiting: number
}

/** What a statement run on the direct path answers: its rows, and how many rows it changed. */
export interface PooledResult {
  readonly rows: ReadonlyArray<object>
  readonly rowCount: number | null
}

/**
 * An adapter's shorter path than its SqlClient's, if it has one (layers/db/Pg.ts): one compiled
 * statement (text and parameters) on a pooled connection of its own.
 */
export class PooledQuery extends Context.Tag("dbal/PooledQuery")<
  PooledQuery,
  {
    readonly run: ((text: string, params: ReadonlyArray<unknown>) => Effect.Effect<PooledResult, SqlError>) | undefined
    /** The pool's counts, when the adapter has a pool it can read them from. */
    readonly stats?: () => PoolStats
  }
>() {}

export class Database extends Context.Tag("dbal/Database")<Database, DatabaseShape>() {}
