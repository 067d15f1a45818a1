/**
 * Rules file: row filters narrow reads, lists, counts and bulk writes in SQL; single-row access
 * outside the filter is 404; writes that would leave the filter are 403 and rolled back. Field
 * lists: read_fields hide fields from every read answer, write_fields refuse (403) other fields.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { ACL_DIALECTS, type AclDaemon, type Principal, type Rec, startAclDaemon, uid } from "./acl-support.js"

const RULES = `
rules:
  # Plain users get their own workflows only, for every operation.
  - roles: user
    entities: Workflow
    operations: [create, read, update, delete]
    filter: { createdBy: "$user.id" }

  # Admins read workflows (the default) but only some fields, and may update two fields.
  - roles: admin
    entities: Workflow
    operations: read
    read_fields: [id, name, createdBy]
  - roles: admin
    entities: Workflow
    operations: update
    write_fields: [description, isActive]

  # Gods create pages (the default) naming only these fields.
  - roles: god
    entities: PageView
    operations: create
    write_fields: [slug, title, level, layout, description]

  # Gods create workflows only for themselves (their updates keep the default: every row).
  - roles: god
    entities: Workflow
    operations: create
    filter: { createdBy: "$user.id" }

  # Users read the users of their own role ($user.role).
  - roles: user
    entities: User
    operations: read
    filter: { role: "$user.role" }
`

type Page = { data: Array<Rec>; total: number }

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`rules file: row filters and field lists (${dialect})`, () => {
    let d: AclDaemon
    let alice: Principal
    let bob: Principal
    let admin: Principal
    let god: Principal

    beforeAll(async () => {
      d = await startAclDaemon(dialect, { rules: RULES })
      alice = await d.principal("user")
      bob = await d.principal("user")
      admin = await d.principal("admin")
      god = await d.principal("god")
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const workflow = (createdBy: string, over: Rec = {}) =>
      d.ok<Rec>("create", [
        "Workflow",
        { name: `wf-${uid()}`, trigger: "manual", triggerConfig: {}, steps: [{ step: 1 }], createdBy, ...over }
      ])
    /** A fresh set: two workflows of alice, two of bob, one of admin; all share a tag in their description. */
    const seed = async () => {
      const tag = `tag-${uid()}`
      const mine = [await workflow(alice.id, { description: tag }), await workflow(alice.id, { description: tag })]
      const theirs = [await workflow(bob.id, { description: tag }), await workflow(admin.id, { description: tag })]
      return { tag, mine, theirs, all: [...mine, ...theirs] }
    }
    const asSystem = (id: unknown) => d.ok<Rec>("read", ["Workflow", id])

    describe("row filter on reads", () => {
      it("list, count and findFirst return only the caller's rows", async () => {
        const { tag, mine } = await seed()
        const byTag = { description: tag }
        expect(await d.ok<number>("count", ["Workflow", byTag])).toBe(4)
        const page = await d.ok<Page>("list", ["Workflow", { filter: byTag, limit: 100 }], alice.auth)
        expect(page.data.map((r) => r.id).sort()).toEqual(mine.map((r) => r.id).sort())
        expect(page.total).toBe(2)
        expect(await d.ok<number>("count", ["Workflow", byTag], alice.auth)).toBe(2)
        // Asking explicitly for someone else's rows does not widen the filter.
        expect(await d.ok<number>("count", ["Workflow", { createdBy: bob.id }], alice.auth)).toBe(0)
        expect(await d.ok("findFirst", ["Workflow", { description: tag, createdBy: bob.id }], alice.auth)).toBeNull()
        const first = await d.ok<Rec>("findFirst", ["Workflow", byTag], alice.auth)
        expect(first.createdBy).toBe(alice.id)
        // Across everything: every row alice sees is hers.
        const everything = await d.ok<Page>("list", ["Workflow", { limit: 100 }], alice.auth)
        expect(everything.data.every((r) => r.createdBy === alice.id)).toBe(true)
        expect(everything.total).toBe(await d.ok<number>("count", ["Workflow", { createdBy: alice.id }]))
      })

      it("read and findByField of a row outside the filter answer 404 / null", async () => {
        const { mine, theirs } = await seed()
        expect((await d.ok<Rec>("read", ["Workflow", mine[0]!.id], alice.auth)).id).toBe(mine[0]!.id)
        await d.fail(404, "read", ["Workflow", theirs[0]!.id], alice.auth)
        expect(await d.ok("findByField", ["Workflow", "name", theirs[0]!.name], alice.auth)).toBeNull()
        expect((await d.ok<Rec>("findByField", ["Workflow", "name", mine[0]!.name], alice.auth)).id).toBe(mine[0]!.id)
      })

      it("$user.role binds the caller's role", async () => {
        const page = await d.ok<Page>("list", ["User", { limit: 100 }], alice.auth)
        expect(page.data.length).toBeGreaterThanOrEqual(2)
        expect(page.data.every((u) => u.role === "user")).toBe(true)
        expect(page.data.map((u) => u.id)).toEqual(expect.arrayContaining([alice.id, bob.id]))
        await d.fail(404, "read", ["User", admin.id], alice.auth)
      })
    })

    describe("row filter on writes", () => {
      it("updateMany with a filter matching everyone's rows changes only the caller's", async () => {
        const { tag, mine, theirs } = await seed()
        const n = await d.ok<number>("updateMany", ["Workflow", { description: tag }, { isActive: false }], alice.auth)
        expect(n).toBe(2)
        for (const r of mine) expect((await asSystem(r.id)).isActive).toBe(false)
        for (const r of theirs) expect(await asSystem(r.id)).toEqual(r)
      })

      it("deleteMany with a filter matching everyone's rows deletes only the caller's", async () => {
        const { tag, theirs } = await seed()
        const n = await d.ok<number>("deleteMany", ["Workflow", { description: tag }], alice.auth)
        expect(n).toBe(2)
        expect(await d.ok<number>("count", ["Workflow", { description: tag }])).toBe(2)
        for (const r of theirs) expect(await asSystem(r.id)).toEqual(r)
      })

      it("update, updateByField, delete and deleteByField of a row outside the filter answer 404", async () => {
        const { theirs } = await seed()
        const target = theirs[0]!
        await d.fail(404, "update", ["Workflow", target.id, { description: "mine now" }], alice.auth)
        await d.fail(404, "updateByField", ["Workflow", "name", target.name, { description: "mine now" }], alice.auth)
        await d.fail(404, "delete", ["Workflow", target.id], alice.auth)
        await d.fail(404, "deleteByField", ["Workflow", "name", target.name], alice.auth)
        await d.fail(
          404,
          "upsert",
          [
            "Workflow",
            "name",
            target.name,
            { trigger: "manual", triggerConfig: {}, steps: [], createdBy: alice.id },
            { description: "mine now" }
          ],
          alice.auth
        )
        expect(await asSystem(target.id)).toEqual(target)
      })

      it("an update that would move the row out of the filter is 403 and the row stays unchanged", async () => {
        const { mine } = await seed()
        const target = mine[0]!
        await d.fail(403, "update", ["Workflow", target.id, { createdBy: bob.id, description: "given away" }], alice.auth)
        expect(await asSystem(target.id)).toEqual(target)
        await d.fail(403, "updateMany", ["Workflow", { id: target.id }, { createdBy: bob.id }], alice.auth)
        expect(await asSystem(target.id)).toEqual(target)
        await d.fail(403, "updateByField", ["Workflow", "name", target.name, { createdBy: bob.id }], alice.auth)
        expect(await asSystem(target.id)).toEqual(target)
        // An update that keeps the row inside the filter is fine.
        expect((await d.ok<Rec>("update", ["Workflow", target.id, { description: "still mine" }], alice.auth)).description).toBe(
          "still mine"
        )
      })

      it("a create for someone else is 403 and creates nothing; for oneself it succeeds", async () => {
        const name = `wf-${uid()}`
        await d.fail(403, "create", ["Workflow", { name, trigger: "manual", triggerConfig: {}, steps: [], createdBy: bob.id }], alice.auth)
        expect(await d.ok<number>("count", ["Workflow", { name }])).toBe(0)
        const own = await d.ok<Rec>(
          "create",
          ["Workflow", { name, trigger: "manual", triggerConfig: {}, steps: [], createdBy: alice.id }],
          alice.auth
        )
        expect(own.createdBy).toBe(alice.id)
      })

      it("createMany with one row for someone else is 403 and creates none", async () => {
        const tag = `batch-${uid()}`
        const rows = [alice.id, alice.id, bob.id].map((createdBy) => ({
          name: `wf-${uid()}`,
          description: tag,
          trigger: "manual",
          triggerConfig: {},
          steps: [],
          createdBy
        }))
        await d.fail(403, "createMany", ["Workflow", rows], alice.auth)
        expect(await d.ok<number>("count", ["Workflow", { description: tag }])).toBe(0)
        expect(await d.ok<number>("createMany", ["Workflow", rows.slice(0, 2)], alice.auth)).toBe(2)
        expect(await d.ok<number>("count", ["Workflow", { description: tag }])).toBe(2)
      })

      it("an upsert that would create a row for someone else is 403 and creates nothing", async () => {
        const name = `wf-${uid()}`
        await d.fail(
          403,
          "upsert",
          ["Workflow", "name", name, { trigger: "manual", triggerConfig: {}, steps: [], createdBy: bob.id }, { description: "x" }],
          alice.auth
        )
        expect(await d.ok<number>("count", ["Workflow", { name }])).toBe(0)
        const created = await d.ok<Rec>(
          "upsert",
          ["Workflow", "name", name, { trigger: "manual", triggerConfig: {}, steps: [], createdBy: alice.id }, { description: "x" }],
          alice.auth
        )
        expect(created.createdBy).toBe(alice.id)
        const updated = await d.ok<Rec>(
          "upsert",
          ["Workflow", "name", name, { trigger: "manual", triggerConfig: {}, steps: [], createdBy: alice.id }, { description: "y" }],
          alice.auth
        )
        expect(updated).toMatchObject({ id: created.id, description: "y" })
      })
    })

    it("upsert's create path follows the create rule's row filter, not the update rule's", async () => {
      const name = `wf-${uid()}`
      const data = { trigger: "manual", triggerConfig: {}, steps: [], createdBy: bob.id }
      await d.fail(403, "create", ["Workflow", { name, ...data }], god.auth)
      await d.fail(403, "upsert", ["Workflow", "name", name, data, { description: "x" }], god.auth)
      expect(await d.ok<number>("count", ["Workflow", { name }])).toBe(0)
      const created = await d.ok<Rec>("upsert", ["Workflow", "name", name, { ...data, createdBy: god.id }, { description: "x" }], god.auth)
      expect(created.createdBy).toBe(god.id)
      // The update path is the default's (every row): a god may update anyone's workflow.
      const theirs = await workflow(bob.id)
      expect(await d.ok<Rec>("upsert", ["Workflow", "name", theirs.name, data, { description: "by god" }], god.auth)).toMatchObject({
        id: theirs.id,
        description: "by god"
      })
    })

    describe("field lists", () => {
      it("read_fields hide the other fields from read, list, findFirst and findByField", async () => {
        const w = await workflow(bob.id, { description: `rf-${uid()}` })
        const visible = ["createdBy", "id", "name"]
        expect(Object.keys(await d.ok<Rec>("read", ["Workflow", w.id], admin.auth)).sort()).toEqual(visible)
        const page = await d.ok<Page>("list", ["Workflow", { filter: { id: w.id } }], admin.auth)
        expect(page.data.map((r) => Object.keys(r).sort())).toEqual([visible])
        expect(Object.keys(await d.ok<Rec>("findFirst", ["Workflow", { id: w.id }], admin.auth)).sort()).toEqual(visible)
        expect(Object.keys(await d.ok<Rec>("findByField", ["Workflow", "name", w.name], admin.auth)).sort()).toEqual(visible)
        // The row itself is complete (system sees every field).
        expect(Object.keys(await asSystem(w.id))).toEqual(expect.arrayContaining(["steps", "triggerConfig", "description", "trigger"]))
      })

      it("fields hidden by read_fields cannot be probed through filters, sorting or lookups (403)", async () => {
        const w = await workflow(bob.id, { description: `probe-${uid()}` })
        await d.fail(403, "count", ["Workflow", { trigger: "manual" }], admin.auth)
        await d.fail(403, "count", ["Workflow", { OR: [{ id: w.id }, { NOT: { description: { startsWith: "probe" } } }] }], admin.auth)
        await d.fail(403, "list", ["Workflow", { filter: { isActive: true } }], admin.auth)
        await d.fail(403, "list", ["Workflow", { sort: { trigger: "asc" } }], admin.auth)
        await d.fail(403, "findFirst", ["Workflow", { description: w.description }], admin.auth)
        // Readable fields filter and sort as usual.
        expect(await d.ok<number>("count", ["Workflow", { id: w.id, name: w.name }], admin.auth)).toBe(1)
        expect(
          (await d.ok<Page>("list", ["Workflow", { filter: { createdBy: bob.id }, sort: { name: "asc" }, limit: 100 }], admin.auth)).total
        ).toBeGreaterThan(0)
      })

      it("write_fields: 403 for another field (row unchanged), success for the listed ones", async () => {
        const w = await workflow(bob.id)
        await d.fail(403, "update", ["Workflow", w.id, { name: `renamed-${uid()}` }], admin.auth)
        await d.fail(403, "update", ["Workflow", w.id, { description: "ok", trigger: "event" }], admin.auth)
        await d.fail(403, "updateMany", ["Workflow", { id: w.id }, { steps: [] }], admin.auth)
        expect(await asSystem(w.id)).toEqual(w)
        await d.ok("update", ["Workflow", w.id, { description: "allowed" }], admin.auth)
        expect(await d.ok<number>("updateMany", ["Workflow", { id: w.id }, { isActive: false }], admin.auth)).toBe(1)
        expect(await asSystem(w.id)).toMatchObject({ description: "allowed", isActive: false, name: w.name, trigger: "manual" })
      })

      it("write_fields on create: listed fields succeed (defaults of unlisted fields are not the caller's), an unlisted field is 403", async () => {
        const slug = `p-${uid()}`
        await d.fail(403, "create", ["PageView", { slug, title: "t", level: 1, layout: {}, isActive: false }], god.auth)
        expect(await d.ok<number>("count", ["PageView", { slug }])).toBe(0)
        const created = await d.ok<Rec>("create", ["PageView", { slug, title: "t", level: 1, layout: {} }], god.auth)
        expect(created).toMatchObject({ slug, isActive: true })
      })
    })
  })
}
