/**
 * The database the daemon serves: one SqlClient chosen by `database.adapter`, with the dialect
 * it speaks. Implemented by layers/Database.ts.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, type Effect } from "effect"
import type { Adapter } from "../Config.js"
import type { Dialect } from "../entity/Ddl.js"

export interface DatabaseShape {
  readonly sql: SqlClient
  readonly dialect: Dialect
  readonly adapter: Adapter
  /** Round trip to the database, in milliseconds. */
  readonly ping: Effect.Effect<number, SqlError>
}

export class Database extends Context.Tag("dbal/Database")<Database, DatabaseShape>() {}
