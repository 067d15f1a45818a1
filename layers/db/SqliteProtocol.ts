/** Messages between the SQLite client (layers/db/Sqlite.ts) and its executor processes (SqliteExecutor.js). */

export interface ExecutorSettings {
  readonly filename: string
  /** `writer`: read-write, WAL; `reader`: reads only (`PRAGMA query_only`). */
  readonly role: "writer" | "reader"
  readonly busyTimeout: number
}

/**
 * `rows`: rows of a statement that returns them, else [] (Connection.execute);
 * `raw`: the same, but a statement that returns no rows answers its run result
 * ({ changes, lastInsertRowid }; Connection.executeRaw, Statement.raw);
 * `values`: rows as arrays (Connection.executeValues);
 * `unprepared`: as `rows`, not kept in the prepared statement cache.
 */
export type Mode = "rows" | "raw" | "values" | "unprepared"

export interface Request {
  readonly id: number
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
  readonly mode: Mode
  /** SqlClient.SafeIntegers: integers as bigint. */
  readonly safeIntegers: boolean
  /** Some parameter is tagged (layers/db/SqliteWire.js). */
  readonly tagged?: true
}

export interface DriverFailure {
  /** better-sqlite3's code (SQLITE_CONSTRAINT_UNIQUE, SQLITE_BUSY, ...), or "". */
  readonly code: string
  readonly message: string
}

/**
 * The answer to request `id` (id 0: the connection opened, or failed to). `tagged`: some value of
 * `ok` is tagged (layers/db/SqliteWire.js). `writer`: a reader was sent a statement that does not
 * only read.
 */
export type Reply =
  | { readonly id: number; readonly ok: unknown; readonly tagged?: true }
  | { readonly id: number; readonly error: DriverFailure; readonly stage: "open" | "prepare" | "execute" }
  | { readonly id: number; readonly writer: true }
