/**
 * The retry policy of transient database failures (src/query/Retry.ts), on the TestClock: which
 * failures are retried for reads and for writes, how many times, and after which delays. No real
 * sleeping: the clock is moved by hand and the attempts are counted in between.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Ref, TestClock } from "effect"
import { type RetrySettings, retryable, transience, withRetry } from "../../src/query/Retry.js"
import { classify, toRequestError } from "../../src/query/DbErrors.js"
import type { EntityDef } from "../../src/entity/Model.js"

const err = (code: string, message = "driver says no", outer = "Failed to execute statement") =>
  new SqlError({ cause: Object.assign(new Error(message), { code }), message: outer })

const settings: RetrySettings = { max_retries: 3, initial_delay_ms: 100, max_delay_ms: 5000 }

/** An effect failing with `failures[i]` on try i and succeeding after them; counts its tries. */
const flaky = (tries: Ref.Ref<number>, failures: ReadonlyArray<SqlError>) =>
  Effect.flatMap(
    Ref.getAndUpdate(tries, (n) => n + 1),
    (n) => (n < failures.length ? Effect.fail(failures[n]!) : Effect.succeed("done"))
  )

describe("transience", () => {
  it("classifies driver failures", () => {
    expect(transience(err("ECONNREFUSED"))).toBe("notSent")
    expect(transience(err("ENOTFOUND"))).toBe("notSent")
    expect(transience(err("57P03"))).toBe("notSent")
    expect(transience(err("ER_CON_COUNT_ERROR"))).toBe("notSent")
    expect(
      transience(new SqlError({ cause: new Error("timeout exceeded when trying to connect"), message: "Failed to acquire connection" }))
    ).toBe("notSent")
    // A login refused (a password rotation not finished): no connection, nothing sent.
    expect(transience(err("28P01", "password authentication failed", "Failed to acquire connection"))).toBe("notSent")
    expect(transience(err("ER_ACCESS_DENIED_ERROR", "Access denied", "Failed to acquire connection"))).toBe("notSent")
    expect(transience(err("40001"))).toBe("rolledBack")
    expect(transience(err("40P01"))).toBe("rolledBack")
    expect(transience(err("55P03"))).toBe("rolledBack")
    expect(transience(err("ER_LOCK_DEADLOCK"))).toBe("rolledBack")
    expect(transience(err("ER_LOCK_WAIT_TIMEOUT"))).toBe("rolledBack")
    expect(transience(err("ECONNRESET"))).toBe("lost")
    expect(transience(err("PROTOCOL_CONNECTION_LOST"))).toBe("lost")
    expect(transience(err("57P01"))).toBe("lost")
    expect(
      transience(new SqlError({ cause: new Error("Connection terminated unexpectedly"), message: "Failed to execute statement" }))
    ).toBe("lost")
    // Not transient: constraint violations, syntax, SQLite busy (busy_timeout already waited).
    expect(transience(err("23505"))).toBeUndefined()
    expect(transience(err("ER_DUP_ENTRY"))).toBeUndefined()
    expect(transience(err("SQLITE_BUSY"))).toBeUndefined()
    expect(transience(err("57014"))).toBeUndefined()
  })

  it("reads retry every transient failure; writes only when nothing can have been applied", () => {
    expect(retryable("read", "notSent")).toBe(true)
    expect(retryable("read", "rolledBack")).toBe(true)
    expect(retryable("read", "lost")).toBe(true)
    expect(retryable("write", "notSent")).toBe(true)
    expect(retryable("write", "rolledBack")).toBe(true)
    expect(retryable("write", "lost")).toBe(false)
    expect(retryable("read", undefined)).toBe(false)
    expect(retryable("write", undefined)).toBe(false)
  })

  it("maps what is left after the retries: 503 for transient, 504 for the database's time limit", () => {
    const entity = { name: "User", indexes: [], fields: [] } as unknown as EntityDef
    expect(toRequestError(entity, err("40P01"))._tag).toBe("Unavailable")
    expect(toRequestError(entity, err("ER_LOCK_DEADLOCK"))._tag).toBe("Unavailable")
    expect(toRequestError(entity, err("ECONNREFUSED"))._tag).toBe("Unavailable")
    expect(classify(entity, err("57014")).kind).toBe("timeout")
    const t = toRequestError(entity, err("57014"), undefined, 300)
    expect(t._tag === "Timeout" && t.timeoutMs).toBe(300)
    expect(
      classify(entity, new SqlError({ cause: Object.assign(new Error("max_statement_time exceeded"), { errno: 1969 }), message: "x" })).kind
    ).toBe("timeout")
  })

  it("every failure the retries count as transient is 503 once they are spent, whatever table it came from", () => {
    const entity = { name: "User", indexes: [], fields: [] } as unknown as EntityDef
    const transient = [
      err("ENETUNREACH"),
      err("ER_TOO_MANY_USER_CONNECTIONS"),
      err("ER_SERVER_SHUTDOWN_IN_PROGRESS"),
      err("08003"),
      new SqlError({ cause: new Error("no pool"), message: "Failed to acquire connection" }),
      new SqlError({ cause: new Error("Can't add new command when connection is in closed state"), message: "Failed to execute statement" })
    ]
    for (const e of transient) {
      expect(transience(e)).toBeDefined()
      expect(toRequestError(entity, e)._tag).toBe("Unavailable")
    }
  })
})

