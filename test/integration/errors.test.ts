/**
 * Error answers on a real database: codes, the fields named in details, nothing of SQL or the
 * driver leaking out, and nothing half-written after a failed write. Identical on every dialect.
 */
import { describe, expect, it } from "vitest"
import { serviceAuth, skipDialect } from "../support/services.js"
import { DIALECTS, expectNoLeak, fieldNames, fieldsOf, fixtures, type Rec, uid, useDaemon } from "./harness.js"

const MISSING = "00000000-0000-4000-8000-000000000000"

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(dialect, () => {
    const h = useDaemon(dialect)
    const { ok, fail, count, call, raw } = h
    const fx = fixtures(h)

    it("404 for a missing id and for a non-UUID id on read, update and delete", async () => {
      for (const id of [MISSING, "123", "not-a-uuid", "' OR '1'='1", "00000000-0000-4000-8000-00000000000g"]) {
        expect((await fail(404, "read", ["PageView", id])).details).toEqual({ entity: "PageView" })
        await fail(404, "update", ["PageView", id, { title: "x" }])
        await fail(404, "delete", ["PageView", id])
      }
    })

    it("409 on a unique violation names the field, and nothing is written", async () => {
      const u = await fx.user()
      const s = uid()
      let e = await fail(409, "create", ["User", { username: u.username, email: `other_${s}@example.com` }])
      expect(e.details).toMatchObject({ entity: "User", fields: ["username"] })
      e = await fail(409, "create", ["User", { username: `other_${s}`, email: u.email }])
      expect(e.details).toMatchObject({ entity: "User", fields: ["email"] })
      expect(await count("User", { OR: [{ username: `other_${s}` }, { email: `other_${s}@example.com` }] })).toBe(0)

      // update into a taken value
      const v = await fx.user()
      e = await fail(409, "update", ["User", v.id, { email: u.email }])
      expect(e.details?.fields).toEqual(["email"])
      expect(await ok("read", ["User", v.id])).toEqual(v)
      e = await fail(409, "updateByField", ["User", "username", v.username, { username: u.username }])
      expect(e.details?.fields).toEqual(["username"])
      expect(await ok("read", ["User", v.id])).toEqual(v)

      const p = await fx.page()
      e = await fail(409, "create", ["PageView", { slug: p.slug, title: "dup", level: 1, layout: {} }])
      expect(e.details).toMatchObject({ entity: "PageView", fields: ["slug"] })
      expect(await count("PageView", { slug: p.slug })).toBe(1)
    })

    it("409 on Package name, and on the name+version pair", async () => {
      const s = uid()
      const pkg = { name: `pkg-${s}`, version: "1.0.0", author: "me", manifest: { deps: [] } }
      await ok("create", ["Package", pkg])
      const same = await fail(409, "create", ["Package", pkg])
      expect(same.details?.entity).toBe("Package")
      expect(fieldNames(same)).toContain("name")
      const otherVersion = await fail(409, "create", ["Package", { ...pkg, version: "2.0.0" }])
      expect(otherVersion.details?.fields).toEqual(["name"])
      expect(await count("Package", { name: pkg.name })).toBe(1)
      // the same version under another name is fine
      await ok("create", ["Package", { ...pkg, name: `pkg2-${s}` }])
      // a duplicate (name, version) pair is reported as the narrowest unique index it violates,
      // the same on every dialect (SQLite itself names the pair, the others the name)
      expect(same.details?.fields).toEqual(["name"])
    })

    it("a reference to a missing row is 422 naming the field; nothing is written", async () => {
      const tag = `fk${uid()}`
      let e = await fail(422, "create", ["ComponentHierarchy", { pageId: MISSING, componentType: tag, props: {} }])
      expect(fieldNames(e)).toEqual(["pageId"])
      const page = await fx.page()
      e = await fail(422, "create", ["ComponentHierarchy", { pageId: page.id, parentId: MISSING, componentType: tag, props: {} }])
      expect(fieldNames(e)).toEqual(["parentId"])
      e = await fail(422, "create", ["Workflow", { name: tag, trigger: "manual", triggerConfig: {}, steps: [], createdBy: MISSING }])
      expect(fieldNames(e)).toEqual(["createdBy"])
      e = await fail(422, "create", ["Credential", { username: `nobody_${tag}`, passwordHash: "h" }])
      expect(fieldNames(e)).toEqual(["username"])
      expect(await count("ComponentHierarchy", { componentType: tag })).toBe(0)
      expect(await count("Workflow", { name: tag })).toBe(0)

      // update to a missing reference
      const c = await ok<Rec>("create", ["ComponentHierarchy", { pageId: page.id, componentType: tag, props: {} }])
      e = await fail(422, "update", ["ComponentHierarchy", c.id, { pageId: MISSING }])
      expect(fieldNames(e)).toEqual(["pageId"])
      e = await fail(422, "updateMany", ["ComponentHierarchy", { componentType: tag }, { parentId: MISSING }])
      expect(fieldNames(e)).toEqual(["parentId"])
      expect(await ok("read", ["ComponentHierarchy", c.id])).toEqual(c)
      // a malformed reference is a validation error before the database
      e = await fail(422, "create", ["ComponentHierarchy", { pageId: "nope", componentType: tag, props: {} }])
      expect(fieldNames(e)).toEqual(["pageId"])
    })

    it("deleting a referenced User (no cascade) is 409 and deletes nothing", async () => {
      const u = await fx.user()
      const w = await fx.workflow(String(u.id))
      let e = await fail(409, "delete", ["User", u.id])
      expect(e.details?.entity).toBe("User")
      expect(await ok("read", ["User", u.id])).toEqual(u)
      expect(await ok("read", ["Workflow", w.id])).toEqual(w)
      e = await fail(409, "deleteByField", ["User", "username", u.username])
      e = await fail(409, "deleteMany", ["User", { id: u.id }])
      expect(await count("User", { id: u.id })).toBe(1)
      // once the workflow is gone the user can go
      expect(await ok("delete", ["Workflow", w.id])).toBe(true)
      expect(await ok("delete", ["User", u.id])).toBe(true)
      expectNoLeak(e)
    })

    it("deleteMany that hits a referenced row is 409 and deletes none of the batch", async () => {
      const tag = uid()
      const free = await fx.user({ email: `free_${tag}@example.com` })
      const held = await fx.user({ email: `held_${tag}@example.com` })
      await fx.workflow(String(held.id))
      await fail(409, "deleteMany", ["User", { email: { endsWith: `_${tag}@example.com` } }])
      expect(await count("User", { id: { in: [free.id, held.id] } })).toBe(2)
    })

    it("cascade: deleting a PageView deletes its ComponentHierarchy rows (and children of children)", async () => {
      const tag = `cas${uid()}`
      const page = await fx.page()
      const other = await fx.page()
      const root = await ok<Rec>("create", ["ComponentHierarchy", { pageId: page.id, componentType: tag, order: 0, props: {} }])
      const child = await ok<Rec>("create", [
        "ComponentHierarchy",
        { pageId: page.id, parentId: root.id, componentType: tag, order: 1, props: {} }
      ])
      await ok("create", ["ComponentHierarchy", { pageId: page.id, parentId: child.id, componentType: tag, order: 2, props: {} }])
      await ok("create", ["ComponentHierarchy", { pageId: other.id, componentType: tag, order: 0, props: {} }])
      expect(await count("ComponentHierarchy", { componentType: tag })).toBe(4)
      expect(await ok("delete", ["PageView", page.id])).toBe(true)
      expect(await count("ComponentHierarchy", { componentType: tag })).toBe(1)
      expect(await count("ComponentHierarchy", { componentType: tag, pageId: other.id })).toBe(1)
      // deleting a parent component deletes its subtree
      const r2 = await ok<Rec>("create", ["ComponentHierarchy", { pageId: other.id, componentType: tag, props: {} }])
      await ok("create", ["ComponentHierarchy", { pageId: other.id, parentId: r2.id, componentType: tag, props: {} }])
      expect(await ok("delete", ["ComponentHierarchy", r2.id])).toBe(true)
      expect(await count("ComponentHierarchy", { componentType: tag })).toBe(1)
      // User → Credential cascades through the username
      const u = await fx.user()
      await ok("create", ["Credential", { username: u.username, passwordHash: "h" }])
      expect(await ok("delete", ["User", u.id])).toBe(true)
      expect(await count("Credential", { username: u.username })).toBe(0)
    })

    it("unknown entity, unknown fields in data, filter and sort are 422", async () => {
      let e = await fail(422, "create", ["Nope", { a: 1 }])
      expect(fieldNames(e)).toEqual(["entity"])
      await fail(422, "list", ["users"])
      await fail(422, "read", ["user", MISSING])
      await fail(422, "count", ["__proto__"])
      await fail(422, "count", ["constructor"])

      e = await fail(422, "create", ["PageView", { slug: `s-${uid()}`, title: "t", level: 1, layout: {}, colour: "red" }])
      expect(fieldNames(e)).toEqual(["colour"])
      e = await fail(422, "create", ["PageView", { slug: `s-${uid()}`, title: "t", level: 1, layout: {}, is_active: true }])
      expect(fieldNames(e)).toEqual(["is_active"])
      e = await fail(422, "list", ["PageView", { filter: { colour: "red" } }])
      expect(fieldNames(e)).toEqual(["filter.colour"])
      e = await fail(422, "list", ["PageView", { filter: { OR: [{ level: 1 }, { nope: 1 }] } }])
      expect(fieldNames(e)).toEqual(["filter.OR[1].nope"])
      e = await fail(422, "list", ["PageView", { filter: { level: { like: "%" } } }])
      expect(fieldNames(e)).toEqual(["filter.level.like"])
      e = await fail(422, "list", ["PageView", { sort: { colour: "asc" } }])
      expect(fieldNames(e)).toEqual(["sort.colour"])
      await fail(422, "list", ["PageView", { sort: { level: "up" } }])
      await fail(422, "list", ["PageView", { sort: { layout: "asc" } }])
      await fail(422, "list", ["PageView", { sort: "level" }])
      await fail(422, "count", ["PageView", { "title; DROP TABLE users": "x" }])
      await fail(422, "findFirst", ["PageView", { slug: { in: "a" } }])
      await fail(422, "count", ["PageView", { layout: { eq: {} } }])
    })

    it("wrong types are 422 with the field named", async () => {
      const s = uid()
      const cases: ReadonlyArray<[Rec, string]> = [
        [{ slug: `s-${s}`, title: "t", level: "1", layout: {} }, "level"],
        [{ slug: `s-${s}`, title: "t", level: 1.5, layout: {} }, "level"],
        [{ slug: `s-${s}`, title: "t", level: 6, layout: {} }, "level"],
        [{ slug: `s-${s}`, title: 5, level: 1, layout: {} }, "title"],
        [{ slug: `s-${s}`, title: "t", level: 1, layout: {}, isActive: "yes" }, "isActive"],
        [{ slug: `s-${s}`, title: "t", level: 1, layout: {}, isActive: 1 }, "isActive"],
        [{ slug: `S_${s}`, title: "t", level: 1, layout: {} }, "slug"],
        [{ slug: `s-${s}`, title: "x".repeat(256), level: 1, layout: {} }, "title"],
        [{ slug: `s-${s}`, title: "t", level: 1, layout: null }, "layout"],
        [{ slug: `s-${s}`, title: "t", level: 1 }, "layout"],
        [{ slug: `s-${s}`, title: "t\u0000", level: 1, layout: {} }, "title"],
        [{ slug: `s-${s}`, title: "t", level: 1, layout: {}, createdAt: "2020-01-01T00:00:00Z" }, "createdAt"],
        [{ slug: `s-${s}`, title: "t", level: 1, layout: {}, id: MISSING }, "id"]
      ]
      for (const [data, field] of cases) {
        const e = await fail(422, "create", ["PageView", data])
        expect(fieldNames(e), JSON.stringify(data).slice(0, 100)).toContain(field)
      }
      expect(await count("PageView", { slug: `s-${s}` })).toBe(0)
      await fail(422, "create", ["User", { username: `t_${s}`, email: "not-an-email" }])
      await fail(422, "create", ["User", { username: `t_${s}`, email: `t_${s}@example.com`, role: "root" }])
      await fail(422, "create", ["Package", { name: `p${s}`, version: "1.0", author: "a", manifest: {} }])
      await fail(422, "create", ["Package", { name: `p${s}`, version: "1.0.0", author: "a", manifest: {}, installedAt: "yesterday" }])
      await fail(422, "create", [
        "Package",
        { name: `p${s}`, version: "1.0.0", author: "a", manifest: {}, installedAt: "2024-01-01T00:00:00" }
      ])
      await fail(422, "create", ["LuaScript", { name: `l${s}`, code: "x", createdBy: MISSING, timeoutMs: 50 }])
      expect(await count("User", { username: `t_${s}` })).toBe(0)
      expect(await count("Package", { name: `p${s}` })).toBe(0)

      const e = await fail(422, "list", ["PageView", { filter: { level: "1" } }])
      expect(fieldNames(e)).toEqual(["filter.level"])
      await fail(422, "list", ["PageView", { filter: { isActive: "true" } }])
      await fail(422, "list", ["PageView", { filter: { id: "nope" } }])
      await fail(422, "list", ["PageView", { filter: { createdAt: { gt: "yesterday" } } }])
      await fail(422, "list", ["PageView", { filter: { level: { contains: "1" } } }])
      await fail(422, "list", ["PageView", { filter: { isActive: { gt: true } } }])
    })

    it("wrong params shape or arity is 400", async () => {
      await fail(400, "create", ["PageView"])
      await fail(400, "create", ["PageView", {}, {}])
      await fail(400, "create", [{ entity: "PageView" }, {}])
      await fail(400, "read", ["PageView"])
      await fail(400, "read", ["PageView", 42])
      await fail(400, "update", ["PageView", MISSING])
      await fail(400, "delete", ["PageView", null])
      await fail(400, "list", [])
      await fail(400, "list", ["PageView", "filter"])
      await fail(400, "list", ["PageView", {}, {}])
      await fail(400, "updateMany", ["PageView", { level: 1 }])
      await fail(400, "count", ["PageView", {}, {}])
      await fail(400, "findByField", ["PageView", 1, "x"])
      await fail(400, "createMany", ["PageView", {}])
      const a = await call("frobnicate", ["PageView"])
      expect(a.error?.code).toBe(400)
      let r = await raw(JSON.stringify({ id: 7, method: "count", params: "PageView", auth: serviceAuth }))
      expect(r).toMatchObject({ id: 7, error: { code: 400 } })
      r = await raw("{not json")
      expect(r).toMatchObject({ id: null, error: { code: 400 } })
      r = await raw(JSON.stringify({ method: "count", params: ["PageView"], auth: serviceAuth }))
      expect(r).toMatchObject({ id: null, error: { code: 400 } })
      r = await raw(JSON.stringify({ id: "a", method: "count", params: ["PageView"] }))
      expect(r).toMatchObject({ id: "a", error: { code: 401 } })
      r = await raw(JSON.stringify({ id: 8, method: "count", params: ["PageView"], auth: { token: "wrong", user_id: "tests" } }))
      expect(r).toMatchObject({ id: 8, error: { code: 401 } })
      for (const x of [a.error, r.error]) expectNoLeak(x)
    })

    it("a write that fails leaves nothing half-written", async () => {
      const tag = uid()
      const before = { users: await count("User"), pages: await count("PageView"), comps: await count("ComponentHierarchy") }
      const u = await fx.user()
      const p = await fx.page()
      // each of these fails
      await fail(409, "create", ["User", { username: u.username, email: `x_${tag}@example.com` }])
      await fail(409, "createMany", [
        "User",
        [
          { username: `a_${tag}`, email: `a_${tag}@example.com` },
          { username: `b_${tag}`, email: u.email }
        ]
      ])
      await fail(422, "createMany", [
        "ComponentHierarchy",
        [
          { pageId: p.id, componentType: "x", props: {} },
          { pageId: MISSING, componentType: "x", props: {} }
        ]
      ])
      await fail(409, "upsert", ["User", "username", `c_${tag}`, { email: u.email }, { role: "admin" }])
      await fail(422, "update", ["PageView", p.id, { title: "changed", level: 0 }])
      await fail(409, "update", ["User", u.id, { role: "admin", email: (await fx.user()).email }])
      expect(await count("User")).toBe(before.users + 2)
      expect(await count("PageView")).toBe(before.pages + 1)
      expect(await count("ComponentHierarchy")).toBe(before.comps)
      expect(await ok("read", ["PageView", p.id])).toEqual(p)
      expect(await ok("read", ["User", u.id])).toEqual(u)
    })

    it("no error leaks SQL, driver messages or stack traces", async () => {
      const u = await fx.user()
      const errors = [
        (await call("create", ["User", { username: u.username, email: `z_${uid()}@example.com` }])).error,
        (await call("create", ["ComponentHierarchy", { pageId: MISSING, componentType: "x", props: {} }])).error,
        (await call("read", ["User", "'; SELECT 1; --"])).error,
        (await call("list", ["User", { filter: { "username' OR 1=1 --": "x" } }])).error,
        (await call("list", ["User", { sort: { "id; DROP TABLE users": "asc" } }])).error,
        (await call("count", ["users; DROP TABLE users"])).error
      ]
      for (const e of errors) {
        expect(e).toBeDefined()
        expect([404, 409, 422]).toContain(e!.code)
        expectNoLeak(e)
        if (e!.code === 422) for (const f of fieldsOf(e!)) expect(f.error.length).toBeLessThan(300)
      }
      expect(await count("User", { id: u.id })).toBe(1)
    })
  })
}
