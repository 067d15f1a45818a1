/**
 * Retries of transient database failures, decided in one place.
 *
 * What failed (`transience`):
 * - `notSent`: no connection could be made or acquired (connection refused, host unknown or
 *   unreachable, too many connections, the pool's connect timeout). The statement never reached
 *   the database.
 * - `rolledBack`: deadlock (40P01, ER_LOCK_DEADLOCK), serialization failure (40001) or lock wait
 *   timeout (55P03, ER_LOCK_WAIT_TIMEOUT). The database undid the failed statement (and for
 *   deadlocks and serialization failures its whole transaction); inside `sql.withTransaction` the
 *   daemon then rolls the rest back itself. Nothing of the unit was committed.
 * - `lost`: the connection broke while a statement may have been running (reset, closed,
 *   server shutting down). A write may or may not have been applied.
 *
 * What is retried (`retryable`):
 * - reads (read, list, count, findFirst, findByField, the look-ups of upsert): every transient
 *   failure;
 * - writes: only `notSent` and `rolledBack`, and only around a unit that is either one autocommit
 *   statement or one whole `sql.withTransaction` (the transaction is retried as a whole). A write
 *   whose connection was `lost` is never retried: it could be applied twice.
 * SQLite's SQLITE_BUSY is not retried: better-sqlite3 already waited `busy_timeout` (in its
 * executor process) before reporting it.
 *
 * How (`backoff`): exponential from `initial_delay_ms`, factor 2, jittered (×0.8–1.2), each delay
 * capped at `max_delay_ms`, at most `max_retries` retries (so `max_retries + 1` tries). The request
 * bound (`performance.query_timeout`) still applies to the whole, retries included.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Schedule } from "effect"
import { RetryConfig } from "../Config.js"

export interface RetrySettings {
  readonly max_retries: number
  readonly initial_delay_ms: number
  readonly max_delay_ms: number
}

/** The retry strategy of metabuilder's error table (docs/operations.md, "Retries"): `performance.retry`'s defaults. */
export const defaultRetrySettings: RetrySettings = RetryConfig.make({})

export type Transience = "notSent" | "rolledBack" | "lost"
export type Unit = "read" | "write"

const NOT_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  // PostgreSQL: cannot connect now (starting up / shutting down), too many connections, unable to
  // establish, connection rejected
  "57P03",
  "53300",
  "08001",
  "08004",
  // MySQL / MariaDB
  "ER_CON_COUNT_ERROR",
  "ER_TOO_MANY_USER_CONNECTIONS",
  "ER_SERVER_SHUTDOWN_IN_PROGRESS"
])

const ROLLED_BACK = new Set(["40001", "40P01", "55P03", "ER_LOCK_DEADLOCK", "ER_LOCK_WAIT_TIMEOUT"])

const LOST = new Set([
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "ER_SERVER_SHUTDOWN",
  "57P01",
  "57P02",
  "08000",
  "08003",
  "08006",
  "08007"
])

interface DriverError {
  readonly code?: unknown
  readonly message?: unknown
}

/** Which kind of transient failure this is, or undefined when it is not transient. */
export const transience = (error: SqlError): Transience | undefined => {
  const cause = (error.cause ?? {}) as DriverError
  const code = typeof cause.code === "string" ? cause.code : ""
  const message = typeof cause.message === "string" ? cause.message : ""
  if (ROLLED_BACK.has(code)) return "rolledBack"
  if (NOT_SENT.has(code)) return "notSent"
  // PgClient and our MySQL client say so when the pool could not hand out a connection.
  if (error.message.startsWith("Failed to acquire connection")) return "notSent"
  if (/timeout exceeded when trying to connect/i.test(message)) return "notSent"
  if (LOST.has(code)) return "lost"
  if (/Connection terminated|connection is closed|Cannot enqueue|Can't add new command when connection is in closed state/i.test(message))
    return "lost"
  return undefined
}

export const retryable = (unit: Unit, t: Transience | undefined): boolean =>
  t === undefined ? false : unit === "read" ? true : t === "notSent" || t === "rolledBack"

/** Delays between tries: exponential, jittered, capped; at most `max_retries` of them. */
export const backoff = (s: RetrySettings): Schedule.Schedule<unknown, unknown> =>
  Schedule.exponential(Duration.millis(s.initial_delay_ms), 2).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((d) => Duration.min(d, Duration.millis(s.max_delay_ms))),
    Schedule.intersect(Schedule.recurs(s.max_retries))
  )

const shouldRetry =
  (unit: Unit) =>
  (e: unknown): boolean =>
    e instanceof SqlError && retryable(unit, transience(e))

/**
 * Retries `self` (a read, or a write unit: one autocommit statement or one whole transaction)
 * while it fails with a failure `retryable` for `unit`.
 */
export const withRetry =
  (settings: RetrySettings, unit: Unit) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    settings.max_retries <= 0
      ? self
      : // Inside an enclosing transaction (the `transaction` method) nothing is retried: a
        // deadlock may have rolled back the whole transaction (InnoDB does), and a retry would
        // then run outside it. The failure ends the transaction; the caller may retry it whole.
        Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (outer) =>
          outer._tag === "Some" ? self : retried(settings, unit, self)
        )

/** `withRetry` for an effect known to run outside any transaction (no look for one). */
export const retryOutsideTransaction =
  (settings: RetrySettings, unit: Unit) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    settings.max_retries <= 0 ? self : retried(settings, unit, self)

/**
 * The first try runs bare: `Effect.retry` builds its schedule driver and state for every call,
 * which cost about 25 µs per query on the request path (bench/handler-micro.ts) although almost
 * every query succeeds at once. Only a retryable failure starts the retry loop, whose first step
 * replays that failure so that the schedule's first delay comes before the second try: the tries
 * and delays are those of `Effect.retry(self, backoff)`.
 */
const retried = <A, E, R>(settings: RetrySettings, unit: Unit, self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const retryable = shouldRetry(unit)
  const noted = (e: E) =>
    Effect.logDebug(`transient database failure (${transience(e as SqlError)}) in a ${unit}; retrying while tries remain`)
  const logged = Effect.tapError(self, (e) => (retryable(e) ? noted(e) : Effect.void))
  return Effect.catchAll(self, (first) => {
    if (!retryable(first)) return Effect.fail(first)
    let replay = true
    const tries = Effect.suspend(() => {
      if (!replay) return logged
      replay = false
      return Effect.fail(first)
    })
    return Effect.zipRight(noted(first), Effect.retry(tries, { schedule: backoff(settings), while: retryable }))
  })
}
