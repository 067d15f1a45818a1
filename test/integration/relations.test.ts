/**
 * The `transaction` method (all or nothing, results in order, one access decision per
 * operation) and the list option `include` (one JOIN per relation), identical on the three
 * dialects. Access rules on included entities are proven in test/security/acl-include.test.ts.
 */
import { describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { DIALECTS, fixtures, type Rec, uid, useDaemon } from "./harness.js"

interface ListResult {
  readonly data: ReadonlyArray<Rec>
  readonly total: number
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(dialect, () => {
    const h = useDaemon(dialect)
    const { ok, fail, count } = h
    const fx = fixtures(h)

    describe("transaction", () => {
      it("runs every operation in order and returns their results", async () => {
        const s = uid()
        const user = await fx.user()
        const results = await ok<ReadonlyArray<unknown>>("transaction", [
          [
            { method: "create", params: ["PageView", { slug: `tx-${s}`, title: "T", level: 1, layout: {} }] },
            {
              method: "create",
              params: ["Workflow", { name: `tx-${s}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy: user.id }]
            },
            { method: "count", params: ["PageView", { slug: `tx-${s}` }] },
            { method: "update", params: ["User", user.id, { role: "admin" }] }
          ]
        ])
        expect(results).toHaveLength(4)
        expect(results[0]).toMatchObject({ slug: `tx-${s}` })
        expect(results[1]).toMatchObject({ name: `tx-${s}`, createdBy: user.id })
        // A read inside the transaction sees the transaction's own write.
        expect(results[2]).toBe(1)
        expect(results[3]).toMatchObject({ id: user.id, role: "admin" })
      })

      it("is all or nothing: a failing operation rolls back the ones before it", async () => {
        const s = uid()
        const user = await fx.user()
        const e = await fail(409, "transaction", [
          [
            { method: "create", params: ["PageView", { slug: `ax-${s}`, title: "A", level: 1, layout: {} }] },
            { method: "update", params: ["User", user.id, { role: "god" }] },
            { method: "create", params: ["PageView", { slug: `ax-${s}`, title: "duplicate", level: 1, layout: {} }] }
          ]
        ])
        expect(e.details).toMatchObject({ operation: 2, rolledBack: true, fields: ["slug"] })
        expect(await count("PageView", { slug: `ax-${s}` })).toBe(0)
        expect(await ok<Rec>("read", ["User", user.id])).toMatchObject({ role: "user" })
      })

      it("reports a validation failure with the operation's position", async () => {
        const e = await fail(422, "transaction", [
          [
            { method: "count", params: ["User"] },
            { method: "create", params: ["User", { username: "x" }] }
          ]
        ])
        expect(e.details).toMatchObject({ operation: 1 })
      })

      it("refuses malformed and nested operations and an empty or oversized list", async () => {
        await fail(400, "transaction", [[{ method: "transaction", params: [[]] }]])
        await fail(400, "transaction", [[{ method: "authenticate", params: [] }]])
        await fail(400, "transaction", [[{ params: ["User"] }]])
        await fail(400, "transaction", [{ method: "count" }])
        await fail(422, "transaction", [[]])
        await fail(422, "transaction", [Array.from({ length: 101 }, () => ({ method: "count", params: ["User"] }))])
      })
    })

    describe("include", () => {
      it("returns each record with the records its foreign keys name, in one page", async () => {
        const page = await fx.page()
        const root = await ok<Rec>("create", ["ComponentHierarchy", { pageId: page.id, componentType: "Root", order: 0, props: {} }])
        await ok("create", [
          "ComponentHierarchy",
          { pageId: page.id, parentId: root.id, componentType: "Child", order: 1, props: { a: 1 } }
        ])
        const list = await ok<ListResult>("list", [
          "ComponentHierarchy",
          { filter: { pageId: page.id }, sort: { order: "asc" }, include: ["page", "parent"] }
        ])
        expect(list.total).toBe(2)
        expect(list.data.map((r) => r.componentType)).toEqual(["Root", "Child"])
        for (const r of list.data) expect(r.page).toEqual(page)
        expect(list.data[0]!.parent).toBeNull()
        expect(list.data[1]!.parent).toMatchObject({ id: root.id, componentType: "Root", props: {} })
        expect(list.data[1]!.props).toEqual({ a: 1 })
      })

      it("accepts the object form and names relations set in the entity definition", async () => {
        const user = await fx.user()
        const wf = await fx.workflow(user.id as string)
        const list = await ok<ListResult>("list", ["Workflow", { filter: { id: wf.id }, include: { creator: true } }])
        expect(list.data[0]!.creator).toEqual(user)
      })

      it("refuses an unknown relation with 422 naming the known ones", async () => {
        const e = await fail(422, "list", ["ComponentHierarchy", { include: ["owner"] }])
        expect(JSON.stringify(e.details)).toContain("page, parent")
        await fail(422, "list", ["ComponentHierarchy", { include: "page" }])
      })

      it("never returns never_expose fields of an included record", async () => {
        const user = await fx.user()
        await ok("create", ["Credential", { username: user.username, passwordHash: "secret-hash" }])
        const list = await ok<ListResult>("list", ["Credential", { filter: { username: user.username }, include: ["user"] }])
        expect(list.data[0]!.user).toEqual(user)
        expect(JSON.stringify(list)).not.toContain("secret-hash")
      })
    })

    it("reports transactions, joins and relations in getCapabilities", async () => {
      const caps = await ok<{ features: Rec }>("getCapabilities")
      expect(caps.features).toMatchObject({ transactions: true, joins: true, relations: true })
    })
  })
}
