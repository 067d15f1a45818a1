/**
 * A request that times out (504) stops its statement on the database too. There is no wire method
 * that sleeps, so this runs at the layer level: the daemon's SqlClient layer (layers/Database.ts)
 * from a configuration with query_timeout 300 ms, a sleeping statement run through the handler's
 * own timeout wrapper (withQueryTimeout), then the server's process list, read over a separate
 * connection, must show no sleeping statement of the daemon (polled with a bounded deadline).
 * Each timeout case runs in both kinds of fiber the bound supports: one that can be interrupted
 * (the bound forks a child) and a request fiber of `requestRuntime`, as the server runs them (the
 * bound interrupts the request's own interruptible region).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime, Runtime, Schema } from "effect"
import mysql from "mysql2/promise"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { sqlClientLayer } from "../../layers/Database.js"
import { ConfigFile, type DaemonConfig } from "../../src/Config.js"
import { classify, toRequestError } from "../../src/query/DbErrors.js"
import { requestRuntime, withQueryTimeout } from "../../src/query/Timeout.js"
import type { EntityDef } from "../../src/entity/Model.js"
import { createDatabase, MY, pgSleepingStatements, skipDialect, type TestDatabase } from "../support/services.js"

const QUERY_TIMEOUT = 300
const anyEntity = { name: "X", indexes: [], fields: [] } as unknown as EntityDef

const configFor = (db: TestDatabase, queryTimeout = QUERY_TIMEOUT): DaemonConfig => ({
  ...Schema.decodeUnknownSync(ConfigFile)({
    database: { ...db.databaseConfig, auto_migrate: false, timeout: 2000 },
    performance: { query_timeout: queryTimeout }
  }),
  sourcePath: "/dev/null",
  entitiesDir: "/dev/null"
})

/** How a test runs an effect on a runtime: in an ordinary fiber, or in a request fiber. */
const fibers = [
  {
    kind: "an interruptible fiber",
    run: <A, E>(rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>, e: Effect.Effect<A, E, SqlClient.SqlClient>) =>
      rt.runPromise(e)
  },
  {
    kind: "a request fiber",
    run: async <A, E>(rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>, e: Effect.Effect<A, E, SqlClient.SqlClient>) =>
      Runtime.runPromise(requestRuntime(await rt.runtime()))(e)
  }
] as const

/** Polls `probe` until it returns 0 or the deadline passes; returns the last value. */
const pollUntilZero = async (probe: () => Promise<number>, deadlineMs: number): Promise<number> => {
  const until = Date.now() + deadlineMs
  let n = await probe()
  while (n > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50))
    n = await probe()
  }
  return n
}

const sleeps = [
  { dialect: "postgresql" as const, sleep: "SELECT pg_sleep(5)" },
  { dialect: "mysql" as const, sleep: "SELECT SLEEP(5)" }
]

