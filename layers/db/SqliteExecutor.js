// @ts-check
/**
 * One SQLite connection in its own process (started by layers/db/Sqlite.ts with an IPC channel).
 * better-sqlite3 runs statements synchronously; here that blocks this process only, never the
 * event loop that serves the connections. Being a process, it can be killed mid-statement: that is
 * how query_timeout ends a SQLite statement (better-sqlite3 has no sqlite3_interrupt, and a worker
 * thread cannot be stopped inside native code). The kernel then releases its file locks, and SQLite
 * ignores the WAL frames of a transaction that never committed.
 *
 * Plain JavaScript (type-checked through the JSDoc below): it starts without a TypeScript loader,
 * which would cost every new executor seconds. `tsc` emits it beside the build of Sqlite.ts, so the
 * same relative URL finds it in the sources and in dist/.
 *
 * Its settings are its one argument (JSON). A `writer` opens the database read-write, switches a
 * file database to WAL and runs everything it is sent. A `reader` runs only statements that read
 * (`stmt.readonly && stmt.reader`) under `PRAGMA query_only`; for any other statement it answers
 * `{ writer: true }` and the daemon sends it to the writer.
 *
 * It lives as long as its IPC channel: it closes its connection and exits when the daemon
 * disconnects or goes away. It ignores SIGINT, SIGTERM and SIGHUP, which a terminal or a service
 * manager may send to the whole process group: the daemon drains its requests first, then closes
 * its executors itself.
 *
 * @typedef {import("./SqliteProtocol.js").ExecutorSettings} ExecutorSettings
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
 *   close(): void
 * }} Connection
 */
import { createRequire } from "node:module"
import { tagResult, untagParams } from "./SqliteWire.js"

const send = process.send?.bind(process)
if (send === undefined || process.argv[2] === undefined) throw new Error("SqliteExecutor.js runs as a child process with an IPC channel")

for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) process.on(signal, () => undefined)

/** @type {new (filename: string) => Connection} */
const Database = createRequire(import.meta.url)("better-sqlite3")

/** @type {ExecutorSettings} */
const settings = JSON.parse(process.argv[2])

/** @param {unknown} e */
const failure = (e) => {
  const err = /** @type {{ code?: unknown, message?: unknown }} */ (e ?? {})
  return { code: typeof err.code === "string" ? err.code : "", message: typeof err.message === "string" ? err.message : String(e) }
}

/** The connection, or undefined when it could not be opened (the daemon was told, and this process exits). */
const open = () => {
  try {
    const db = new Database(settings.filename)
    if (settings.filename !== ":memory:" && settings.role === "writer") db.pragma("journal_mode = WAL")
    db.pragma(`busy_timeout = ${Math.trunc(settings.busyTimeout)}`)
    db.pragma("foreign_keys = ON")
    db.pragma("case_sensitive_like = ON")
    db.pragma("synchronous = NORMAL")
    if (settings.role === "reader") db.pragma("query_only = ON")
    return db
  } catch (e) {
    send(/** @type {Reply} */ ({ id: 0, error: failure(e), stage: "open" }), () => process.exit(1))
    return undefined
  }
}

/** @param {Connection} db */
const serve = (db) => {
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
   * @param {number} id
   * @param {unknown} ok
   * @returns {Reply}
   */
  const answer = (id, ok) => (tagResult(ok) ? { id, ok, tagged: true } : { id, ok })

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
      const params = req.tagged === true ? untagParams(req.params) : req.params
      stmt.safeIntegers(req.safeIntegers)
      if (!stmt.reader) {
        const result = stmt.run(...params)
        return answer(req.id, req.mode === "raw" ? result : [])
      }
      if (req.mode !== "values") return answer(req.id, stmt.all(...params))
      stmt.raw(true)
      try {
        return answer(req.id, stmt.all(...params))
      } finally {
        stmt.raw(false)
      }
    } catch (e) {
      return { id: req.id, error: failure(e), stage: "execute" }
    }
  }

  const close = () => {
    try {
      db.close()
    } finally {
      process.exit(0)
    }
  }
  // The daemon may have gone (or closed this executor) while it was starting or running a
  // statement: nothing is sent then, the connection is closed.
  /** @param {Reply} reply */
  const reply = (reply) => {
    if (process.connected) send(reply)
  }
  if (!process.connected) return close()
  process.on("message", (/** @type {Request} */ req) => reply(handle(req)))
  process.on("disconnect", close)
  reply({ id: 0, ok: null })
}

const db = open()
if (db !== undefined) serve(db)
