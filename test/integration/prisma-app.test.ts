/**
 * A database that Prisma made (test/fixtures/prisma-app): its tables are created with the SQL
 * `prisma migrate` writes for the app's schema.prisma, on each dialect; the daemon serves that
 * schema.prisma over them with `database.auto_migrate: false`. Checked over the RpcHandler: the
 * types Prisma users rely on (integer ids, BigInt and Decimal as exact strings, Float, String[]
 * on PostgreSQL, enums, DateTime in Prisma's storage), the defaults Prisma's client fills in
 * (uuid(), cuid(), @updatedAt) filled by the daemon, relations through `include`, compound
 * unique keys, rows a Prisma client wrote, and that nothing in the database was created or altered.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type InProcess, startInProcess } from "../support/inprocess.js"
import { rawDb, type RawDb } from "../support/rawdb.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  serviceAuth,
  skipDialect,
  tempDir,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { type Answer, DIALECTS, expectIsoUtc, expectNoLeak, expectUuidV4, fieldNames, type Rec, uid } from "./harness.js"

const APP = fileURLToPath(new URL("../fixtures/prisma-app/", import.meta.url))
const schemaOf = (dialect: DialectName) => path.join(APP, dialect, "schema.prisma")
const migrationOf = (dialect: DialectName) =>
  fs.readFileSync(path.join(APP, dialect, "migrations", "20240115103000_init", "migration.sql"), "utf8")

const CUID = /^c[0-9a-z]{24}$/

/** Everything about the database's tables that creating or altering would change. */
const snapshot = async (raw: RawDb, dialect: DialectName): Promise<unknown> => {
  if (dialect === "postgresql") {
    return {
      columns: await raw.query(
        "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, collation_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
      ),
      indexes: await raw.query("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"),
      constraints: await raw.query(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1"
      ),
      types: await raw.query("SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace ORDER BY 1")
    }
  }
  if (dialect === "mysql") {
    return {
      columns: await raw.query(
        "SELECT table_name, column_name, column_type, is_nullable, column_default, collation_name, extra FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY 1, 2"
      ),
      indexes: await raw.query(
        "SELECT table_name, index_name, column_name, seq_in_index, non_unique FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1, 2, 4"
      ),
      tables: await raw.query(
        "SELECT table_name, table_collation FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1"
      )
    }
  }
  return raw.query("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
}

describe("test/fixtures/prisma-app: the daemon's reading of the schema", () => {
  it("refuses String[] outside PostgreSQL, naming the field and why", async () => {
    const { loadPrismaRegistry } = await import("../../src/entity/Prisma.js")
    for (const dialect of ["mysql", "sqlite"] as const) {
      expect(() => loadPrismaRegistry(schemaOf("postgresql"), { dialect })).toThrow(
        /schema\.prisma:\d+: Customer\.tags: String\[\] is supported on PostgreSQL only \(Prisma has no scalar lists on (MySQL|SQLite); use Json\)/
      )
    }
    const pg = loadPrismaRegistry(schemaOf("postgresql"), { dialect: "pg" }).entities.get("Customer")!
    expect(pg.byName.get("tags")).toMatchObject({ type: "string_list", default: [] })
    expect(pg.primaryKey).toMatchObject({ name: "id", type: "integer", autoIncrement: true, generated: true })
    expect(pg.byName.get("ref")).toMatchObject({ type: "uuid", defaultFn: "uuid", required: false })
    expect(pg.byName.get("code")).toMatchObject({ type: "string", defaultFn: "cuid", required: false })
    // the daemon's start knows the adapter: it stops there, naming the field
    const sqlite = await createDatabase("sqlite")
    try {
      const file = writeConfig(daemonConfig(sqlite, { entities: { prisma_schema: schemaOf("postgresql") } }), tempDir("prisma-app-lists"))
      await expect(startInProcess(file)).rejects.toThrow(/Customer\.tags: String\[\] is supported on PostgreSQL only/)
    } finally {
      await sqlite.drop()
    }
    // the same entities get the same tables, whatever the dialect
    const my = loadPrismaRegistry(schemaOf("mysql"), { dialect: "mysql" })
    expect([...my.entities.values()].map((e) => e.table).sort()).toEqual(["Coupon", "Customer", "orders"])
    expect(my.entities.get("Customer")!.byName.get("name")).toMatchObject({ type: "string", maxLength: 191 })
  })
})

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: a database made by prisma migrate`, () => {
    let db: TestDatabase | undefined
    let raw: RawDb | undefined
    let daemon: InProcess | undefined
    let before: unknown
    let next = 0
    const zone = process.env.TZ
    const q = dialect === "mysql" ? "`" : '"'

    beforeAll(async () => {
      // Prisma's DateTime columns hold UTC: a process in another zone must read and write them alike.
      process.env.TZ = "America/New_York"
      db = await createDatabase(dialect)
      raw = await rawDb(db)
      await raw.exec(migrationOf(dialect))
      before = await snapshot(raw, dialect)
      const dir = tempDir("prisma-app")
      const file = writeConfig(
        daemonConfig(db, { database: { ...db.databaseConfig, auto_migrate: false }, entities: { prisma_schema: schemaOf(dialect) } }),
        dir
      )
      daemon = await startInProcess(file)
    })

    afterAll(async () => {
      await daemon?.runtime.dispose()
      await raw?.close()
      await db?.drop()
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    })

    const call = async (method: string, params: ReadonlyArray<unknown>): Promise<Answer> => {
      const id = `a${++next}`
      const a = JSON.parse(await daemon!.handle(JSON.stringify({ id, method, params, auth: serviceAuth }))) as Answer
      expect(a.id).toBe(id)
      return a
    }
    const ok = async <T = Rec>(method: string, params: ReadonlyArray<unknown>): Promise<T> => {
      const a = await call(method, params)
      expect(a.error, `${method} ${JSON.stringify(params).slice(0, 200)}: ${JSON.stringify(a.error)}`).toBeUndefined()
      return a.result as T
    }
    const fail = async (code: number, method: string, params: ReadonlyArray<unknown>) => {
      const a = await call(method, params)
      expect(a.error?.code, JSON.stringify(a)).toBe(code)
      expectNoLeak(a.error)
      return a.error!
    }
    const customer = (over: Rec = {}) => {
      const s = uid()
      return ok("create", ["Customer", { email: `c_${s}@example.com`, name: `C ${s}`, balance: "10.5", score: 1.25, ...over }])
    }

    it("numbers ids as the database assigns them and answers them as numbers", async () => {
      const a = await customer()
      const b = await customer()
      expect(typeof a.id).toBe("number")
      expect(b.id).toBe((a.id as number) + 1)
      expect(await ok("read", ["Customer", a.id])).toEqual(a)
      // an id given as digits finds the same record; one that no row has is not found
      expect(await ok("read", ["Customer", String(a.id)])).toEqual(a)
      await fail(404, "read", ["Customer", 2147483647])
      await fail(404, "read", ["Customer", "not-a-number"])
      await fail(422, "create", ["Customer", { id: 5, email: `x_${uid()}@example.com`, name: "x", balance: "1", score: 1 }])
    })

    it("fills what Prisma's client fills: uuid(), cuid(), now(), @updatedAt, literal defaults", async () => {
      const c = await customer()
      expectUuidV4(c.ref)
      expect(c.code).toMatch(CUID)
      expectIsoUtc(c.createdAt)
      expect(c.updatedAt).toBe(c.createdAt)
      expect(c).toMatchObject({ visits: "0", status: "ACTIVE", ...(dialect === "postgresql" ? { tags: [] } : {}) })
      // a value sent is kept
      const given = await customer({ ref: "0F8FAD5B-D9CB-469F-A165-70867728950E", code: "my-own-code" })
      expect(given).toMatchObject({ ref: "0f8fad5b-d9cb-469f-a165-70867728950e", code: "my-own-code" })

      // @updatedAt: set by the daemon on every update (the stored value is first put far back)
      await raw!.exec(
        `UPDATE ${q}Customer${q} SET ${q}updatedAt${q} = ${dialect === "sqlite" ? "946684800000" : "'2000-01-01 00:00:00.000'"} WHERE ${q}id${q} = ${c.id as number}`
      )
      expect((await ok("read", ["Customer", c.id])).updatedAt).toBe("2000-01-01T00:00:00.000Z")
      const t0 = Date.now()
      const u = await ok("update", ["Customer", c.id, { name: "Renamed" }])
      expect(u.name).toBe("Renamed")
      expect(Date.parse(u.updatedAt as string)).toBeGreaterThanOrEqual(t0 - 1)
      expect(u.createdAt).toBe(c.createdAt)
      await fail(422, "update", ["Customer", c.id, { createdAt: "2020-01-01T00:00:00Z" }])
    })

    it("keeps BigInt and Decimal exact as strings, Float as numbers", async () => {
      const big = "9007199254740993" // 2^53 + 1: a double would make it ...992
      const decimal = dialect === "sqlite" ? "1234.5678" : "12345678901234567890.123456789012345678901234567891"
      const c = await customer({ visits: big, balance: decimal, score: 0.1 })
      expect(c).toMatchObject({ visits: big, balance: decimal, score: 0.1 })
      expect(await ok("read", ["Customer", c.id])).toMatchObject({ visits: big, balance: decimal, score: 0.1 })
      const max = await customer({ visits: "9223372036854775807", balance: "-0.50", score: -3.5e-7 })
      expect(max).toMatchObject({ visits: "9223372036854775807", balance: "-0.5", score: -3.5e-7 })
      // filters compare them as numbers, exactly (MySQL would compare strings with numbers as doubles)
      const only = (filter: Rec) =>
        ok<{ data: ReadonlyArray<Rec>; total: number }>("list", ["Customer", { filter: { id: { in: [c.id, max.id] }, ...filter } }])
      expect((await only({ visits: "9007199254740993" })).data.map((r) => r.id)).toEqual([c.id])
      expect((await only({ visits: "9007199254740992" })).total).toBe(0)
      expect((await only({ visits: { gt: "9007199254740992" } })).total).toBe(2)
      expect((await only({ balance: { lt: "0" } })).data.map((r) => r.id)).toEqual([max.id])
      expect((await only({ balance: decimal })).data.map((r) => r.id)).toEqual([c.id])
      expect((await only({ score: { gte: 0.1 } })).data.map((r) => r.id)).toEqual([c.id])
      // out of range or inexact: refused, never rounded
      const e = await fail(422, "create", [
        "Customer",
        {
          email: `x_${uid()}@example.com`,
          name: "x",
          balance: "1.0000000000000000000000000000001",
          score: 1,
          visits: "9223372036854775808"
        }
      ])
      expect([...fieldNames(e)].sort()).toEqual(["balance", "visits"])
      await fail(422, "create", ["Customer", { email: `x_${uid()}@example.com`, name: "x", balance: 1, score: "1", visits: 1.5 }])
      if (dialect === "sqlite") {
        // SQLite stores a DECIMAL that is not an integer as a REAL: 15 significant digits
        const e2 = await fail(422, "create", [
          "Customer",
          { email: `x_${uid()}@example.com`, name: "x", balance: "1234567890.1234567", score: 1 }
        ])
        expect(JSON.stringify(e2.details)).toContain("at most 15 significant digits")
        const whole = await customer({ balance: "9007199254740993" })
        expect((await ok("read", ["Customer", whole.id])).balance).toBe("9007199254740993")
      }
    })

    it.runIf(dialect === "postgresql")(
      "stores String[] as TEXT[]: written, read, filtered with has, hasEvery, hasSome, isEmpty",
      async () => {
        const a = await customer({ tags: ["vip", "eu", 'quote " and \\ back', "NULL", "{x,y}"] })
        const b = await customer({ tags: ["eu"] })
        const c = await customer()
        expect(a.tags).toEqual(["vip", "eu", 'quote " and \\ back', "NULL", "{x,y}"])
        const stored = await raw!.query(`SELECT tags FROM "Customer" WHERE id = ${a.id as number}`)
        expect(stored[0]?.tags).toEqual(a.tags)
        const ids = async (tags: Rec) =>
          (
            await ok<{ data: ReadonlyArray<Rec> }>("list", [
              "Customer",
              { filter: { id: { in: [a.id, b.id, c.id] }, tags }, sort: { id: "asc" } }
            ])
          ).data.map((r) => r.id)
        expect(await ids({ has: "eu" })).toEqual([a.id, b.id])
        expect(await ids({ hasEvery: ["eu", "vip"] })).toEqual([a.id])
        expect(await ids({ hasSome: ["vip", "nope"] })).toEqual([a.id])
        expect(await ids({ isEmpty: true })).toEqual([c.id])
        expect(await ids({ has: "{x,y}" })).toEqual([a.id])
        expect((await ok("update", ["Customer", b.id, { tags: [] }])).tags).toEqual([])
        await fail(422, "create", ["Customer", { email: `x_${uid()}@example.com`, name: "x", balance: "1", score: 1, tags: ["ok", 5] }])
        await fail(422, "list", ["Customer", { filter: { tags: "eu" } }])
        await fail(422, "list", ["Customer", { sort: { tags: "asc" } }])
      }
    )

    it("checks enum values; matches email without regard to case with mode insensitive", async () => {
      const s = uid()
      const c = await customer({ email: `Mixed_${s}@Example.com`, status: "SUSPENDED" })
      expect(c.status).toBe("SUSPENDED")
      if (dialect !== "sqlite")
        await fail(422, "create", ["Customer", { email: `x_${s}@example.com`, name: "x", balance: "1", score: 1, status: "GONE" }])
      const found = await ok<{ data: ReadonlyArray<Rec> }>("list", [
        "Customer",
        { filter: { email: { eq: `mixed_${s}@example.COM`, mode: "insensitive" } } }
      ])
      expect(found.data.map((r) => r.id)).toEqual([c.id])
      expect((await ok<Rec | null>("findByField", ["Customer", "email", c.email]))?.id).toBe(c.id)
    })

    it("follows @relation(fields, references) with include; @@unique and the foreign key are enforced", async () => {
      const c = await customer()
      const o = await ok("create", ["Order", { customerId: c.id, number: 1, region: "eu", total: "99.90", note: "first" }])
      expect(o).toMatchObject({ customerId: c.id, number: 1, total: "99.9", note: "first" })
      expect(typeof o.id).toBe("number")
      expectIsoUtc(o.placedAt)
      const listed = await ok<{ data: ReadonlyArray<Rec> }>("list", ["Order", { filter: { customerId: c.id }, include: ["customer"] }])
      expect(listed.data).toHaveLength(1)
      expect(listed.data[0]!.customer).toEqual(await ok("read", ["Customer", c.id]))
      // the compound unique key (customerId, number), by its Prisma name orders_customerId_number_key
      const dup = await fail(409, "create", ["Order", { customerId: c.id, number: 1, region: "us", total: "1" }])
      expect([...(dup.details?.fields as ReadonlyArray<string>)].sort()).toEqual(["customerId", "number"])
      expect((await ok<Rec | null>("findFirst", ["Order", { customerId: c.id, number: 1 }]))?.id).toBe(o.id)
      await fail(409, "create", ["Customer", { email: c.email, name: "again", balance: "1", score: 1 }])
      // a customer that does not exist; a customer that still has orders (ON DELETE RESTRICT)
      const missing = await fail(422, "create", ["Order", { customerId: 999999, number: 1, region: "eu", total: "1" }])
      expect(fieldNames(missing)).toEqual(["customerId"])
      await fail(409, "delete", ["Customer", c.id])
      expect(await ok("delete", ["Order", o.id])).toBe(true)
      expect(await ok("delete", ["Customer", c.id])).toBe(true)
      await fail(404, "read", ["Customer", c.id])
    })

    it("gives cuid ids to a String @id @default(cuid()) and reads ids Prisma made", async () => {
      const k = await ok("create", ["Coupon", { code: `K${uid()}`, percent: 10 }])
      expect(k.id).toMatch(CUID)
      expect(await ok("read", ["Coupon", k.id])).toEqual(k)
      await raw!.exec(
        `INSERT INTO ${q}Coupon${q} (${q}id${q}, ${q}code${q}, ${q}percent${q}) VALUES ('clrprisma0000a1b2c3d4e5f6', 'FROM-PRISMA', 5)`
      )
      expect(await ok("read", ["Coupon", "clrprisma0000a1b2c3d4e5f6"])).toEqual({
        id: "clrprisma0000a1b2c3d4e5f6",
        code: "FROM-PRISMA",
        percent: 5
      })
      expect(await ok("update", ["Coupon", "clrprisma0000a1b2c3d4e5f6", { percent: 7 }])).toMatchObject({ percent: 7 })
    })

    it("reads rows a Prisma client wrote, and writes date-times as Prisma stores them", async () => {
      // Prisma writes DateTime as UTC: TIMESTAMP(3) / DATETIME(3) text, integer milliseconds on SQLite.
      const at = dialect === "sqlite" ? "1705314600123" : "'2024-01-15 10:30:00.123'"
      await raw!.exec(
        `INSERT INTO ${q}Customer${q} (${q}email${q}, ${q}name${q}, ${q}balance${q}, ${q}visits${q}, ${q}score${q}, ${q}ref${q}, ${q}code${q}, ${q}createdAt${q}, ${q}updatedAt${q}) ` +
          `VALUES ('prisma@example.com', 'From Prisma', 42.5, 9007199254740993, 2.5, '6ec0bd7f-11c0-43da-975e-2a8ad9ebae0b', 'clrprisma0001a1b2c3d4e5f6', ${at}, ${at})`
      )
      const row = await ok<Rec | null>("findByField", ["Customer", "email", "prisma@example.com"])
      expect(row).toMatchObject({
        name: "From Prisma",
        balance: "42.5",
        visits: "9007199254740993",
        score: 2.5,
        createdAt: "2024-01-15T10:30:00.123Z",
        updatedAt: "2024-01-15T10:30:00.123Z",
        status: "ACTIVE"
      })
      const since = await ok<{ total: number }>("list", [
        "Customer",
        { filter: { email: "prisma@example.com", createdAt: { gte: "2024-01-15T10:30:00.123Z", lt: "2024-01-15T10:30:00.124Z" } } }
      ])
      expect(since.total).toBe(1)

      const mine = await customer()
      const stored = await raw!.query(
        dialect === "sqlite"
          ? `SELECT typeof("createdAt") AS kind, "createdAt" AS v FROM "Customer" WHERE id = ${mine.id as number}`
          : dialect === "postgresql"
            ? `SELECT 'text' AS kind, to_char("createdAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS v FROM "Customer" WHERE id = ${mine.id as number}`
            : `SELECT 'text' AS kind, DATE_FORMAT(createdAt, '%Y-%m-%dT%H:%i:%s.%fZ') AS v FROM Customer WHERE id = ${mine.id as number}`
      )
      if (dialect === "sqlite") expect(stored[0]).toEqual({ kind: "integer", v: Date.parse(mine.createdAt as string) })
      else expect(String(stored[0]?.v).replace(/(\.\d{3})\d*Z$/, "$1Z")).toBe(mine.createdAt)
    })

    it("creates many, upserts and runs transactions on numbered ids", async () => {
      const c = await customer()
      const orders = [1, 2, 3].map((number) => ({ customerId: c.id, number, region: "eu", total: `${number}.25` }))
      expect(await ok<number>("createMany", ["Order", orders])).toBe(3)
      const listed = await ok<{ data: ReadonlyArray<Rec> }>("list", ["Order", { filter: { customerId: c.id }, sort: { number: "asc" } }])
      expect(listed.data.map((o) => [typeof o.id, o.number, o.total])).toEqual([
        ["number", 1, "1.25"],
        ["number", 2, "2.25"],
        ["number", 3, "3.25"]
      ])
      const email = `up_${uid()}@example.com`
      const created = await ok("upsert", ["Customer", "email", email, { name: "Up", balance: "1", score: 1 }, { name: "Up again" }])
      expect(typeof created.id).toBe("number")
      const updated = await ok("upsert", ["Customer", "email", email, { name: "Up", balance: "1", score: 1 }, { name: "Up again" }])
      expect(updated).toMatchObject({ id: created.id, name: "Up again" })
      const [k, o] = await ok<ReadonlyArray<Rec>>("transaction", [
        [
          { method: "create", params: ["Customer", { email: `tx_${uid()}@example.com`, name: "Tx", balance: "2", score: 2 }] },
          { method: "create", params: ["Order", { customerId: c.id, number: 4, region: "us", total: "4" }] }
        ]
      ])
      expect(typeof k!.id).toBe("number")
      expect(await ok("read", ["Order", o!.id])).toMatchObject({ number: 4, customerId: c.id })
      expect(await ok<number>("deleteMany", ["Order", { customerId: c.id }])).toBe(4)
    })

    it.runIf(dialect === "mysql")("bounds strings by Prisma's VARCHAR(191) on MySQL", async () => {
      const e = await fail(422, "create", ["Customer", { email: `x_${uid()}@example.com`, name: "n".repeat(192), balance: "1", score: 1 }])
      expect(JSON.stringify(e.details)).toContain("at most 191 characters")
      expect((await customer({ name: "n".repeat(191) })).name).toHaveLength(191)
    })

    it("created and altered nothing in the database", async () => {
      expect(await snapshot(raw!, dialect)).toEqual(before)
      expect(await raw!.tables()).toEqual(["Coupon", "Customer", "orders"])
    })
  })
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: the same schema.prisma, tables made by the daemon (auto_migrate)`, () => {
    let db: TestDatabase | undefined
    let raw: RawDb | undefined
    let daemon: InProcess | undefined
    let next = 0

    beforeAll(async () => {
      db = await createDatabase(dialect)
      raw = await rawDb(db)
      const file = writeConfig(daemonConfig(db, { entities: { prisma_schema: schemaOf(dialect) } }), tempDir("prisma-app-migrate"))
      daemon = await startInProcess(file)
    })
    afterAll(async () => {
      await daemon?.runtime.dispose()
      await raw?.close()
      await db?.drop()
    })

    const ok = async <T = Rec>(method: string, params: ReadonlyArray<unknown>): Promise<T> => {
      const a = JSON.parse(await daemon!.handle(JSON.stringify({ id: ++next, method, params, auth: serviceAuth }))) as Answer
      expect(a.error, `${method}: ${JSON.stringify(a.error)}`).toBeUndefined()
      return a.result as T
    }

    it("creates the tables with Prisma's names and column kinds, and serves them alike", async () => {
      // The model tables, and auto_migrate's record of what it applied (docs/entities.md, "Migrations").
      expect(await raw!.tables()).toEqual(["Coupon", "Customer", "dbal_migrations", "orders"])
      const big = "9223372036854775807"
      const decimal = dialect === "sqlite" ? "-1234.5678" : "-12345678901234567890.123456789012345678901234567891"
      const c = await ok("create", [
        "Customer",
        {
          email: `m_${uid()}@example.com`,
          name: "M",
          balance: decimal,
          visits: big,
          score: 0.5,
          ...(dialect === "postgresql" ? { tags: ["a"] } : {})
        }
      ])
      const d = await ok("create", ["Customer", { email: `m_${uid()}@example.com`, name: "N", balance: "0", score: 1 }])
      expect(typeof c.id).toBe("number")
      expect(d.id).toBe((c.id as number) + 1)
      expect(await ok("read", ["Customer", c.id])).toMatchObject({
        balance: decimal,
        visits: big,
        score: 0.5,
        code: expect.stringMatching(CUID)
      })
      expect((await ok<{ total: number }>("list", ["Customer", { filter: { visits: { gte: big } } }])).total).toBe(1)
      const o = await ok("create", ["Order", { customerId: c.id, number: 1, region: "eu", total: "5" }])
      const listed = await ok<{ data: ReadonlyArray<Rec> }>("list", ["Order", { filter: { id: o.id }, include: ["customer"] }])
      expect(listed.data[0]?.customer).toMatchObject({ id: c.id })
      if (dialect === "postgresql")
        expect((await ok<{ total: number }>("list", ["Customer", { filter: { tags: { has: "a" } } }])).total).toBe(1)
      if (dialect === "sqlite") {
        const kinds = await raw!.query(
          `SELECT typeof("createdAt") AS t, typeof("visits") AS v FROM "Customer" WHERE id = ${c.id as number}`
        )
        expect(kinds[0]).toEqual({ t: "integer", v: "integer" })
      }
    })
  })
}