for (const { dialect, sleep } of sleeps) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: statements of timed-out requests stop on the server`, () => {
    let db: TestDatabase
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>
    let name: string

    /** Statements of the daemon still running `sleep` in the test database (separate connection). */
    const running = async (): Promise<number> => {
      if (dialect === "postgresql") return pgSleepingStatements(name)
      const c = await mysql.createConnection({ ...MY, password: "", connectTimeout: 3000 })
      try {
        const [rows] = await c.query(
          "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE 'SELECT SLEEP(5)%'",
          [name]
        )
        return Number((rows as Array<{ n: number }>)[0]!.n)
      } finally {
        await c.end()
      }
    }

    beforeAll(async () => {
      db = await createDatabase(dialect)
      name = String((db.databaseConfig.connection as { database: string }).database)
      rt = ManagedRuntime.make(sqlClientLayer(configFor(db))) as ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>
      await rt.runPromise(SqlClient.SqlClient)
    })
    afterAll(async () => {
      await rt?.dispose()
      await db?.drop()
    })

    it("every connection carries the statement time limit of query_timeout", async () => {
      const limit = await rt.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          dialect === "postgresql"
            ? sql<{ v: string }>`SELECT current_setting('statement_timeout') AS v`
            : sql<{ v: unknown }>`SELECT @@SESSION.max_statement_time AS v`
        )
      )
      if (dialect === "postgresql") expect(limit[0]!.v).toBe("300ms")
      else expect(Number(limit[0]!.v)).toBeCloseTo(0.3, 6)
    })

    it.each(fibers)("the request answers 504 within ~1 s and the sleeping statement is gone from the server ($kind)", async ({ run }) => {
      const started = performance.now()
      // As Repository and Handler do: driver errors mapped, then the request bound. Whichever
      // fires first (our timer, or the server's limit of the same length) the answer is 504.
      const outcome = await run(
        rt,
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe(sleep).pipe(
            Effect.mapError((e) => toRequestError(anyEntity, e, undefined, QUERY_TIMEOUT)),
            withQueryTimeout(QUERY_TIMEOUT),
            Effect.either
          )
        )
      )
      const elapsed = performance.now() - started
      expect(Either.isLeft(outcome) && outcome.left._tag, JSON.stringify(outcome)).toBe("Timeout")
      expect(elapsed).toBeLessThan(1000)
      // Bounded by 3 s: far less than the 5 s the statement would otherwise sleep.
      expect(await pollUntilZero(running, 3000)).toBe(0)
    })

    it.skipIf(dialect !== "postgresql").each(fibers)(
      "PgClient's cancel stops the statement long before the server's own limit ($kind)",
      async ({ run }) => {
        // Server limit 10 s, request bound 300 ms: only the cancel sent on interruption can stop it
        // within the 2 s the poll allows.
        const slow = ManagedRuntime.make(sqlClientLayer(configFor(db, 10_000)))
        try {
          const started = performance.now()
          const outcome = await run(
            slow as ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>,
            Effect.flatMap(SqlClient.SqlClient, (sql) =>
              sql.unsafe("SELECT pg_sleep(8)").pipe(withQueryTimeout(QUERY_TIMEOUT), Effect.either)
            )
          )
          expect(Either.isLeft(outcome) && outcome.left._tag).toBe("Timeout")
          expect(performance.now() - started).toBeLessThan(1000)
          expect(await pollUntilZero(running, 2000)).toBe(0)
        } finally {
          await slow.dispose()
        }
      }
    )

    it("the server stops a statement by itself even when nothing cancels it (maps to 504)", async () => {
      const started = performance.now()
      const outcome = await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.either(sql.unsafe(sleep))))
      expect(performance.now() - started).toBeLessThan(2500)
      expect(Either.isLeft(outcome)).toBe(true)
      if (Either.isLeft(outcome)) expect(classify(anyEntity, outcome.left).kind).toBe("timeout")
      // The connection is still usable afterwards.
      const one = await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ one: number }>`SELECT 1 AS one`))
      expect(Number(one[0]!.one)).toBe(1)
    })
  })
}

describe("sqlite: a statement that outruns query_timeout answers 504 at the bound (its executor process is killed and replaced)", () => {
  it.each(fibers)("a statement that outruns query_timeout answers Timeout ($kind)", async ({ run }) => {
    const db = await createDatabase("sqlite")
    const rt = ManagedRuntime.make(sqlClientLayer(configFor(db))) as ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>
    try {
      // A recursive CTE that takes well over the bound (in a reader process).
      const slow = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) AS n FROM c")
      )
      // A bound far below what the statement takes, so that it surely outruns it.
      const bound = 50
      const started = performance.now()
      const outcome = await run(rt, slow.pipe(withQueryTimeout(bound), Effect.either))
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThan(bound)
      expect(Either.isLeft(outcome) && outcome.left._tag, `took ${Math.round(elapsed)} ms: ${JSON.stringify(outcome)}`).toBe("Timeout")
    } finally {
      await rt.dispose()
      await db.drop()
    }
  })
})