describe("withRetry on the TestClock", () => {
  it.effect("a read is retried after jittered exponential delays (100, 200, 400 ms ± 20%)", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      const fiber = yield* Effect.fork(withRetry(settings, "read")(flaky(tries, [err("ECONNRESET"), err("ECONNREFUSED"), err("40P01")])))
      yield* TestClock.adjust("79 millis")
      expect(yield* Ref.get(tries)).toBe(1)
      yield* TestClock.adjust("42 millis") // 121 ms: first delay (80–120) passed
      expect(yield* Ref.get(tries)).toBe(2)
      yield* TestClock.adjust("159 millis") // < 160 after the second try
      expect(yield* Ref.get(tries)).toBe(2)
      yield* TestClock.adjust("82 millis") // 241 ms after it: second delay (160–240) passed
      expect(yield* Ref.get(tries)).toBe(3)
      yield* TestClock.adjust("481 millis") // third delay (320–480)
      expect(yield* Fiber.join(fiber)).toBe("done")
      expect(yield* Ref.get(tries)).toBe(4)
    })
  )

  it.effect("gives up after max_retries retries (max_retries + 1 tries) with the last failure", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      const always = Effect.zipRight(
        Ref.update(tries, (n) => n + 1),
        Effect.fail(err("ECONNREFUSED"))
      )
      const fiber = yield* Effect.fork(withRetry(settings, "read")(always))
      yield* TestClock.adjust("10 seconds")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* Ref.get(tries)).toBe(4)
    })
  )

  it.effect("each delay is capped at max_delay_ms", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      const capped: RetrySettings = { max_retries: 3, initial_delay_ms: 1000, max_delay_ms: 1500 }
      const fiber = yield* Effect.fork(withRetry(capped, "read")(flaky(tries, [err("ECONNRESET"), err("ECONNRESET"), err("ECONNRESET")])))
      // Uncapped the delays would be ~1000, ~2000, ~4000; capped every one is at most 1500.
      yield* TestClock.adjust("1501 millis")
      expect(yield* Ref.get(tries)).toBe(2)
      yield* TestClock.adjust("1501 millis")
      expect(yield* Ref.get(tries)).toBe(3)
      yield* TestClock.adjust("1501 millis")
      expect(yield* Fiber.join(fiber)).toBe("done")
      expect(yield* Ref.get(tries)).toBe(4)
    })
  )

  it.effect("a write whose connection was lost is not retried (it may have been applied)", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      const exit = yield* Effect.exit(withRetry(settings, "write")(flaky(tries, [err("ECONNRESET")])))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* Ref.get(tries)).toBe(1)
    })
  )

  it.effect("a write is retried when the statement never reached the database, or was rolled back", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      const fiber = yield* Effect.fork(
        withRetry(settings, "write")(flaky(tries, [err("ECONNREFUSED"), err("40001"), err("ER_LOCK_DEADLOCK")]))
      )
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("done")
      expect(yield* Ref.get(tries)).toBe(4)
    })
  )

  it.effect("failures that are not transient and max_retries 0 are not retried", () =>
    Effect.gen(function* () {
      const tries = yield* Ref.make(0)
      yield* Effect.exit(withRetry(settings, "read")(flaky(tries, [err("23505")])))
      expect(yield* Ref.get(tries)).toBe(1)
      yield* Ref.set(tries, 0)
      yield* Effect.exit(withRetry({ ...settings, max_retries: 0 }, "read")(flaky(tries, [err("ECONNREFUSED")])))
      expect(yield* Ref.get(tries)).toBe(1)
    })
  )

  it.effect("a deadlocked transaction is retried as a whole; the rolled-back try leaves nothing behind", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`
      const tries = yield* Ref.make(0)
      const tx = sql.withTransaction(
        Effect.gen(function* () {
          const n = yield* Ref.getAndUpdate(tries, (k) => k + 1)
          yield* sql`INSERT INTO t (id, v) VALUES (1, 'first statement')`
          // The database chose this transaction as the deadlock victim on the first try.
          if (n === 0) return yield* Effect.fail(err("40P01", "deadlock detected"))
          yield* sql`INSERT INTO t (id, v) VALUES (2, 'second statement')`
        })
      )
      const fiber = yield* Effect.fork(withRetry(settings, "write")(tx))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(tries)).toBe(2)
      const rows = yield* sql<{ id: number }>`SELECT id FROM t ORDER BY id`
      expect(rows.map((r) => r.id)).toEqual([1, 2])
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
  )
})
