/**
 * Every method of the protocol (docs/protocol.md), through the real RpcHandler on a real database,
 * with identical expectations on SQLite, PostgreSQL and MySQL/MariaDB.
 */
import { describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { DIALECTS, expectIsoUtc, expectUuidV4, fieldNames, fixtures, type Rec, uid, useDaemon } from "./harness.js"

interface ListResult {
  readonly data: ReadonlyArray<Rec>
  readonly total: number
  readonly page: number
  readonly limit: number
  readonly hasMore: boolean
}

/** Waits (without sleeping) until the clock has passed the given ISO time, so a later write gets a later timestamp. */
const passMillisecond = (iso: unknown) => {
  const t = Date.parse(String(iso))
  while (Date.now() <= t) {
    /* at most a millisecond */
  }
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(dialect, () => {
    const h = useDaemon(dialect)
    const { ok, fail, count } = h
    const fx = fixtures(h)

    /** PageViews with a common title prefix, so a test sees only its own rows. */
    const pages = async (specs: ReadonlyArray<Rec>) => {
      const tag = `T${uid()}`
      const made: Array<Rec> = []
      for (const [i, s] of specs.entries()) made.push(await fx.page({ title: `${tag}-${i}`, ...s }))
      const list = (options: Rec = {}) =>
        ok<ListResult>("list", [
          "PageView",
          { ...options, filter: { AND: [{ title: { startsWith: `${tag}-` } }, (options.filter as Rec | undefined) ?? {}] } }
        ])
      return { tag, made, list }
    }

    it("getCapabilities names the configured adapter and dialect", async () => {
      const caps = await ok<Rec>("getCapabilities", [])
      expect(caps.adapter).toBe(dialect)
      expect(caps.dialect).toBe(dialect)
      expect(caps.methods).toEqual(
        expect.arrayContaining([
          "create",
          "read",
          "update",
          "delete",
          "list",
          "findFirst",
          "findByField",
          "upsert",
          "updateByField",
          "deleteByField",
          "createMany",
          "updateMany",
          "deleteMany",
          "count",
          "getCapabilities"
        ])
      )
      const features = caps.features as Rec
      for (const k of ["transactions", "joins", "fullTextSearch", "ttl", "jsonQueries", "aggregations", "relations"])
        expect(typeof features[k]).toBe("boolean")
      expect(caps.limits).toMatchObject({ defaultPageSize: 20, maxPageSize: 100 })
      await fail(400, "getCapabilities", ["extra"])
    })

    it("getSchema describes the entities this caller may use, never_expose fields unreadable", async () => {
      const caps = await ok<Rec>("getCapabilities", [])
      expect(caps.methods).toContain("getSchema")
      const schema = await ok<{ entities: ReadonlyArray<{ name: string; fields: ReadonlyArray<Rec>; relations: ReadonlyArray<Rec> }> }>(
        "getSchema",
        []
      )
      expect(schema.entities.map((e) => e.name)).toEqual(expect.arrayContaining(["User", "Credential", "PageView", "Session"]))
      const credential = schema.entities.find((e) => e.name === "Credential")!
      const hash = credential.fields.find((f) => f.name === "passwordHash")
      expect(hash === undefined || hash.readable === false).toBe(true)
      const user = schema.entities.find((e) => e.name === "User")!
      expect(user.fields.find((f) => f.name === "username")).toMatchObject({ type: "string", unique: true, readable: true })
      await fail(400, "getSchema", ["extra"])
    })

    it("create returns the record with a UUID v4 id, UTC timestamps and defaults", async () => {
      const s = uid()
      const u = await ok<Rec>("create", ["User", { username: `c_${s}`, email: `c_${s}@example.com` }])
      expect(Object.keys(u).sort()).toEqual(["createdAt", "email", "id", "role", "updatedAt", "username"])
      expectUuidV4(u.id)
      expectIsoUtc(u.createdAt)
      expectIsoUtc(u.updatedAt)
      expect(u).toMatchObject({ username: `c_${s}`, email: `c_${s}@example.com`, role: "user" })
      expect(Math.abs(Date.parse(String(u.createdAt)) - Date.now())).toBeLessThan(60_000)
      const again = await ok<Rec>("create", ["User", { username: `d_${s}`, email: `d_${s}@example.com` }])
      expect(again.id).not.toBe(u.id)
    })

    it("read returns the stored record; read of a missing or malformed id is 404", async () => {
      const u = await fx.user({ role: "admin" })
      expect(await ok("read", ["User", u.id])).toEqual(u)
      expect(await ok("read", ["User", String(u.id).toUpperCase()])).toEqual(u)
      await fail(404, "read", ["User", "00000000-0000-4000-8000-000000000000"])
      await fail(404, "read", ["User", "not-a-uuid"])
      await fail(404, "read", ["User", ""])
    })

    it("update changes the given fields, moves updatedAt and keeps createdAt", async () => {
      const u = await fx.user()
      passMillisecond(u.updatedAt)
      const s = uid()
      const v = await ok<Rec>("update", ["User", u.id, { email: `new_${s}@example.com`, role: "god" }])
      expect(v).toMatchObject({ id: u.id, username: u.username, email: `new_${s}@example.com`, role: "god", createdAt: u.createdAt })
      expectIsoUtc(v.updatedAt)
      expect(Date.parse(String(v.updatedAt))).toBeGreaterThan(Date.parse(String(u.updatedAt)))
      expect(await ok("read", ["User", u.id])).toEqual(v)
      await fail(404, "update", ["User", "00000000-0000-4000-8000-000000000000", { role: "admin" }])
      await fail(404, "update", ["User", "nope", { role: "admin" }])
      const e = await fail(422, "update", ["User", u.id, { createdAt: "2020-01-01T00:00:00Z" }])
      expect(fieldNames(e)).toContain("createdAt")
      await fail(422, "update", ["User", u.id, {}])
      expect(await ok("read", ["User", u.id])).toEqual(v)
    })

    it("delete returns true, then the record is gone (404 on read and on a second delete)", async () => {
      const u = await fx.user()
      expect(await ok("delete", ["User", u.id])).toBe(true)
      await fail(404, "read", ["User", u.id])
      await fail(404, "delete", ["User", u.id])
      await fail(404, "delete", ["User", "xyz"])
      expect(await count("User", { id: u.id })).toBe(0)
    })

    it("list filters with every operator", async () => {
      const { made, list } = await pages([
        { level: 1, description: "alpha" },
        { level: 2, description: null },
        { level: 3, description: "beta gamma" },
        { level: 4, isActive: false },
        { level: 5, description: "gamma" }
      ])
      const lv = async (filter: Rec) => (await list({ filter, sort: { level: "asc" } })).data.map((d) => d.level)
      expect(await lv({})).toEqual([1, 2, 3, 4, 5])
      expect(await lv({ level: 3 })).toEqual([3])
      expect(await lv({ level: { eq: 3 } })).toEqual([3])
      expect(await lv({ level: { ne: 3 } })).toEqual([1, 2, 4, 5])
      expect(await lv({ level: { gt: 3 } })).toEqual([4, 5])
      expect(await lv({ level: { gte: 3 } })).toEqual([3, 4, 5])
      expect(await lv({ level: { lt: 3 } })).toEqual([1, 2])
      expect(await lv({ level: { lte: 3 } })).toEqual([1, 2, 3])
      expect(await lv({ level: { gt: 1, lt: 5 } })).toEqual([2, 3, 4])
      expect(await lv({ level: { in: [1, 5, 9] } })).toEqual([1, 5])
      expect(await lv({ level: { in: [] } })).toEqual([])
      expect(await lv({ level: { notIn: [1, 5] } })).toEqual([2, 3, 4])
      expect(await lv({ level: { notIn: [] } })).toEqual([1, 2, 3, 4, 5])
      expect(await lv({ description: { contains: "gamma" } })).toEqual([3, 5])
      expect(await lv({ description: { startsWith: "gam" } })).toEqual([5])
      expect(await lv({ description: { endsWith: "ta gamma" } })).toEqual([3])
      expect(await lv({ description: { isNull: true } })).toEqual([2, 4])
      expect(await lv({ description: null })).toEqual([2, 4])
      expect(await lv({ description: { eq: null } })).toEqual([2, 4])
      expect(await lv({ description: { isNull: false } })).toEqual([1, 3, 5])
      expect(await lv({ description: { ne: null } })).toEqual([1, 3, 5])
      expect(await lv({ isActive: false })).toEqual([4])
      expect(await lv({ isActive: true })).toEqual([1, 2, 3, 5])
      expect(await lv({ slug: made[2]!.slug })).toEqual([3])
      expect(await lv({ id: { in: [made[0]!.id, made[4]!.id] } })).toEqual([1, 5])
      expect(await lv({ createdAt: { gte: made[0]!.createdAt } })).toEqual([1, 2, 3, 4, 5])
      expect(await lv({ createdAt: { lt: made[0]!.createdAt } })).toEqual([])
    })

    it("integer operands must fit the 32-bit columns (422 on every dialect, never a driver error)", async () => {
      const { list } = await pages([1, 3, 5].map((level) => ({ level })))
      const lv = async (filter: Rec) => (await list({ filter, sort: { level: "asc" } })).data.map((d) => d.level)
      expect(await lv({ level: 2 ** 31 - 1 })).toEqual([])
      expect(await lv({ level: { gt: -(2 ** 31) } })).toEqual([1, 3, 5])
      expect(await lv({ level: { lt: 2 ** 31 - 1, gt: 2 } })).toEqual([3, 5])
      const big = 2 ** 40
      for (const filter of [
        { level: big },
        { level: { ne: big } },
        { level: { gt: big } },
        { level: { gte: -big } },
        { level: { lt: Number.MAX_SAFE_INTEGER } },
        { level: { in: [big, 3] } },
        { level: { notIn: [big] } },
        { NOT: { level: { gt: 2 ** 31 } } },
        { OR: [{ level: 1 }, { level: -(2 ** 31) - 1 }] },
        { level: 2 ** 53 },
        { level: 1.5 }
      ]) {
        const e = await fail(422, "count", ["PageView", filter])
        expect(fieldNames(e)[0], JSON.stringify(filter)).toMatch(/^filter\..*level/)
      }
    })

    it("list combines conditions with AND, OR and NOT; an empty OR matches no rows", async () => {
      const { list } = await pages([1, 2, 3, 4, 5].map((level) => ({ level, isActive: level % 2 === 1 })))
      const lv = async (filter: Rec) => (await list({ filter, sort: { level: "asc" } })).data.map((d) => d.level)
      expect(await lv({ AND: [{ level: { gte: 2 } }, { isActive: true }] })).toEqual([3, 5])
      expect(await lv({ level: { gte: 2 }, isActive: true })).toEqual([3, 5])
      expect(await lv({ OR: [{ level: 1 }, { level: 4 }] })).toEqual([1, 4])
      expect(await lv({ OR: [{ level: 1 }, { AND: [{ isActive: false }, { level: { gt: 2 } }] }] })).toEqual([1, 4])
      expect(await lv({ NOT: { level: { in: [1, 2] } } })).toEqual([3, 4, 5])
      expect(await lv({ NOT: [{ level: 1 }, { isActive: true }] })).toEqual([2, 3, 4, 5])
      expect(await lv({ NOT: { OR: [{ level: 1 }, { level: 5 }] } })).toEqual([2, 3, 4])
      expect(await lv({ OR: [] })).toEqual([])
      expect((await list({ filter: { OR: [] } })).total).toBe(0)
      expect(await lv({ AND: [] })).toEqual([1, 2, 3, 4, 5])
      expect(await lv({ NOT: { OR: [] } })).toEqual([1, 2, 3, 4, 5])
    })

    it("list sorts asc/desc, by several keys, NULLs last in asc, strings by code point", async () => {
      const { list } = await pages([
        { level: 2, description: "b" },
        { level: 1, description: null },
        { level: 2, description: "a" },
        { level: 1, description: "c" },
        { level: 3, description: null }
      ])
      const pairs = async (sort: unknown) => (await list({ sort })).data.map((d) => `${String(d.level)}${String(d.description)}`)
      expect(await pairs({ level: "asc" }).then((p) => p.map((x) => x[0]))).toEqual(["1", "1", "2", "2", "3"])
      expect(await pairs({ level: "desc" }).then((p) => p.map((x) => x[0]))).toEqual(["3", "2", "2", "1", "1"])
      const asc = await pairs({ description: "asc" })
      expect(asc.slice(0, 3)).toEqual(["2a", "2b", "1c"])
      expect(asc.slice(3).sort()).toEqual(["1null", "3null"])
      expect((await pairs({ description: "desc" })).slice(0, 2).sort()).toEqual(["1null", "3null"])
      expect((await pairs({ description: "desc" })).slice(2)).toEqual(["1c", "2b", "2a"])
      expect(await pairs([{ level: "asc" }, { description: "asc" }])).toEqual(["1c", "1null", "2a", "2b", "3null"])
      expect(await pairs([{ level: "desc" }, { description: "desc" }])).toEqual(["3null", "2b", "2a", "1null", "1c"])
      expect(await pairs({ level: "asc", description: "desc" })).toEqual(["1null", "1c", "2b", "2a", "3null"])
      expect(await pairs([{ description: "asc" }, { level: "desc" }])).toEqual(["2a", "2b", "1c", "3null", "1null"])

      const cased = await pages([
        { description: "b" },
        { description: "A" },
        { description: "a" },
        { description: "B" },
        { description: "_" }
      ])
      expect((await cased.list({ sort: { description: "asc" } })).data.map((d) => d.description)).toEqual(["A", "B", "_", "a", "b"])
      expect((await cased.list({ sort: { description: "desc" } })).data.map((d) => d.description)).toEqual(["b", "a", "_", "B", "A"])
    })

    it("list pages with page/limit/hasMore/total; default limit 20; limit over 100 and page 0 are 422", async () => {
      const tag = `P${uid()}`
      const n = await ok<number>("createMany", [
        "PageView",
        Array.from({ length: 23 }, (_, i) => ({
          slug: `${tag.toLowerCase()}-${i}`,
          title: `${tag}-${String(i).padStart(2, "0")}`,
          level: 1,
          layout: {}
        }))
      ])
      expect(n).toBe(23)
      const filter = { title: { startsWith: `${tag}-` } }
      const first = await ok<ListResult>("list", ["PageView", { filter }])
      expect(first).toMatchObject({ total: 23, page: 1, limit: 20, hasMore: true })
      expect(first.data).toHaveLength(20)
      const second = await ok<ListResult>("list", ["PageView", { filter, page: 2 }])
      expect(second).toMatchObject({ total: 23, page: 2, limit: 20, hasMore: false })
      expect(second.data).toHaveLength(3)
      const seen = new Set([...first.data, ...second.data].map((d) => d.id))
      expect(seen.size).toBe(23)

      const sort = { title: "asc" }
      const p = async (page: number) => ok<ListResult>("list", ["PageView", { filter, sort, page, limit: 10 }])
      const [a, b, c, d] = await Promise.all([p(1), p(2), p(3), p(4)])
      expect([a, b, c, d].map((x) => [x.data.length, x.hasMore, x.total, x.page, x.limit])).toEqual([
        [10, true, 23, 1, 10],
        [10, true, 23, 2, 10],
        [3, false, 23, 3, 10],
        [0, false, 23, 4, 10]
      ])
      expect([...a.data, ...b.data, ...c.data].map((x) => x.title)).toEqual(
        Array.from({ length: 23 }, (_, i) => `${tag}-${String(i).padStart(2, "0")}`)
      )
      const exact = await ok<ListResult>("list", ["PageView", { filter, limit: 23 }])
      expect(exact.hasMore).toBe(false)
      expect((await ok<ListResult>("list", ["PageView", { filter, limit: 100 }])).data).toHaveLength(23)

      expect(fieldNames(await fail(422, "list", ["PageView", { filter, limit: 101 }]))).toEqual(["limit"])
      expect(fieldNames(await fail(422, "list", ["PageView", { filter, page: 0 }]))).toEqual(["page"])
      await fail(422, "list", ["PageView", { filter, limit: 0 }])
      await fail(422, "list", ["PageView", { filter, page: -1 }])
      await fail(422, "list", ["PageView", { filter, page: 1.5 }])
      await fail(422, "list", ["PageView", { filter, limit: "10" }])
      await fail(422, "list", ["PageView", { filter, offset: 3 }])
    })

    it("findFirst returns the first matching record or null", async () => {
      const { tag, made } = await pages([{ level: 2 }, { level: 2 }, { level: 3 }])
      const first = await ok<Rec>("findFirst", ["PageView", { title: { startsWith: `${tag}-` }, level: 2 }])
      expect([made[0]!.id, made[1]!.id]).toContain(first.id)
      expect(await ok("findFirst", ["PageView", { title: { startsWith: `${tag}-` }, level: 3 }])).toEqual(made[2])
      expect(await ok("findFirst", ["PageView", { title: { startsWith: `${tag}-` }, level: 5 }])).toBeNull()
      expect(await ok("findFirst", ["PageView", { OR: [] }])).toBeNull()
      expect(await ok("findFirst", ["PageView"])).not.toBeNull()
    })

    it("findByField finds by a unique field, null when none, 422 for a non-unique field", async () => {
      const u = await fx.user()
      expect(await ok("findByField", ["User", "username", u.username])).toEqual(u)
      expect(await ok("findByField", ["User", "email", u.email])).toEqual(u)
      expect(await ok("findByField", ["User", "id", u.id])).toEqual(u)
      expect(await ok("findByField", ["User", "username", `none_${uid()}`])).toBeNull()
      expect(await ok("findByField", ["User", "id", "00000000-0000-4000-8000-000000000000"])).toBeNull()
      expect(await ok("findByField", ["User", "id", "not-a-uuid"])).toBeNull()
      expect(fieldNames(await fail(422, "findByField", ["User", "role", "user"]))).toEqual(["field"])
      await fail(422, "findByField", ["PageView", "title", "x"])
      await fail(422, "findByField", ["User", "nosuch", "x"])
      await fail(422, "findByField", ["User", "username", 42])
      await fail(400, "findByField", ["User", "username"])
    })

    it("upsert creates, then updates the same record", async () => {
      const s = uid()
      const created = await ok<Rec>("upsert", ["User", "username", `up_${s}`, { email: `up_${s}@example.com` }, { role: "admin" }])
      expect(created).toMatchObject({ username: `up_${s}`, email: `up_${s}@example.com`, role: "user" })
      expectUuidV4(created.id)
      passMillisecond(created.updatedAt)
      const updated = await ok<Rec>("upsert", ["User", "username", `up_${s}`, { email: `other_${s}@example.com` }, { role: "admin" }])
      expect(updated).toMatchObject({
        id: created.id,
        username: `up_${s}`,
        email: `up_${s}@example.com`,
        role: "admin",
        createdAt: created.createdAt
      })
      expect(Date.parse(String(updated.updatedAt))).toBeGreaterThan(Date.parse(String(created.updatedAt)))
      expect(await count("User", { username: `up_${s}` })).toBe(1)
      await fail(422, "upsert", ["User", "role", "user", {}, { role: "admin" }])
      await fail(422, "upsert", [
        "User",
        "username",
        `up2_${s}`,
        { username: `other_${s}`, email: `x_${s}@example.com` },
        { role: "admin" }
      ])
      await fail(400, "upsert", ["User", "username", `up_${s}`, {}])
      expect(await count("User", { username: { in: [`up2_${s}`, `other_${s}`] } })).toBe(0)
    })

    it("updateByField updates the record with that unique value; 404 when none", async () => {
      const p = await fx.page()
      const v = await ok<Rec>("updateByField", ["PageView", "slug", p.slug, { title: "Renamed", level: 4 }])
      expect(v).toMatchObject({ id: p.id, slug: p.slug, title: "Renamed", level: 4 })
      expect(await ok("read", ["PageView", p.id])).toEqual(v)
      await fail(404, "updateByField", ["PageView", "slug", `none-${uid()}`, { title: "x" }])
      await fail(422, "updateByField", ["PageView", "title", "Renamed", { title: "x" }])
    })

    it("deleteByField deletes the record with that unique value; 404 when none", async () => {
      const p = await fx.page()
      expect(await ok("deleteByField", ["PageView", "slug", p.slug])).toBe(true)
      expect(await count("PageView", { id: p.id })).toBe(0)
      await fail(404, "deleteByField", ["PageView", "slug", p.slug])
      await fail(404, "deleteByField", ["PageView", "id", "not-a-uuid"])
      await fail(422, "deleteByField", ["PageView", "level", 1])
    })

    it("createMany returns the count and inserts every record", async () => {
      const tag = uid()
      const n = await ok<number>("createMany", [
        "User",
        [0, 1, 2].map((i) => ({ username: `m${i}_${tag}`, email: `m${i}_${tag}@example.com` }))
      ])
      expect(n).toBe(3)
      const rows = await ok<ListResult>("list", ["User", { filter: { username: { endsWith: `_${tag}` } }, sort: { username: "asc" } }])
      expect(rows.data.map((r) => r.username)).toEqual([`m0_${tag}`, `m1_${tag}`, `m2_${tag}`])
      for (const r of rows.data) {
        expectUuidV4(r.id)
        expectIsoUtc(r.createdAt)
        expect(r.role).toBe("user")
      }
      expect(await ok("createMany", ["User", []])).toBe(0)
    })

    it("createMany binds each batch's own values: batches of one size share a statement text, not values", async () => {
      const tag = uid()
      const batch = (b: number) =>
        [0, 1, 2].map((i) => ({
          slug: `cmv-${tag}-${b}-${i}`,
          title: `CMV${tag}`,
          level: 1 + ((b + i) % 5),
          layout: { b, i, blocks: [{ n: i }] },
          ...(i === 1 ? { description: `d ${b}` } : {}),
          ...(i === 2 ? { isActive: false } : {})
        }))
      for (const b of [0, 1]) expect(await ok<number>("createMany", ["PageView", batch(b)])).toBe(3)
      const rows = await ok<ListResult>("list", ["PageView", { filter: { title: `CMV${tag}` }, sort: { slug: "asc" } }])
      expect(rows.data.map((r) => r.slug)).toEqual([0, 1].flatMap((b) => batch(b).map((r) => r.slug)))
      for (const [k, r] of rows.data.entries()) {
        const sent = batch(Math.floor(k / 3))[k % 3]!
        expect(r).toMatchObject({
          title: sent.title,
          level: sent.level,
          layout: sent.layout,
          description: sent.description ?? null,
          isActive: sent.isActive ?? true
        })
        expectUuidV4(r.id)
        expectIsoUtc(r.createdAt)
        expect(r.updatedAt).toBe(r.createdAt)
      }
      expect(new Set(rows.data.map((r) => r.id)).size).toBe(6)
    })

    it("createMany is all or nothing: a duplicate, a bad reference or an invalid item writes no row", async () => {
      const tag = uid()
      const item = (i: number, over: Rec = {}) => ({ slug: `cm-${tag}-${i}`, title: `CM${tag}`, level: 1, layout: {}, ...over })
      const mine = () => count("PageView", { title: `CM${tag}` })

      // duplicate inside the batch
      let e = await fail(409, "createMany", ["PageView", [item(0), item(1), item(2, { slug: `cm-${tag}-0` })]])
      expect(e.details?.fields).toEqual(["slug"])
      expect(await mine()).toBe(0)

      // duplicate of an existing row
      const existing = await fx.page()
      e = await fail(409, "createMany", ["PageView", [item(0), item(1), item(2, { slug: existing.slug })]])
      expect(e.details?.fields).toEqual(["slug"])
      expect(await mine()).toBe(0)

      // a validation error in the third item names it
      e = await fail(422, "createMany", ["PageView", [item(0), item(1), item(2, { level: 9 })]])
      expect(fieldNames(e)).toEqual(["data[2].level"])
      e = await fail(422, "createMany", ["PageView", [item(0), item(1), { slug: `cm-${tag}-2`, level: 1, layout: {} }]])
      expect(fieldNames(e)).toEqual(["data[2].title"])
      expect(await mine()).toBe(0)

      // a reference to a missing row
      const page = await fx.page()
      const comp = (i: number, pageId: unknown) => ({ pageId, componentType: `CM${tag}`, order: i, props: {} })
      e = await fail(422, "createMany", [
        "ComponentHierarchy",
        [comp(0, page.id), comp(1, "00000000-0000-4000-8000-000000000000"), comp(2, page.id)]
      ])
      expect(fieldNames(e)).toEqual(["data[1].pageId"])
      expect(await count("ComponentHierarchy", { componentType: `CM${tag}` })).toBe(0)

      // and the good batch goes in whole
      expect(await ok("createMany", ["PageView", [item(0), item(1), item(2)]])).toBe(3)
      expect(await mine()).toBe(3)
      await fail(400, "createMany", ["PageView", item(0)])
    })

    it("createMany is atomic across INSERT chunks and refuses more than max_batch_size records", async () => {
      const tag = uid()
      const item = (i: number) => ({ slug: `big-${tag}-${i}`, title: `BIG${tag}`, level: 1 + (i % 5), layout: { i } })
      const batch = Array.from({ length: 450 }, (_, i) => item(i))
      batch[440] = item(3)
      const e = await fail(409, "createMany", ["PageView", batch])
      expect(e.details?.fields).toEqual(["slug"])
      expect(await count("PageView", { title: `BIG${tag}` })).toBe(0)
      batch[440] = item(440)
      expect(await ok("createMany", ["PageView", batch])).toBe(450)
      expect(await count("PageView", { title: `BIG${tag}` })).toBe(450)
      expect(await count("PageView", { title: `BIG${tag}`, level: 5 })).toBe(90)
      const tooMany = Array.from({ length: 1001 }, (_, i) => item(1000 + i))
      expect(fieldNames(await fail(422, "createMany", ["PageView", tooMany]))).toEqual(["data"])
      expect(await count("PageView", { title: `BIG${tag}` })).toBe(450)
    })

    it("concurrent requests: creates get distinct ids, concurrent upserts of one value make one record", async () => {
      const tag = uid()
      const made = await Promise.all(Array.from({ length: 20 }, (_, i) => fx.page({ title: `CC${tag}`, level: 1 + (i % 5) })))
      expect(new Set(made.map((m) => m.id)).size).toBe(20)
      expect(await count("PageView", { title: `CC${tag}` })).toBe(20)
      const answers = await Promise.all(
        Array.from({ length: 8 }, () =>
          h.call("upsert", ["User", "username", `cu_${tag}`, { email: `cu_${tag}@example.com` }, { role: "admin" }])
        )
      )
      for (const a of answers) expect(a.error, JSON.stringify(a.error)).toBeUndefined()
      expect(new Set(answers.map((a) => (a.result as Rec).id)).size).toBe(1)
      expect(await count("User", { username: `cu_${tag}` })).toBe(1)
    })

    it("a failing batch rolls back only itself while other requests write", async () => {
      const tag = uid()
      const existing = await fx.page()
      const item = (i: number, slug = `iso-${tag}-${i}`) => ({ slug, title: `ISO${tag}`, level: 1, layout: {} })
      const failing = [...Array.from({ length: 300 }, (_, i) => item(i)), item(300, String(existing.slug))]
      const [batch, ...singles] = await Promise.all([
        h.call("createMany", ["PageView", failing]),
        ...Array.from({ length: 10 }, (_, i) => h.call("create", ["PageView", item(1000 + i)]))
      ])
      expect(batch!.error?.code).toBe(409)
      for (const a of singles) expect(a.error, JSON.stringify(a.error)).toBeUndefined()
      expect(await count("PageView", { title: `ISO${tag}` })).toBe(10)
      expect(await count("PageView", { title: `ISO${tag}`, slug: { in: Array.from({ length: 300 }, (_, i) => `iso-${tag}-${i}`) } })).toBe(
        0
      )
    })

    it("updateMany moves updatedAt and keeps createdAt; ids match in any letter case", async () => {
      const { tag, made } = await pages([{ level: 1 }, { level: 1 }])
      passMillisecond(made[1]!.updatedAt)
      expect(await ok("updateMany", ["PageView", { title: { startsWith: `${tag}-` } }, { level: 2 }])).toBe(2)
      for (const m of made) {
        const now = await ok<Rec>("read", ["PageView", String(m.id).toUpperCase()])
        expect(now).toMatchObject({ id: m.id, level: 2, createdAt: m.createdAt })
        expect(Date.parse(String(now.updatedAt))).toBeGreaterThan(Date.parse(String(m.updatedAt)))
      }
      expect(await count("PageView", { id: String(made[0]!.id).toUpperCase() })).toBe(1)
      expect(await ok("findByField", ["PageView", "id", String(made[0]!.id).toUpperCase()])).toMatchObject({ id: made[0]!.id })
      const comp = await ok<Rec>("create", ["ComponentHierarchy", { pageId: String(made[0]!.id).toUpperCase(), componentType: "x" }])
      expect(comp.pageId).toBe(made[0]!.id)
    })

    it("fields named by reserved words (order, trigger) filter and sort; Session works with its datetimes", async () => {
      const page = await fx.page()
      for (const order of [3, 1, 2]) await ok("create", ["ComponentHierarchy", { pageId: page.id, componentType: "Item", order }])
      const rows = await ok<ListResult>("list", [
        "ComponentHierarchy",
        { filter: { pageId: page.id, order: { gte: 2 } }, sort: { order: "desc" } }
      ])
      expect(rows.data.map((r) => r.order)).toEqual([3, 2])
      const u = await fx.user()
      const w = await fx.workflow(String(u.id), { trigger: "webhook" })
      expect(await ok("findFirst", ["Workflow", { trigger: "webhook", id: w.id }])).toEqual(w)
      expect((await ok<ListResult>("list", ["Workflow", { filter: { createdBy: u.id }, sort: { trigger: "asc" } }])).total).toBe(1)
      const token = `tok-${uid()}`
      const session = await ok<Rec>("create", ["Session", { userId: u.id, token, expiresAt: "2099-01-01T00:00:00Z" }])
      expect(session).toMatchObject({ userId: u.id, expiresAt: "2099-01-01T00:00:00.000Z" })
      expectIsoUtc(session.lastActivity)
      expect(await count("Session", { userId: u.id, expiresAt: { gt: "2098-12-31T23:59:59Z" } })).toBe(1)
      expect((await fail(409, "create", ["Session", { userId: u.id, token, expiresAt: "2099-01-01T00:00:00Z" }])).details?.fields).toEqual([
        "token"
      ])
      // deleting the user cascades to the session
      expect(await ok("delete", ["Workflow", w.id])).toBe(true)
      expect(await ok("delete", ["User", u.id])).toBe(true)
      expect(await count("Session", { userId: u.id })).toBe(0)
    })

    it("updateMany and deleteMany return numbers and need a real filter", async () => {
      const { tag, list } = await pages([1, 2, 3, 4].map((level) => ({ level })))
      const mine = { title: { startsWith: `${tag}-` } }
      expect(await ok("updateMany", ["PageView", { ...mine, level: { lte: 2 } }, { isActive: false, description: "bulk" }])).toBe(2)
      const rows = (await list({ sort: { level: "asc" } })).data
      expect(rows.map((r) => [r.level, r.isActive, r.description])).toEqual([
        [1, false, "bulk"],
        [2, false, "bulk"],
        [3, true, null],
        [4, true, null]
      ])
      expect(await ok("updateMany", ["PageView", { ...mine, level: 5 }, { isActive: false }])).toBe(0)

      for (const empty of [{}, { AND: [] }, { OR: [] }, { NOT: { AND: [] } }]) {
        expect(fieldNames(await fail(422, "updateMany", ["PageView", empty, { isActive: false }]))).toEqual(["filter"])
        expect(fieldNames(await fail(422, "deleteMany", ["PageView", empty]))).toEqual(["filter"])
      }
      await fail(422, "updateMany", ["PageView", null, { isActive: false }])
      await fail(400, "deleteMany", ["PageView"])
      const e = await fail(422, "updateMany", ["PageView", mine, { slug: "same-slug" }])
      expect(fieldNames(e)).toEqual(["slug"])
      expect(await count("PageView", { ...mine, isActive: true })).toBe(2)

      expect(await ok("deleteMany", ["PageView", { ...mine, isActive: false }])).toBe(2)
      expect(await ok("deleteMany", ["PageView", { ...mine, isActive: false }])).toBe(0)
      expect(await count("PageView", mine)).toBe(2)
      expect(await ok("deleteMany", ["PageView", mine])).toBe(2)
      expect(await count("PageView", mine)).toBe(0)
    })

    it("count counts all rows or the matching ones", async () => {
      const { tag } = await pages([{ level: 1 }, { level: 1 }, { level: 2 }])
      const all = await count("PageView")
      expect(all).toBeGreaterThanOrEqual(3)
      expect(await count("PageView", { title: { startsWith: `${tag}-` } })).toBe(3)
      expect(await count("PageView", { title: { startsWith: `${tag}-` }, level: 1 })).toBe(2)
      expect(await count("PageView", { OR: [] })).toBe(0)
      expect(await ok("count", ["PageView", {}])).toBe(all)
      expect(typeof all).toBe("number")
    })
  })
}
