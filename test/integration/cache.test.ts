/**
 * The result cache (performance.cache_enabled): a repeated read is answered from the cache, any
 * write to the entity through the daemon drops it at once, an answer is only served to callers
 * with the same effective access, and reads inside a transaction never touch it.
 */
import { Metric, ManagedRuntime } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startInProcess } from "../support/inprocess.js"
import { cacheLookups } from "../../src/Metrics.js"
import type { RpcHandler } from "../../src/rpc/Handler.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"

type Rec = Record<string, unknown>
interface Answer {
  readonly result?: unknown
  readonly error?: { code: number; details?: Rec }
}

for (const dialect of ["sqlite", "postgresql"] as const) {
  describe.skipIf(await skipDialect(dialect))(`result cache (${dialect})`, () => {
    let db: TestDatabase
    let rt: ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
    let call: (method: string, params: ReadonlyArray<unknown>, auth?: Rec) => Promise<Answer>
    let seq = 0

    const lookups = async () => ({
      hit: (await rt.runPromise(Metric.value(Metric.tagged(cacheLookups, "result", "hit")))).count,
      miss: (await rt.runPromise(Metric.value(Metric.tagged(cacheLookups, "result", "miss")))).count
    })
    const ok = async <T>(method: string, params: ReadonlyArray<unknown>, auth?: Rec) => {
      const a = await call(method, params, auth)
      expect(a.error, JSON.stringify(a.error)).toBeUndefined()
      return a.result as T
    }

    beforeAll(async () => {
      db = await createDatabase(dialect)
      const base = daemonConfig(db)
      const file = writeConfig({
        ...base,
        security: {
          ...(base.security as Rec),
          auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }], session_cache_ttl: 0 }
        },
        performance: { cache_enabled: true, cache_size_mb: 8 }
      })
      const daemon = await startInProcess(file)
      rt = daemon.runtime
      call = async (method, params, auth = serviceAuth) =>
        JSON.parse(await daemon.handle(JSON.stringify({ id: ++seq, method, params, auth }))) as Answer
    })
    afterAll(async () => {
      await rt?.dispose()
      await db?.drop()
    })

    it("answers a repeated read from the cache and forgets it on a write", async () => {
      const tag = randomUUID().slice(0, 8)
      await ok("create", ["PageView", { slug: `c-${tag}-1`, title: tag, level: 1, layout: {} }])
      const q = ["PageView", { filter: { title: tag } }]
      const before = await lookups()
      const first = await ok<{ total: number }>("list", q)
      const second = await ok<{ total: number }>("list", q)
      const after = await lookups()
      expect(after.miss - before.miss).toBe(1)
      expect(after.hit - before.hit).toBe(1)
      expect(second).toEqual(first)
      expect(first.total).toBe(1)

      await ok("create", ["PageView", { slug: `c-${tag}-2`, title: tag, level: 1, layout: {} }])
      expect((await ok<{ total: number }>("list", q)).total).toBe(2)
      const updated = await ok<Rec>("updateMany", ["PageView", { title: tag }, { level: 2 }])
      expect(updated).toBe(2)
      const page = await ok<{ data: Array<Rec> }>("list", q)
      expect(page.data.every((r) => r.level === 2)).toBe(true)
    })

    it("drops entries of an included entity when it is written", async () => {
      const user = await ok<Rec>("create", [
        "User",
        { username: `i${randomUUID().slice(0, 8)}`, email: `i${randomUUID().slice(0, 8)}@example.com` }
      ])
      const wf = await ok<Rec>("create", [
        "Workflow",
        { name: `wf-${randomUUID()}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy: user.id }
      ])
      const q = ["Workflow", { filter: { id: wf.id }, include: ["creator"] }]
      expect((await ok<{ data: Array<Rec> }>("list", q)).data[0]!.creator).toMatchObject({ role: "user" })
      await ok("update", ["User", user.id, { role: "admin" }])
      expect((await ok<{ data: Array<Rec> }>("list", q)).data[0]!.creator).toMatchObject({ role: "admin" })
    })

    it("never serves an answer to a caller who could not have read it", async () => {
      // Two users: `self` rules make each one's User list contain only themselves.
      const mk = async () => {
        const u = await ok<Rec>("create", [
          "User",
          { username: `s${randomUUID().slice(0, 8)}`, email: `s${randomUUID().slice(0, 8)}@example.com` }
        ])
        const token = `tok-${randomUUID()}`
        await ok("create", ["Session", { userId: u.id, token, expiresAt: "2099-01-01T00:00:00Z" }])
        return { id: u.id as string, auth: { token, user_id: u.id } }
      }
      const [a, b] = [await mk(), await mk()]
      const q = ["User", { limit: 100 }]
      const asA = await ok<{ data: Array<Rec> }>("list", q, a.auth)
      const asB = await ok<{ data: Array<Rec> }>("list", q, b.auth)
      expect(asA.data.map((r) => r.id)).toEqual([a.id])
      expect(asB.data.map((r) => r.id)).toEqual([b.id])
      // And the system's full answer is not served to either.
      const all = await ok<{ total: number }>("list", q)
      expect(all.total).toBeGreaterThan(1)
      expect((await ok<{ total: number }>("list", q, a.auth)).total).toBe(1)
    })

    it("keeps reads inside a transaction out of the cache", async () => {
      const tag = randomUUID().slice(0, 8)
      const q = ["PageView", { title: tag }]
      expect(await ok<number>("count", q)).toBe(0)
      // Inside the transaction the count sees the transaction's own (then rolled back) write.
      const r = await call("transaction", [
        [
          { method: "create", params: ["PageView", { slug: `t-${tag}`, title: tag, level: 1, layout: {} }] },
          { method: "count", params: q },
          { method: "create", params: ["PageView", { slug: `t-${tag}`, title: tag, level: 1, layout: {} }] }
        ]
      ])
      expect(r.error?.code).toBe(409)
      expect(await ok<number>("count", q)).toBe(0)
    })
  })
}
