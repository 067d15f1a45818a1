/**
 * PostgreSQL's direct path (layers/db/Pg.ts, `PooledQuery`): the daemon's statements outside a
 * transaction (reads, and the autocommit INSERT, UPDATE and DELETE) skip @effect/sql's execution
 * wrapper and run on the pool. It must answer exactly as
 * the SqlClient does (rows, errors), use the transaction's connection inside `withTransaction`,
 * give connections back when interrupted while waiting for one, and cancel a running statement
 * on interruption (db-timeout.test.ts runs the same cancel case through the SqlClient).
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Either, Fiber, ManagedRuntime, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { executeVia, queryVia, sqlClientLayer } from "../../layers/Database.js"
import { ConfigFile, type DaemonConfig } from "../../src/Config.js"
import { withQueryTimeout } from "../../src/query/Timeout.js"
import { PooledQuery } from "../../src/services/Database.js"
import { createDatabase, pgSleepingStatements, skipDialect, type TestDatabase } from "../support/services.js"
import { untilTrue } from "../support/wait.js"

const configFor = (db: TestDatabase, poolSize: number, queryTimeout: number): DaemonConfig => ({
  ...Schema.decodeUnknownSync(ConfigFile)({
    database: { ...db.databaseConfig, auto_migrate: false, timeout: 2000, pool_size: poolSize },
    performance: { query_timeout: queryTimeout }
  }),
  sourcePath: "/dev/null",
  entitiesDir: "/dev/null"
})

type Rt = ManagedRuntime.ManagedRuntime<SqlClient.SqlClient | PooledQuery, unknown>

describe.skipIf(await skipDialect("postgresql"))("postgresql: the direct path for statements outside a transaction", () => {
  let db: TestDatabase
  let rt: Rt
  let name: string

  const sleeping = () => pgSleepingStatements(name)

  const direct = Effect.map(PooledQuery, (p) => queryVia(p.run))
  const directExecute = Effect.map(PooledQuery, (p) => executeVia(p.run))

  beforeAll(async () => {
    db = await createDatabase("postgresql")
    name = String((db.databaseConfig.connection as { database: string }).database)
    // Two connections (one sleeps, one sends the cancel, as PgClient sends it: through the pool)
    // and a 10 s server limit: waiting for a connection and cancelling are seen.
    rt = ManagedRuntime.make(sqlClientLayer(configFor(db, 2, 10_000))) as Rt
    const { run } = await rt.runPromise(PooledQuery)
    expect(run, "the PostgreSQL adapter offers its direct path").toBeDefined()
    await rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE t (id int PRIMARY KEY, doc jsonb, at timestamptz, note text)`)
    )
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  it("answers the same rows as the SqlClient, for the same statement and parameters", async () => {
    const [viaClient, viaPool] = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        yield* sql`INSERT INTO t VALUES (1, ${JSON.stringify({ a: [1, "x"] })}::jsonb, '2026-11-28T05:00:00.123Z', NULL), (2, NULL, NULL, ${"o'k"})`
        const statement = () => sql<Record<string, unknown>>`SELECT id, doc, at, note FROM t WHERE id IN (${1}, ${2}) ORDER BY id`
        return [yield* statement(), yield* query(statement())] as const
      })
    )
    expect(viaPool).toHaveLength(2)
    expect(viaPool).toEqual(viaClient)
  })

  it("fails with the driver's error in a SqlError, as the SqlClient does", async () => {
    const [viaClient, viaPool] = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        const bad = () => sql`SELECT ${"not a number"}::int AS n`
        return [yield* Effect.either(bad()), yield* Effect.either(query(bad()))] as const
      })
    )
    expect(Either.isLeft(viaPool) && viaPool.left).toBeInstanceOf(SqlError)
    const code = (e: typeof viaPool) => (Either.isLeft(e) ? (e.left.cause as { code?: string }).code : undefined)
    expect(code(viaPool)).toBe("22P02")
    expect(code(viaPool)).toBe(code(viaClient))
  })

  it("inside withTransaction reads on the transaction's connection (its own uncommitted row)", async () => {
    const seen = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        const count = () => query(sql<{ n: number }>`SELECT count(*)::int AS n FROM t WHERE id = ${10}`)
        // A statement sent to the pool would not see the uncommitted row: the read must use the
        // transaction's own connection.
        let inside: number | undefined
        const rolledBack = yield* sql
          .withTransaction(
            Effect.zipRight(sql`INSERT INTO t (id) VALUES (${10})`, count()).pipe(
              Effect.tap((rows) => Effect.sync(() => (inside = rows[0]!.n))),
              Effect.zipRight(Effect.fail("roll back" as const))
            )
          )
          .pipe(Effect.flip)
        const after = yield* count()
        return { inside, rolledBack, after: after[0]!.n }
      })
    )
    expect(seen).toEqual({ inside: 1, rolledBack: "roll back", after: 0 })
  })

  it("gives the connection back when interrupted while waiting for it", async () => {
    const answer = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        // Both connections sleep; five more statements wait for one and are interrupted.
        const holders = yield* Effect.forEach([0, 1], () => Effect.fork(query(sql`SELECT pg_sleep(0.5) AS s`)))
        const waiting = yield* Effect.forEach(
          Array.from({ length: 5 }, (_, i) => i),
          (i) => Effect.fork(query(sql`SELECT ${i}::int AS i`))
        )
        // Forked fibers start in order at the next scheduler turn: after it, each has asked the
        // pool for the connection.
        yield* Effect.yieldNow()
        yield* Fiber.interruptAll(waiting)
        yield* Fiber.joinAll(holders)
        // Had a waiting statement kept the connection, this one would wait until the timeout.
        return yield* query(sql<{ n: number }>`SELECT 42 AS n`).pipe(Effect.timeout("2 seconds"))
      })
    )
    expect(answer[0]!.n).toBe(42)
  })

  it("cancels the running statement on interruption, long before the server's own limit", async () => {
    const started = performance.now()
    const outcome = await rt.runPromise(
      Effect.flatMap(direct, (query) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) => query(sql`SELECT pg_sleep(8) AS s`).pipe(withQueryTimeout(300), Effect.either))
      )
    )
    expect(Either.isLeft(outcome) && outcome.left._tag).toBe("Timeout")
    expect(performance.now() - started).toBeLessThan(1000)
    // Server limit 10 s: only the cancel sent on interruption stops it within the bound.
    await untilTrue("the cancelled pg_sleep to end", async () => (await sleeping()) === 0, 2000)
    // And the connection is usable again.
    const one = await rt.runPromise(
      Effect.flatMap(direct, (query) => Effect.flatMap(SqlClient.SqlClient, (sql) => query(sql<{ one: number }>`SELECT 1 AS one`)))
    )
    expect(one[0]!.one).toBe(1)
  })

  it("an interrupted statement's connection returns only after its cancel: the cancel cannot hit the next request", async () => {
    const victim = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        // Both connections busy: a blocker for 1 s, and the statement to interrupt for 0.3 s.
        const blocker = yield* Effect.fork(query(sql`SELECT pg_sleep(1) AS blocker`))
        const interrupted = yield* Effect.fork(query(sql`SELECT pg_sleep(0.3) AS interrupted`))
        yield* Effect.promise(() => untilTrue("both statements to run", async () => (await sleeping()) === 2, 3000))
        // The next request waits for a connection; then the interruption's cancel waits too.
        const next = yield* Effect.fork(query(sql<{ v: string }>`SELECT pg_sleep(1.5)::text AS v`).pipe(Effect.either))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(interrupted)
        yield* Fiber.join(blocker)
        // Had the connection gone back when the 0.3 s statement ended, the next request would run
        // on it, and the cancel (sent once the blocker's connection is free) would stop it.
        return yield* Fiber.join(next)
      })
    )
    expect(Either.isRight(victim), JSON.stringify(victim)).toBe(true)
  })

  it("execute answers the rows a write changed, as the SqlClient's raw result does", async () => {
    const counts = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const execute = yield* directExecute
        const inserted = yield* execute(sql`INSERT INTO t (id, note) VALUES (${20}, 'a'), (${21}, 'a'), (${22}, 'b')`)
        const viaPool = yield* execute(sql`UPDATE t SET note = ${"c"} WHERE note = ${"a"} AND id >= ${20}`)
        const viaClient = yield* Effect.map(
          sql`UPDATE t SET note = ${"d"} WHERE note = ${"c"} AND id >= ${20}`.raw,
          (r) => (r as { rowCount: number }).rowCount
        )
        const none = yield* execute(sql`DELETE FROM t WHERE id = ${999}`)
        const deleted = yield* execute(sql`DELETE FROM t WHERE id >= ${20}`)
        return { inserted, viaPool, viaClient, none, deleted }
      })
    )
    expect(counts).toEqual({ inserted: 3, viaPool: 2, viaClient: 2, none: 0, deleted: 3 })
  })

  it("an interrupted write's cancel cannot stop the next request's write on the same connection", async () => {
    await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO t (id, note) VALUES (${30}, 'x'), (${31}, 'x')`))
    const victim = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const query = yield* direct
        const execute = yield* directExecute
        // As for reads above: both connections busy, the write to interrupt ends first, its cancel
        // has to wait for a free connection, and the next write waits for one too.
        const blocker = yield* Effect.fork(query(sql`SELECT pg_sleep(1) AS blocker`))
        const interrupted = yield* Effect.fork(execute(sql`UPDATE t SET note = pg_sleep(0.3)::text WHERE id = ${30}`))
        yield* Effect.promise(() => untilTrue("both statements to run", async () => (await sleeping()) === 2, 3000))
        const next = yield* Effect.fork(
          execute(sql`UPDATE t SET note = 'next' || pg_sleep(1.5)::text WHERE id = ${31}`).pipe(Effect.either)
        )
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(interrupted)
        yield* Fiber.join(blocker)
        return yield* Fiber.join(next)
      })
    )
    expect(victim, JSON.stringify(victim)).toEqual(Either.right(1))
    const stored = await rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ note: string }>`SELECT note FROM t WHERE id = ${31}`)
    )
    expect(stored).toEqual([{ note: "next" }])
  })
})
