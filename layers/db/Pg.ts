/** PostgreSQL adapter (loaded only when database.adapter is postgresql). */
import { PgClient } from "@effect/sql-pg"
import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer, Runtime } from "effect"
import { createHash } from "node:crypto"
import pg from "pg"
import type { DaemonConfig } from "../../src/Config.js"
import { PooledQuery, type PooledResult } from "../../src/services/Database.js"
import { APPLICATION_NAME, connectTimeoutMs, type LoginPassword, logPasswordSwitch, loginPassword, poolSize } from "./settings.js"

/** `timestamp` (without time zone): the OID whose values pg would read in the process's local time. */
const TIMESTAMP_OID = 1114
/** `timestamptz`. */
const TIMESTAMPTZ_OID = 1184

/**
 * A UTC `timestamptz` as the server prints it ("2026-12-02 17:20:28.123456+00") → the ISO-8601
 * text the wire carries ("2026-12-02T17:20:28.123Z", milliseconds truncated as a Date would keep
 * them), without making a Date and printing it again: the two were ~2 % of a read's CPU. Other
 * offsets, BC dates, years past 9999 and infinity go to the driver's parser (a Date).
 */
export const timestamptzOf = (fallback: (text: string) => unknown) => (text: string) => {
  const n = text.length
  if (
    n < 22 ||
    n > 29 ||
    text.charCodeAt(4) !== 45 ||
    text.charCodeAt(10) !== 32 ||
    text.charCodeAt(n - 3) !== 43 ||
    text.charCodeAt(n - 2) !== 48 ||
    text.charCodeAt(n - 1) !== 48 ||
    (n > 22 && text.charCodeAt(19) !== 46)
  )
    return fallback(text)
  const ms = n === 22 ? "000" : n >= 26 ? text.slice(20, 23) : (text.slice(20, n - 3) + "00").slice(0, 3)
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${ms}Z`
}
const defaultTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID, "text")
const parseTimestamptz = timestamptzOf(defaultTimestamptz)

/**
 * The driver's type parsers, except that TIMESTAMP values (Prisma's DateTime columns, which hold
 * UTC) are read as UTC whatever the process's time zone; the daemon's own columns are timestamptz.
 */
const utcTimestamps: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === TIMESTAMP_OID && format !== "binary"
      ? (text: string) => new Date(`${text.replace(" ", "T")}Z`)
      : oid === TIMESTAMPTZ_OID && format !== "binary"
        ? parseTimestamptz
        : pg.types.getTypeParser(oid, format ?? "text")) as pg.CustomTypesConfig["getTypeParser"]
}

/**
 * PostgreSQL through our own pg.Pool: the options PgClient.layer would set, plus the server-side
 * `statement_timeout` of every connection.
 */
export const pgLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient | PooledQuery, SqlError> => {
  const c = cfg.database.connection
  const connectMs = connectTimeoutMs(cfg)
  const acquire = Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const logins = loginPassword(c, (to) => Runtime.runFork(runtime)(logPasswordSwitch(to)))
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = new pg.Pool({
          Client: reportingLogins(logins),
          host: c.host!,
          ...(c.port === undefined ? {} : { port: c.port }),
          database: c.database!,
          user: c.user!,
          // pg calls it only when the server asks for a password, once per new connection.
          ...(c.password === undefined && c.password_file === undefined ? {} : { password: async () => (await logins.next()) ?? "" }),
          ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } }),
          max: poolSize(cfg),
          connectionTimeoutMillis: connectMs,
          application_name: APPLICATION_NAME,
          statement_timeout: cfg.performance.query_timeout,
          types: utcTimestamps
        })
        // An idle client that loses its connection is dropped by the pool; nothing to do here.
        p.on("error", () => undefined)
        return p
      }),
      (p) => Effect.promise(() => p.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
    )
    yield* Effect.tryPromise({
      try: () => pool.query("SELECT 1"),
      catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
    }).pipe(
      Effect.timeoutFail({
        duration: connectMs,
        onTimeout: () => new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
      })
    )
    return pool
  })
  // One pool for both: PgClient (given the pool, it leaves closing it to this layer's scope) and
  // the direct path.
  return Layer.unwrapScoped(
    Effect.map(acquire, (pool) =>
      Layer.merge(
        PgClient.layerFromPool({ acquire: Effect.succeed(pool), applicationName: APPLICATION_NAME }),
        Layer.succeed(PooledQuery, {
          run: pooledQuery(pool),
          stats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount })
        })
      )
    )
  )
}

/** Asks the server to stop the statement a connection runs (best effort, as PgClient does). */
const cancelStatement = (pool: pg.Pool, processId: number | undefined): Effect.Effect<void> =>
  processId === undefined
    ? Effect.void
    : Effect.async<void>((resume) => {
        if (pool.ending) return resume(Effect.void)
        pool.query("SELECT pg_cancel_backend($1)", [processId], () => resume(Effect.void))
      }).pipe(Effect.interruptible, Effect.timeoutOption(5000), Effect.asVoid)

/**
 * The statement's handler of its connection's errors. Each connection gets one listener, once,
 * which passes an error to the statement running on it: adding and removing a listener per
 * statement showed in the profile of a read (~2 %).
 */
const errorHandlers = new WeakMap<pg.PoolClient, (cause: Error) => void>()
const listening = new WeakSet<pg.PoolClient>()
const listenForErrors = (c: pg.PoolClient) => {
  if (listening.has(c)) return
  listening.add(c)
  c.on("error", (cause: Error) => errorHandlers.get(c)?.(cause))
}

/**
 * A statement on a connection of the pool, run as PgClient runs it (the same rows and errors;
 * interrupted, it asks the server to cancel the statement) without @effect/sql's execution
 * wrapper around it: its span, scope and connection acquirer were about 60 Effect operations and
 * 25 kB of allocation per statement, the largest part of a read's CPU in the daemon's profile.
 * Statements inside a transaction do not come here (layers/Database.ts).
 *
 * Unlike PgClient, an interrupted statement's connection goes back to the pool only once the
 * cancel has been sent, even when the statement ends first: given back earlier, it could be
 * running another request's statement when the cancel arrives.
 */
const pooledQuery =
  (pool: pg.Pool) =>
  (text: string, params: ReadonlyArray<unknown>): Effect.Effect<PooledResult, SqlError> =>
    Effect.async<PooledResult, SqlError>((resume) => {
      /** Answered, failed or interrupted: the query's own callback no longer gives the connection back. */
      let settled = false
      let client: pg.PoolClient | undefined
      let broken: Error | undefined
      /** Gives the connection back (destroyed when it broke) and stops listening to it. */
      const giveBack = (c: pg.PoolClient) => {
        errorHandlers.delete(c)
        c.release(broken)
      }
      const settle = () => {
        if (settled) return false
        settled = true
        if (client !== undefined) giveBack(client)
        return true
      }
      const onError = (cause: Error) => {
        broken = cause
        if (settle()) resume(Effect.fail(new SqlError({ cause, message: "Connection error" })))
      }
      pool.connect((cause, c) => {
        if (c === undefined || (cause !== undefined && cause !== null)) {
          if (!settled) {
            settled = true
            resume(Effect.fail(new SqlError({ cause: cause ?? new Error("No client returned"), message: "Failed to acquire connection" })))
          }
          return
        }
        // Interrupted while waiting for the connection: give it back unused.
        if (settled) return c.release()
        client = c
        listenForErrors(c)
        errorHandlers.set(c, onError)
        c.query(text, params as Array<unknown>, (error: Error | null, result: pg.QueryResult<object>) => {
          if (!settle()) return
          resume(
            error === null ? Effect.succeed(result) : Effect.fail(new SqlError({ cause: error, message: "Failed to execute statement" }))
          )
        })
      })
      return Effect.suspend(() => {
        const running = settled ? undefined : client
        settled = true
        // Not connected yet: the connect callback gives the connection back unused.
        if (running === undefined) return Effect.void
        const processId = (running as pg.PoolClient & { readonly processID?: number }).processID
        return Effect.ensuring(
          cancelStatement(pool, processId),
          Effect.sync(() => giveBack(running))
        )
      })
    })

/**
 * Prepared statement reuse on PostgreSQL: a parameterized statement is sent as a named statement,
 * so each connection parses and plans it once and then only binds and executes it. The names of
 * the first PREPARED_STATEMENTS distinct texts are kept (the daemon's statements come from a
 * small set of shapes); texts beyond them run unnamed, so the server's memory stays bounded.
 */
const PREPARED_STATEMENTS = 500
/**
 * Statements with more parameters than this run unnamed, planned for their values each time (as
 * @effect/sql-pg runs every statement). Such a statement carries a list of values (an IN list:
 * an access check over the ids just written, a filter's `in`) or many rows to insert. After five
 * executions PostgreSQL may keep a generic plan for a named statement, and a generic plan cannot
 * hash an IN list of parameters: it compares each row with every value, with a plan (often a
 * sequential scan) chosen for the table as it was then. Measured through the daemon (npm run
 * bench): createMany of 100 with a row filter took 7.5 ms p50 once the check's generic plan was
 * taken, 5.5 ms with the check unnamed (direct 4.5 ms).
 */
const MAX_NAMED_PARAMETERS = 32
/**
 * An INSERT … VALUES has one plan whatever its values, so a larger one (createMany's chunks) is
 * named too: parsing and planning a 100-row INSERT of 9 columns each time took ~0.5 ms of its
 * ~3 ms here (raw pg, alternated rounds). Its cached statement holds server memory on each
 * connection in proportion to its parameters (PostgreSQL 15: ~210 kB for those 900 parameters),
 * so the larger INSERT texts named are bounded by their parameters in total; the others run unnamed.
 */
const LARGE_INSERT_PARAMETERS = 10_000
let largeInsertParameters = 0
/** A many-row INSERT … VALUES, alone or after the audit journal's one-row INSERT (src/query/Journal.ts). */
const VALUES_INSERT = /^(?:WITH j AS \(INSERT INTO [^ ]+ \([^)]*\) VALUES \([^)]*\)\) )?INSERT INTO [^ ]+ \([^)]*\) VALUES \(/
const statementNames = new Map<string, string>()
const statementName = (text: string): string | undefined => {
  let name = statementNames.get(text)
  if (name === undefined && statementNames.size < PREPARED_STATEMENTS) {
    name = `dbal_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`
    statementNames.set(text, name)
  }
  return name
}
/** The name a statement runs under, or undefined (unnamed): see MAX_NAMED_PARAMETERS and LARGE_INSERT_PARAMETERS. */
const nameOf = (text: string, parameters: number): string | undefined => {
  if (parameters <= MAX_NAMED_PARAMETERS) return statementName(text)
  const known = statementNames.get(text)
  if (known !== undefined || !VALUES_INSERT.test(text) || text.includes(" SELECT ")) return known
  if (largeInsertParameters + parameters > LARGE_INSERT_PARAMETERS) return undefined
  const name = statementName(text)
  if (name !== undefined) largeInsertParameters += parameters
  return name
}

/**
 * The named query is built here as a `pg.Query` from the text, then named: given a config object
 * instead, pg copies it property by property (`cloneQueryConfig`), which showed in the daemon's
 * profile at a few µs per statement.
 */
class PreparingClient extends pg.Client {
  override query(...args: Array<unknown>): never {
    const [text, values, callback] = args
    const name =
      typeof text === "string" && Array.isArray(values) && typeof callback === "function" ? nameOf(text, values.length) : undefined
    const forward = super.query as unknown as (...a: Array<unknown>) => never
    if (name === undefined) return forward.apply(this, args)
    const query = new pg.Query(text as string, values as Array<unknown>, callback as () => void) as pg.Query & { name?: string }
    query.name = name
    return forward.call(this, query)
  }
}

/** invalid_password: the server refused the password of a login. */
const INVALID_PASSWORD = "28P01"

/**
 * The pool's client class, telling `logins` what the server answered to each password login (pg
 * keeps the password it sent in `password` once it has asked the function for it).
 */
const reportingLogins = (logins: LoginPassword) =>
  class extends PreparingClient {
    override connect(...args: Array<unknown>): never {
      const [callback] = args
      const forward = super.connect as unknown as (...a: Array<unknown>) => never
      // The pool always connects with a callback.
      if (typeof callback !== "function") return forward.apply(this, args)
      return forward.call(this, (error: (Error & { code?: unknown }) | null | undefined) => {
        const sent: unknown = this.password
        if (typeof sent === "string") {
          if (error === null || error === undefined) logins.report(sent, true)
          else if (error.code === INVALID_PASSWORD) logins.report(sent, false)
        }
        ;(callback as (e?: Error | null) => void)(error)
      })
    }
  }
