/**
 * What the executor process hop costs a SQLite read by id: the same statement through
 * @effect/sql-sqlite-node's SqliteClient (better-sqlite3 on the calling thread) and through the
 * daemon's client (layers/db/Sqlite.ts: a reader process), in alternating rounds on one database
 * file. Prints the median and mean per-read latency of each round, and the medians of
 * the rounds.
 *
 *   npx tsx bench/sqlite-hop.ts [rounds=6] [reads per round=5000]
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { make } from "../layers/db/Sqlite.js"

const rounds = Number(process.argv[2] ?? 6)
const reads = Number(process.argv[3] ?? 5000)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-sqlite-hop-"))
const filename = path.join(dir, "bench.sqlite")

const clients: Record<string, Layer.Layer<SqlClient.SqlClient, unknown>> = {
  "on the event loop (SqliteClient)": SqliteClient.layer({ filename }),
  "executor process (layers/db/Sqlite.ts)": Layer.scoped(SqlClient.SqlClient, make({ filename, busyTimeout: 5000, readers: 2 })).pipe(
    Layer.provide(Reactivity.layer)
  )
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  const setup = ManagedRuntime.make(SqliteClient.layer({ filename }))
  await setup.runPromise(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE pages (id TEXT PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL, level INTEGER NOT NULL)`
      yield* sql.unsafe(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000) INSERT INTO pages SELECT printf('id-%05d', n), 'slug-' || n, 'title ' || n, n % 5 FROM s"
      )
    })
  )
  await setup.dispose()
  const runtimes = Object.entries(clients).map(([name, layer]) => ({
    name,
    rt: ManagedRuntime.make(layer),
    perRead: [] as Array<number>,
    mean: [] as Array<number>
  }))
  for (let round = 0; round < rounds; round++) {
    for (const c of round % 2 === 0 ? runtimes : [...runtimes].reverse()) {
      const [us, mean] = await c.rt.runPromise(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const one = (i: number) =>
            sql`SELECT id, slug, title, level FROM pages WHERE id = ${`id-${String((i % 10000) + 1).padStart(5, "0")}`}`
          for (let i = 0; i < 200; i++) yield* one(i)
          const each: Array<number> = []
          for (let i = 0; i < reads; i++) {
            const t0 = performance.now()
            yield* one(i)
            each.push((performance.now() - t0) * 1000)
          }
          return [median(each), each.reduce((a, b) => a + b, 0) / each.length] as const
        })
      )
      c.perRead.push(us)
      c.mean.push(mean)
      console.log(`round ${round + 1} ${c.name}: median ${us.toFixed(1)} µs, mean ${mean.toFixed(1)} µs per read`)
    }
  }
  for (const c of runtimes) {
    console.log(
      `${c.name}: medians ${c.perRead.map((x) => x.toFixed(0)).join(", ")} µs (median ${median(c.perRead).toFixed(1)}); means ${c.mean.map((x) => x.toFixed(0)).join(", ")} µs (median ${median(c.mean).toFixed(1)})`
    )
    await c.rt.dispose()
  }
  fs.rmSync(dir, { recursive: true, force: true })
}

void main()
