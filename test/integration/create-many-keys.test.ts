/**
 * createMany on a table whose keys the database assigns (autoincrement; Prisma's Int @id), when
 * the keys are needed: with a row filter (checked in the same transaction) and with the rows
 * announced to realtime (collected changes). One multi-row INSERT per chunk answers the keys
 * (RETURNING on PostgreSQL, SQLite and MariaDB; MySQL 8: Repository.ts says how); the keys must be
 * exactly those of the rows written, and a row outside the filter must undo the whole batch.
 * On each dialect, on the tables `prisma migrate` makes (test/fixtures/prisma-app).
 */
import { Effect, Either, type ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EntityRegistry } from "../../src/entity/Model.js"
import { validateCreateMany } from "../../src/entity/Validate.js"
import { parseFilter } from "../../src/query/Filter.js"
import { collecting, type Collector } from "../../src/query/Capture.js"
import { assumeKeysBy, makeRepository, mariaDbReturning } from "../../src/query/Repository.js"
import { Database } from "../../src/services/Database.js"
import { type InProcess, startInProcess } from "../support/inprocess.js"
import { rawDb, type RawDb } from "../support/rawdb.js"
import { createDatabase, daemonConfig, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { DIALECTS, uid } from "./harness.js"

const APP = fileURLToPath(new URL("../fixtures/prisma-app/", import.meta.url))

describe("mariaDbReturning", () => {
  it("is MariaDB from 10.5, never MySQL", () => {
    expect(mariaDbReturning("10.11.6-MariaDB-0+deb12u1")).toBe(true)
    expect(mariaDbReturning("10.5.0-MariaDB")).toBe(true)
    expect(mariaDbReturning("11.4.2-MariaDB-log")).toBe(true)
    expect(mariaDbReturning("10.4.32-MariaDB")).toBe(false)
    expect(mariaDbReturning("8.0.36")).toBe(false)
    expect(mariaDbReturning("8.4.0-0ubuntu0.24.04.1")).toBe(false)
  })
})

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: createMany with database-assigned keys`, () => {
    let db: TestDatabase | undefined
    let raw: RawDb | undefined
    let daemon: InProcess | undefined
    const q = dialect === "mysql" ? "`" : '"'

    beforeAll(async () => {
      db = await createDatabase(dialect)
      raw = await rawDb(db)
      await raw.exec(fs.readFileSync(path.join(APP, dialect, "migrations", "20240115103000_init", "migration.sql"), "utf8"))
      const file = writeConfig(
        daemonConfig(db, {
          database: { ...db.databaseConfig, auto_migrate: false },
          entities: { prisma_schema: path.join(APP, dialect, "schema.prisma") }
        }),
        tempDir("create-many-keys")
      )
      daemon = await startInProcess(file)
    })

    afterAll(async () => {
      await daemon?.runtime.dispose()
      await raw?.close()
      await db?.drop()
    })

    /** The Repository on the daemon's own database and entities, with the collector when given. */
    const createMany = (
      customers: ReadonlyArray<Record<string, unknown>>,
      filter: unknown,
      into?: Collector,
      keysBy?: Parameters<typeof assumeKeysBy>[1]
    ) =>
      (daemon!.runtime as unknown as ManagedRuntime.ManagedRuntime<Database | EntityRegistry, unknown>).runPromise(
        Effect.gen(function* () {
          const registry = yield* EntityRegistry
          // A database shape of its own, so that an assumed way to get keys stays with this call.
          const database = keysBy === undefined ? yield* Database : { ...(yield* Database) }
          if (keysBy !== undefined) assumeKeysBy(database, keysBy)
          const repo = makeRepository(database, registry)
          const customer = registry.entities.get("Customer")!
          const values = validateCreateMany(customer, customers)
          const rowFilter = parseFilter(customer, filter)
          if (Either.isLeft(values) || Either.isLeft(rowFilter)) return yield* Effect.die("invalid test data")
          const write = repo.createMany(customer, values.right, rowFilter.right)
          return yield* Effect.either(into === undefined ? write : collecting(write, into))
        })
      )
    const customers = (n: number, tag: string, name: (i: number) => string = () => "in") =>
      Array.from({ length: n }, (_, i) => ({ email: `${tag}-${i}@example.com`, name: name(i), balance: "1", score: i }))
    const idsOf = async (tag: string) =>
      // tags are [0-9a-z] (uid): no LIKE wildcard in them
      (await raw!.query(`SELECT id FROM ${q}Customer${q} WHERE email LIKE '${tag}-%' ORDER BY id`)).map((r) => Number(r.id))

    it("announces exactly the keys of the rows written, across INSERT chunks, with a row filter", async () => {
      const tag = `k${uid()}`
      const into: Collector = []
      // 450 rows: three INSERT chunks of at most 200.
      const r = await createMany(customers(450, tag), { name: "in" }, into)
      expect(r).toEqual(Either.right(450))
      const stored = await idsOf(tag)
      expect(stored).toHaveLength(450)
      expect(into.map((c) => c.entity)).toEqual(["Customer"])
      const announced = into[0]!.rows.map((row) => {
        expect(row.op).toBe("create")
        return Number(row.id)
      })
      expect(announced.sort((a, b) => a - b)).toEqual(stored)
    })

    it("announces the keys without a row filter too", async () => {
      const tag = `n${uid()}`
      const into: Collector = []
      expect(await createMany(customers(3, tag), undefined, into)).toEqual(Either.right(3))
      expect(into[0]!.rows.map((row) => Number(row.id)).sort((a, b) => a - b)).toEqual(await idsOf(tag))
    })

    it.runIf(dialect === "mysql")(
      "takes MySQL 8's ways on InnoDB: consecutive keys from one INSERT's insertId, or row by row",
      async () => {
        const mode = Number((await raw!.query("SELECT @@innodb_autoinc_lock_mode AS m"))[0]!.m)
        for (const by of mode === 2 ? (["rowByRow"] as const) : (["consecutive", "rowByRow"] as const)) {
          const tag = `${by === "consecutive" ? "c" : "r"}${uid()}`
          const into: Collector = []
          expect(await createMany(customers(250, tag), { name: "in" }, into, by)).toEqual(Either.right(250))
          const stored = await idsOf(tag)
          expect(stored).toHaveLength(250)
          expect(into[0]!.rows.map((row) => Number(row.id)).sort((a, b) => a - b)).toEqual(stored)
        }
      }
    )

    it("writes no row when one of them falls outside the row filter", async () => {
      const tag = `f${uid()}`
      const into: Collector = []
      const r = await createMany(
        customers(250, tag, (i) => (i === 249 ? "out" : "in")),
        { name: "in" },
        into
      )
      expect(Either.isLeft(r) && r.left._tag).toBe("Forbidden")
      expect(await idsOf(tag)).toEqual([])
      expect(into).toEqual([])
    })
  })
}
