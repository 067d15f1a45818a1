/**
 * The client's behaviour, written once and run against every mode (client.test.ts): the same
 * calls must give the same answers in process (development) and over WebSocket (production).
 */
import { randomBytes } from "node:crypto"
import { Effect, Either } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DBALClient, DbalError, type User } from "../../src/client/index.js"
// The Effect API's types (client.effect, DBALClient.scoped).
import type {} from "../../src/client/effect.js"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

let seq = 0
const uid = () => `${randomBytes(4).toString("hex")}${(++seq).toString(36)}`

/** The DbalError a promise rejects with (fails the test when it resolves or rejects otherwise). */
export const rejection = async (p: Promise<unknown>): Promise<DbalError> => {
  try {
    const v = await p
    throw new Error(`expected a DbalError, got ${JSON.stringify(v)?.slice(0, 300)}`)
  } catch (e) {
    if (!(e instanceof DbalError)) throw e
    return e
  }
}

export const clientSuite = (makeClient: () => Promise<DBALClient> | DBALClient) => {
  let client: DBALClient
  let admin: User

  beforeAll(async () => {
    client = await makeClient()
    await client.connect()
    const s = uid()
    admin = await client.users.create({ username: `admin_${s}`, email: `admin_${s}@example.com`, role: "god" })
  })

  afterAll(async () => {
    await client?.close()
  })

  it("reports the capabilities of the configured adapter", async () => {
    const caps = await client.getCapabilities()
    expect(caps.adapter).toBe("sqlite")
    expect(caps.dialect).toBe("sqlite")
    expect(caps.methods).toEqual(expect.arrayContaining(["create", "read", "list", "upsert", "count", "getCapabilities"]))
    expect(typeof caps.features.transactions).toBe("boolean")
    expect(caps.limits.maxPageSize).toBeGreaterThan(0)
  })

  describe("CRUD", () => {
    it("creates, reads, updates and deletes a user", async () => {
      const s = uid()
      const u = await client.users.create({ username: `ada_${s}`, email: `ada_${s}@example.com` })
      expect(u.id).toMatch(UUID_V4)
      expect(u.role).toBe("user")
      expect(u.createdAt).toMatch(ISO_UTC)
      expect(await client.users.read(u.id)).toEqual(u)

      const changed = await client.users.update(u.id, { email: `ada2_${s}@example.com`, role: "admin" })
      expect(changed.email).toBe(`ada2_${s}@example.com`)
      expect(changed.role).toBe("admin")
      expect(changed.createdAt).toBe(u.createdAt)

      expect(await client.users.delete(u.id)).toBe(true)
      const gone = await rejection(client.users.read(u.id))
      expect(gone.kind).toBe("Server")
      expect(gone.code).toBe(404)
      expect(gone.method).toBe("read")
    })

    it("round-trips JSON fields and relations (pages, components, workflows, scripts, packages)", async () => {
      const s = uid()
      const page = await client.pages.create({ slug: `docs-${s}`, title: "Docs", level: 2, layout: { rows: [1, 2, { a: null }] } })
      expect(page.layout).toEqual({ rows: [1, 2, { a: null }] })
      expect(page.isActive).toBe(true)
      expect(page.description).toBeNull()

      const root = await client.components.create({ pageId: page.id, componentType: "Grid", props: { cols: 3 } })
      const child = await client.components.create({ pageId: page.id, parentId: root.id, componentType: "Text", order: 1 })
      expect(child.parentId).toBe(root.id)
      expect(child.props).toEqual({})
      const tree = await client.components.list({ filter: { pageId: page.id }, sort: { order: "asc" } })
      expect(tree.data.map((c) => c.componentType)).toEqual(["Grid", "Text"])

      const wf = await client.workflows.create({
        name: `wf-${s}`,
        trigger: "event",
        triggerConfig: { on: "signup" },
        steps: [{ do: "mail" }],
        createdBy: admin.id
      })
      expect(wf.triggerConfig).toEqual({ on: "signup" })
      expect((await client.workflows.findByField("name", `wf-${s}`))?.id).toBe(wf.id)

      const lua = await client.luaScripts.create({ name: `script-${s}`, code: "return 1", createdBy: admin.id })
      expect(lua.isSandboxed).toBe(true)
      expect(lua.timeoutMs).toBe(5000)
      expect(lua.allowedGlobals).toEqual([])

      const pkg = await client.packages.create({ name: `pkg-${s}`, version: "1.2.3", author: "tests", manifest: { deps: {} } })
      expect(pkg.isInstalled).toBe(false)
      const installed = await client.packages.update(pkg.id, {
        isInstalled: true,
        installedBy: admin.id,
        installedAt: "2025-01-02T03:04:05.000Z"
      })
      expect(installed.installedAt).toBe("2025-01-02T03:04:05.000Z")

      // Deleting the page removes its components (on_delete: cascade).
      expect(await client.pages.delete(page.id)).toBe(true)
      expect(await client.components.count({ pageId: page.id })).toBe(0)
    })

    it("keeps credentials' password hashes to itself and stores sessions", async () => {
      const s = uid()
      const u = await client.users.create({ username: `cred_${s}`, email: `cred_${s}@example.com` })
      const cred = await client.credentials.create({ username: u.username, passwordHash: "$argon2id$v=19$hash" })
      expect(cred.firstLogin).toBe(true)
      expect(cred).not.toHaveProperty("passwordHash")
      expect(await client.credentials.findByField("username", u.username)).not.toHaveProperty("passwordHash")

      const expiresAt = new Date(Date.now() + 3_600_000).toISOString()
      const session = await client.sessions.create({ userId: u.id, token: `tok-${s}-${uid()}`, expiresAt })
      expect(session.userId).toBe(u.id)
      expect(session.expiresAt).toBe(expiresAt)
      expect((await client.sessions.findFirst({ userId: u.id }))?.id).toBe(session.id)
    })
  })

  describe("list", () => {
    const tag = uid()
    beforeAll(async () => {
      const n = await client.pages.createMany(
        [1, 2, 3, 4, 5].map((level) => ({ slug: `list-${tag}-${level}`, title: `T${level}`, level, layout: {}, isActive: level % 2 === 1 }))
      )
      expect(n).toBe(5)
    })

    it("filters with operators, pages and sorts", async () => {
      const r = await client.pages.list({
        filter: { slug: { startsWith: `list-${tag}-` }, level: { gte: 2 } },
        sort: { level: "desc" },
        limit: 2
      })
      expect(r.total).toBe(4)
      expect(r.page).toBe(1)
      expect(r.limit).toBe(2)
      expect(r.hasMore).toBe(true)
      expect(r.data.map((p) => p.level)).toEqual([5, 4])
      const last = await client.pages.list({
        filter: { slug: { startsWith: `list-${tag}-` }, level: { gte: 2 } },
        sort: { level: "desc" },
        limit: 2,
        page: 2
      })
      expect(last.data.map((p) => p.level)).toEqual([3, 2])
      expect(last.hasMore).toBe(false)
    })

    it("combines conditions with AND, OR and NOT", async () => {
      const r = await client.pages.list({
        filter: {
          slug: { startsWith: `list-${tag}-` },
          OR: [{ level: 1 }, { level: { in: [4, 5] } }],
          NOT: { isActive: false }
        },
        sort: [{ level: "asc" }]
      })
      expect(r.data.map((p) => p.level)).toEqual([1, 5])
      expect(await client.pages.count({ AND: [{ slug: { contains: tag } }, { level: { lt: 3 } }] })).toBe(2)
    })
  })

  describe("bulk methods", () => {
    it("createMany, count, updateMany, deleteMany", async () => {
      const s = uid()
      const n = await client.users.createMany([0, 1, 2].map((i) => ({ username: `bulk_${s}_${i}`, email: `bulk_${s}_${i}@example.com` })))
      expect(n).toBe(3)
      expect(await client.users.count({ username: { startsWith: `bulk_${s}_` } })).toBe(3)
      expect(
        await client.users.updateMany({ username: { startsWith: `bulk_${s}_` }, NOT: { username: `bulk_${s}_0` } }, { role: "admin" })
      ).toBe(2)
      expect(await client.users.count({ username: { startsWith: `bulk_${s}_` }, role: "admin" })).toBe(2)
      expect(await client.users.deleteMany({ username: { startsWith: `bulk_${s}_` } })).toBe(3)
      expect(await client.users.findFirst({ username: { startsWith: `bulk_${s}_` } })).toBeNull()
    })

    it("upsert, findByField, updateByField, deleteByField", async () => {
      const s = uid()
      const created = await client.users.upsert("username", `up_${s}`, { email: `up_${s}@example.com` }, { role: "admin" })
      expect(created.role).toBe("user")
      const updated = await client.users.upsert("username", `up_${s}`, { email: `up_${s}@example.com` }, { role: "admin" })
      expect(updated.id).toBe(created.id)
      expect(updated.role).toBe("admin")

      expect((await client.users.findByField("email", `up_${s}@example.com`))?.id).toBe(created.id)
      expect(await client.users.findByField("username", `nobody_${s}`)).toBeNull()
      const renamed = await client.users.updateByField("username", `up_${s}`, { email: `up2_${s}@example.com` })
      expect(renamed.email).toBe(`up2_${s}@example.com`)
      expect(await client.users.deleteByField("username", `up_${s}`)).toBe(true)
      expect((await rejection(client.users.deleteByField("username", `up_${s}`))).code).toBe(404)
    })
  })

  describe("typed errors", () => {
    it("transaction: all or nothing, results in order; include: related records", async () => {
      const s = uid()
      const results = await client.transaction([
        { method: "create", params: ["PageView", { slug: `tx-${s}`, title: "Tx", level: 1, layout: {} }] },
        { method: "count", params: ["PageView", { slug: `tx-${s}` }] }
      ])
      expect(results[1]).toBe(1)
      const page = results[0] as { id: string }
      await client.components.create({ pageId: page.id, componentType: "Root" })
      const withPage = await client.components.list({ filter: { pageId: page.id }, include: ["page"] })
      expect((withPage.data[0] as unknown as { page: { slug: string } }).page.slug).toBe(`tx-${s}`)

      const failed = await client
        .transaction([
          { method: "create", params: ["PageView", { slug: `tx2-${s}`, title: "Tx", level: 1, layout: {} }] },
          { method: "create", params: ["PageView", { slug: `tx2-${s}`, title: "again", level: 1, layout: {} }] }
        ])
        .then(
          () => undefined,
          (e: unknown) => e
        )
      expect(failed).toBeInstanceOf(DbalError)
      expect((failed as DbalError).code).toBe(409)
      expect((failed as DbalError).details).toMatchObject({ operation: 1, rolledBack: true })
      expect(await client.pages.count({ slug: `tx2-${s}` })).toBe(0)
    })

    it("404: a record that is not there", async () => {
      const e = await rejection(client.workflows.read("00000000-0000-4000-8000-000000000000"))
      expect(e).toBeInstanceOf(DbalError)
      expect(e._tag).toBe("DbalError")
      expect(e.kind).toBe("Server")
      expect(e.code).toBe(404)
      expect(e.message).toBe("Resource not found")
      expect(e.details).toEqual({ entity: "Workflow" })
      expect((await rejection(client.users.update("not-a-uuid", { role: "admin" }))).code).toBe(404)
    })

    it("409: a unique value taken", async () => {
      const s = uid()
      await client.users.create({ username: `dup_${s}`, email: `dup_${s}@example.com` })
      const e = await rejection(client.users.create({ username: `dup_${s}`, email: `other_${s}@example.com` }))
      expect(e.code).toBe(409)
      expect(e.message).toBe("Resource conflict")
      expect(e.fields.map((f) => f.field)).toContain("username")
    })

    it("422: values the entity refuses, unknown fields, unbounded bulk writes", async () => {
      const s = uid()
      const bad = await rejection(client.pages.create({ slug: `bad-${s}`, title: "x", level: 9, layout: {} }))
      expect(bad.code).toBe(422)
      expect(bad.fields.map((f) => f.field)).toContain("level")

      const unknown = await rejection(client.users.list({ filter: { nickname: "x" } as never }))
      expect(unknown.code).toBe(422)

      const everything = await rejection(client.users.deleteMany({}))
      expect(everything.code).toBe(422)
      expect(everything.method).toBe("deleteMany")
    })
  })

  describe("Effect API", () => {
    it("composes calls and fails with a typed DbalError", async () => {
      const s = uid()
      const program = Effect.gen(function* () {
        const u = yield* client.effect.users.create({ username: `fx_${s}`, email: `fx_${s}@example.com` })
        const again = yield* client.effect.users.read(u.id)
        const dup = yield* Effect.either(client.effect.users.create({ username: `fx_${s}`, email: `fx2_${s}@example.com` }))
        const recovered = yield* client.effect.users.read("00000000-0000-4000-8000-000000000000").pipe(
          Effect.catchIf(
            (e) => e.code === 404,
            () => Effect.succeed(null)
          )
        )
        const deleted = yield* client.effect.users.delete(u.id)
        return { u, again, dup, recovered, deleted }
      })
      const r = await Effect.runPromise(program)
      expect(r.again).toEqual(r.u)
      expect(Either.isLeft(r.dup)).toBe(true)
      if (Either.isLeft(r.dup)) {
        expect(r.dup.left).toBeInstanceOf(DbalError)
        expect(r.dup.left.code).toBe(409)
      }
      expect(r.recovered).toBeNull()
      expect(r.deleted).toBe(true)
    })

    it("catches by tag", async () => {
      const r = await Effect.runPromise(
        client.effect.pages.read("00000000-0000-4000-8000-000000000000").pipe(
          Effect.map(() => 0),
          Effect.catchTag("DbalError", (e) => Effect.succeed(e.code))
        )
      )
      expect(r).toBe(404)
    })

    it("runs requests concurrently", async () => {
      const s = uid()
      const users = await Effect.runPromise(
        Effect.forEach(
          [0, 1, 2, 3, 4, 5, 6, 7],
          (i) => client.effect.users.create({ username: `par_${s}_${i}`, email: `par_${s}_${i}@example.com` }),
          {
            concurrency: "unbounded"
          }
        )
      )
      expect(new Set(users.map((u) => u.id)).size).toBe(8)
      expect(await client.users.count({ username: { startsWith: `par_${s}_` } })).toBe(8)
    })
  })
}
