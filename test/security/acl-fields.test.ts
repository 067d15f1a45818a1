/**
 * Field rules on every path (issue 14, findings 1 and 7), as a table of methods × (answer fields,
 * filter fields) on each dialect:
 * - every answer of every method (create, update, upsert in both forms, updateByField,
 *   transaction results, included records, and the reads) carries only the fields of the
 *   caller's read decision; a caller whose read rules refuse the entity sees only the `id` of what
 *   it writes;
 * - every field a request tests (filter, sort, lookup), in reads and in writes, must be readable,
 *   else 403 naming the field, and nothing is written;
 * - a caller without access gets 403 from every method, whatever field names its params hold
 *   (never a 422 that would name or confirm fields).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DIALECTS } from "../integration/harness.js"
import { skipDialect } from "../support/services.js"
import { type AclDaemon, type Principal, type Rec, startAclDaemon, uid } from "./acl-support.js"

const RULES = `
rules:
  # The review's rule: gods read pages, but only these two fields.
  - roles: god
    entities: PageView
    operations: read
    read_fields: [id, slug]
  # Supergods read packages without their unique name.
  - roles: supergod
    entities: Package
    operations: read
    read_fields: [id, version, author]
  # Gods write workflows (the default) but may not read them at all.
  - roles: god
    entities: Workflow
    operations: read
    effect: deny
`

const keys = (r: unknown): Array<string> => Object.keys(r as Rec).sort()

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`field rules on every path (${dialect})`, () => {
    let d: AclDaemon
    let god: Principal
    let supergod: Principal
    let user: Principal

    beforeAll(async () => {
      d = await startAclDaemon(dialect, { rules: RULES })
      god = await d.principal("god")
      supergod = await d.principal("supergod")
      user = await d.principal("user")
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const pageData = (over: Rec = {}): Rec => {
      const s = uid()
      return { slug: `p-${s}`, title: `Secret ${s}`, level: 1, layout: { s }, description: `hidden ${s}`, ...over }
    }
    const packageData = (over: Rec = {}): Rec => {
      const s = uid()
      return { name: `pkg-${s}`, version: "1.0.0", author: "tests", manifest: { s }, ...over }
    }
    const workflowData = (over: Rec = {}): Rec => ({
      name: `wf-${uid()}`,
      trigger: "manual",
      triggerConfig: {},
      steps: [],
      createdBy: god.id,
      ...over
    })
    const asSystem = (entity: string, id: unknown) => d.ok<Rec>("read", [entity, id])

    describe("answers carry only the readable fields", () => {
      const PAGE = ["id", "slug"]
      const PACKAGE = ["author", "id", "version"]
      const ID_ONLY = ["id"]

      it("PageView as god (read_fields [id, slug]): create, update, upsert (both forms, both paths), updateByField, reads", async () => {
        const created = await d.ok<Rec>("create", ["PageView", pageData()], god.auth)
        expect(keys(created), "create").toEqual(PAGE)
        // The row itself is complete: only the answer is narrowed.
        expect(await asSystem("PageView", created.id)).toMatchObject({
          title: expect.stringMatching(/^Secret /),
          description: expect.stringMatching(/^hidden /)
        })
        const table: Array<[string, ReadonlyArray<unknown>]> = [
          ["update", ["PageView", created.id, { title: "Changed" }]],
          ["upsert", ["PageView", "slug", `p-${uid()}`, pageData({ slug: undefined }), { title: "Up" }]],
          ["upsert", ["PageView", "slug", created.slug, pageData({ slug: undefined }), { title: "Up again" }]],
          ["upsert", ["PageView", { slug: `p-${uid()}` }, pageData({ slug: undefined }), { title: "Filter form" }]],
          ["upsert", ["PageView", { slug: created.slug }, pageData({ slug: undefined }), { title: "Filter form again" }]],
          ["updateByField", ["PageView", "slug", created.slug, { title: "By field" }]],
          ["read", ["PageView", created.id]],
          ["findFirst", ["PageView", { slug: created.slug }]],
          ["findByField", ["PageView", "slug", created.slug]]
        ]
        for (const [method, params] of table) {
          expect(keys(await d.ok(method, params, god.auth)), `${method} ${JSON.stringify(params[1])}`).toEqual(PAGE)
        }
        const page = await d.ok<{ data: Array<Rec> }>("list", ["PageView", { filter: { slug: created.slug } }], god.auth)
        expect(page.data.map(keys)).toEqual([PAGE])
        expect((await asSystem("PageView", created.id)).title).toBe("By field")
      })

      it("PageView as god: every result of a transaction, update inside it included", async () => {
        const p = await d.ok<Rec>("create", ["PageView", pageData()])
        const slug = `p-${uid()}`
        const results = await d.ok<Array<unknown>>(
          "transaction",
          [
            [
              { method: "create", params: ["PageView", pageData({ slug })] },
              { method: "update", params: ["PageView", p.id, { title: "In a transaction" }] },
              { method: "upsert", params: ["PageView", { slug }, pageData({ slug: undefined }), { title: "Upserted" }] },
              { method: "updateByField", params: ["PageView", "slug", p.slug, { description: "x" }] },
              { method: "read", params: ["PageView", p.id] },
              { method: "findFirst", params: ["PageView", { slug: p.slug }] },
              { method: "list", params: ["PageView", { filter: { slug: p.slug } }] }
            ]
          ],
          god.auth
        )
        expect(results.slice(0, 6).map(keys)).toEqual(Array.from({ length: 6 }, () => PAGE))
        expect((results[6] as { data: Array<Rec> }).data.map(keys)).toEqual([PAGE])
        expect((await asSystem("PageView", p.id)).title).toBe("In a transaction")
      })

      it("included records follow the referenced entity's read fields", async () => {
        const p = await d.ok<Rec>("create", ["PageView", pageData()])
        const c = await d.ok<Rec>("create", ["ComponentHierarchy", { pageId: p.id, componentType: `Box${uid()}`, order: 0, props: {} }])
        const page = await d.ok<{ data: Array<Rec> }>("list", ["ComponentHierarchy", { filter: { id: c.id }, include: ["page"] }], god.auth)
        expect(page.data).toHaveLength(1)
        expect(keys(page.data[0]!.page)).toEqual(PAGE)
      })

      it("Package as supergod (read_fields without the name): create, update, transaction", async () => {
        const created = await d.ok<Rec>("create", ["Package", packageData()], supergod.auth)
        expect(keys(created), "create").toEqual(PACKAGE)
        expect(keys(await d.ok("update", ["Package", created.id, { version: "1.0.1" }], supergod.auth)), "update").toEqual(PACKAGE)
        const results = await d.ok<Array<unknown>>(
          "transaction",
          [
            [
              { method: "create", params: ["Package", packageData()] },
              { method: "update", params: ["Package", created.id, { version: "1.0.2" }] }
            ]
          ],
          supergod.auth
        )
        expect(results.map(keys)).toEqual([PACKAGE, PACKAGE])
      })

      it("Workflow as god (read refused by the rules): writes answer the id only; reads are 403", async () => {
        const created = await d.ok<Rec>("create", ["Workflow", workflowData()], god.auth)
        expect(keys(created), "create").toEqual(ID_ONLY)
        expect((await asSystem("Workflow", created.id)).createdBy).toBe(god.id)
        expect(keys(await d.ok("update", ["Workflow", created.id, { description: "by god" }], god.auth)), "update").toEqual(ID_ONLY)
        const results = await d.ok<Array<unknown>>(
          "transaction",
          [
            [
              { method: "create", params: ["Workflow", workflowData()] },
              { method: "update", params: ["Workflow", created.id, { description: "again" }] }
            ]
          ],
          god.auth
        )
        expect(results.map(keys)).toEqual([ID_ONLY, ID_ONLY])
        expect((await asSystem("Workflow", created.id)).description).toBe("again")
        await d.fail(403, "read", ["Workflow", created.id], god.auth)
        expect(await d.ok("delete", ["Workflow", created.id], god.auth)).toBe(true)
      })
    })

    describe("filter, sort and lookup fields must be readable: 403 naming the field, nothing written", () => {
      it("PageView as god: title (hidden by read_fields) in reads and bulk writes", async () => {
        const tag = `S${uid()}`
        const p = await d.ok<Rec>("create", ["PageView", pageData({ title: tag })])
        const probes: Array<[string, ReadonlyArray<unknown>]> = [
          ["updateMany", ["PageView", { title: { startsWith: tag } }, { level: 2 }]],
          ["updateMany", ["PageView", { slug: p.slug, NOT: { title: "Z" } }, { level: 2 }]],
          ["deleteMany", ["PageView", { title: { startsWith: tag } }]],
          ["deleteMany", ["PageView", { OR: [{ slug: "nothing" }, { title: tag }] }]],
          ["count", ["PageView", { title: { startsWith: tag } }]],
          ["findFirst", ["PageView", { title: tag }]],
          ["list", ["PageView", { filter: { title: tag } }]],
          ["list", ["PageView", { sort: { title: "asc" } }]],
          ["transaction", [[{ method: "updateMany", params: ["PageView", { title: { startsWith: tag } }, { level: 2 }] }]]]
        ]
        for (const [method, params] of probes) {
          const e = await d.fail(403, method, params, god.auth)
          expect(e.details?.reason, `${method} ${JSON.stringify(params)}`).toContain("'title'")
        }
        expect(await asSystem("PageView", p.id)).toMatchObject({ title: tag, level: 1 })
        // Readable fields still filter bulk writes.
        expect(await d.ok<number>("updateMany", ["PageView", { slug: p.slug }, { level: 3 }], god.auth)).toBe(1)
      })

      it("Package as supergod: name (unique, not readable) as a lookup in every method", async () => {
        const pkg = await d.ok<Rec>("create", ["Package", packageData()])
        const create = packageData({ name: undefined })
        const probes: Array<[string, ReadonlyArray<unknown>]> = [
          ["findByField", ["Package", "name", pkg.name]],
          ["updateByField", ["Package", "name", pkg.name, { version: "9.9.9" }]],
          ["deleteByField", ["Package", "name", pkg.name]],
          ["upsert", ["Package", "name", pkg.name, create, { version: "9.9.9" }]],
          ["upsert", ["Package", { name: pkg.name }, create, { version: "9.9.9" }]],
          ["upsert", ["Package", { name: `pkg-${uid()}` }, create, { version: "9.9.9" }]],
          ["updateMany", ["Package", { name: pkg.name }, { version: "9.9.9" }]],
          ["deleteMany", ["Package", { name: { endsWith: String(pkg.name).slice(-3) } }]],
          ["count", ["Package", { name: pkg.name }]]
        ]
        for (const [method, params] of probes) {
          const e = await d.fail(403, method, params, supergod.auth)
          expect(e.details?.reason, `${method} ${JSON.stringify(params)}`).toContain("'name'")
        }
        expect(await asSystem("Package", pkg.id)).toEqual(pkg)
        expect(await d.ok<number>("count", ["Package", { author: "tests" }], supergod.auth)).toBe(
          await d.ok<number>("count", ["Package", { author: "tests" }])
        )
      })

      it("Workflow as god (no read access): no field may be tested by a write", async () => {
        const w = await d.ok<Rec>("create", ["Workflow", workflowData()])
        const probes: Array<[string, ReadonlyArray<unknown>]> = [
          ["updateMany", ["Workflow", { name: w.name }, { description: "probe" }]],
          ["deleteMany", ["Workflow", { name: { startsWith: "wf-" } }]],
          ["updateByField", ["Workflow", "name", w.name, { description: "probe" }]],
          ["deleteByField", ["Workflow", "name", w.name]],
          ["upsert", ["Workflow", "name", w.name, workflowData({ name: undefined }), { description: "probe" }]],
          ["upsert", ["Workflow", { name: w.name }, workflowData({ name: undefined }), { description: "probe" }]]
        ]
        for (const [method, params] of probes) {
          const e = await d.fail(403, method, params, god.auth)
          expect(e.details?.reason, `${method} ${JSON.stringify(params)}`).toContain("'name'")
        }
        for (const [method, params] of [
          ["count", ["Workflow", { name: w.name }]],
          ["findFirst", ["Workflow", { name: w.name }]],
          ["list", ["Workflow", {}]],
          ["findByField", ["Workflow", "name", w.name]]
        ] as const) {
          await d.fail(403, method, params, god.auth)
        }
        expect(await asSystem("Workflow", w.id)).toEqual(w)
      })
    })

    describe("the access decision comes first", () => {
      it("a caller without access gets 403 from every method, whatever field names the params hold", async () => {
        const id = "00000000-0000-4000-8000-000000000000"
        const many = Array.from({ length: 1001 }, () => ({}))
        const probes: Array<[string, ReadonlyArray<unknown>]> = [
          ["create", ["Credential", { nope: 1 }]],
          ["read", ["Credential", id]],
          ["update", ["Credential", id, { nope: 1 }]],
          ["delete", ["Credential", id]],
          ["list", ["Credential", { filter: { nope: 1 } }]],
          ["list", ["Credential", { sort: { nope: "asc" } }]],
          ["list", ["Credential", { include: ["nope"] }]],
          ["list", ["Credential", { nope: true }]],
          ["list", ["Credential", { limit: 100000 }]],
          ["findFirst", ["Credential", { nope: 1 }]],
          ["findByField", ["Credential", "nope", "x"]],
          ["findByField", ["Credential", "username", { not: "a value" }]],
          ["upsert", ["Credential", "nope", "x", { nope: 1 }, { nope: 1 }]],
          ["upsert", ["Credential", { nope: "x" }, { nope: 1 }, { nope: 1 }]],
          ["upsert", ["Credential", { username: "a", passwordHash: "b" }, {}, {}]],
          ["createMany", ["Credential", [{ nope: 1 }]]],
          ["createMany", ["Credential", many]],
          ["count", ["Credential", { nope: 1 }]],
          ["count", ["Credential", { username: { like: "a" } }]],
          ["updateMany", ["Credential", { nope: 1 }, { nope: 2 }]],
          ["updateMany", ["Credential", {}, { username: "x" }]],
          ["deleteMany", ["Credential", { nope: 1 }]],
          ["updateByField", ["Credential", "nope", "x", { nope: 1 }]],
          ["deleteByField", ["Credential", "nope", "x"]],
          ["transaction", [[{ method: "count", params: ["Credential", { nope: 1 }] }]]]
        ]
        for (const [method, params] of probes) {
          const e = await d.fail(403, method, params, user.auth)
          const text = JSON.stringify(e)
          expect(text, method).not.toContain("nope")
          expect(e.details?.fields, method).toBeUndefined()
        }
      })
    })
  })
}
