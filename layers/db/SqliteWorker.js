// @ts-check
/**
 * One SQLite connection on its own thread (started by layers/db/Sqlite.ts). better-sqlite3 runs
 * statements synchronously; here that blocks this thread only, never the event loop that serves
 * the connections.
 *
 * Plain JavaScript (type-checked through the JSDoc below): Node starts a worker from a file as it
 * is, and loading a TypeScript loader in every worker thread took seconds. `tsc` emits it beside
 * the build of Sqlite.ts, so the same relative URL finds it in the sources and in dist/.
 *
 * A `writer` opens the database read-write, switches a file database to WAL and runs everything
 * it is sent. A `reader` runs only statements that read (`stmt.readonly && stmt.reader`) under
 * `PRAGMA query_only`; for any other statement it answers `{ writer: true }` and the main thread
 * sends it to the writer.
 *
 * @typedef {import("./SqliteProtocol.js").WorkerSettings} WorkerSettings
 * @typedef {import("./SqliteProtocol.js").Request} Request
 * @typedef {import("./SqliteProtocol.js").Reply} Reply
 *
 * The part of better-sqlite3 used here (the package ships no types):
 * @typedef {{
 *   readonly reader: boolean
 *   readonly readonly: boolean
 *   all(...params: ReadonlyArray<unknown>): Array<unknown>
 *   run(...params: ReadonlyArray<unknown>): { changes: number, lastInsertRowid: number | bigint }
 *   raw(on: boolean): Statement
 *   safeIntegers(on: boolean): Statement
 * }} Statement
 * @typedef {{
 *   prepare(sql: string): Statement
 *   pragma(sql: string): unknown
 * }} Connection
 */
import { createRequire } from "node:module"
import { parentPort, workerData } from "node:worker_threads"

/** @type {new (filename: string) => Connection} */
const Database = createRequire(import.meta.url)("better-sqlite3")

const port = parentPort
if (port === null) throw new Error("SqliteWorker.js runs as a worker thread")

/** @type {WorkerSettings} */
const settings = workerData

/** @param {unknown} e */
const failure = (e) => {
  const err = /** @type {{ code?: unknown, message?: unknown }} */ (e ?? {})
  return { code: typeof err.code === "string" ? err.code : "", message: typeof err.message === "string" ? err.message : String(e) }
}

/** @type {Connection} */
let db
try {
  db = new Database(settings.filename)
  if (settings.filename !== ":memory:" && settings.role === "writer") db.pragma("journal_mode = WAL")
  db.pragma(`busy_timeout = ${Math.trunc(settings.busyTimeout)}`)
  db.pragma("foreign_keys = ON")
  db.pragma("case_sensitive_like = ON")
  db.pragma("synchronous = NORMAL")
  if (settings.role === "reader") db.pragma("query_only = ON")
} catch (e) {
  port.postMessage(/** @type {Reply} */ ({ id: 0, error: failure(e), stage: "open" }))
  process.exit(1)
}
port.postMessage(/** @type {Reply} */ ({ id: 0, ok: null }))

/**
 * Prepared statements by text, least recently used first (a Map keeps insertion order).
 * @type {Map<string, Statement>}
 */
const prepared = new Map()
const CACHE_SIZE = 200

/** @param {string} sql */
const prepare = (sql) => {
  const cached = prepared.get(sql)
  if (cached !== undefined) {
    prepared.delete(sql)
    prepared.set(sql, cached)
    return cached
  }
  const stmt = db.prepare(sql)
  prepared.set(sql, stmt)
  if (prepared.size > CACHE_SIZE) prepared.delete(/** @type {string} */ (prepared.keys().next().value))
  return stmt
}

/**
 * Runs one request as @effect/sql-sqlite-node's connection does: statements that return rows
 * answer their rows (`values`: as arrays), others run and answer [] (`raw`: the run result,
 * { changes, lastInsertRowid }).
 * @param {Request} req
 * @returns {Reply}
 */
const handle = (req) => {
  /** @type {Statement} */
  let stmt
  try {
    stmt = req.mode === "unprepared" ? db.prepare(req.sql) : prepare(req.sql)
  } catch (e) {
    return { id: req.id, error: failure(e), stage: "prepare" }
  }
  if (settings.role === "reader" && !(stmt.readonly && stmt.reader)) return { id: req.id, writer: true }
  try {
    stmt.safeIntegers(req.safeIntegers)
    if (!stmt.reader) {
      const result = stmt.run(...req.params)
      return { id: req.id, ok: req.mode === "raw" ? result : [] }
    }
    if (req.mode !== "values") return { id: req.id, ok: stmt.all(...req.params) }
    stmt.raw(true)
    try {
      return { id: req.id, ok: stmt.all(...req.params) }
    } finally {
      stmt.raw(false)
    }
  } catch (e) {
    return { id: req.id, error: failure(e), stage: "execute" }
  }
}

port.on("message", (/** @type {Request} */ req) => port.postMessage(handle(req)))
