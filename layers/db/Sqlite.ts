/** SQLite adapter (loaded only when database.adapter is sqlite). */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { DaemonConfig } from "../../src/Config.js"

export const sqliteLayer = (cfg: DaemonConfig) => {
  const c = cfg.database.connection
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
