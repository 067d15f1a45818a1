/**
 * Two daemon processes on one PostgreSQL and one Redis behave as one service: the rate limit is
 * shared (Redis store), a session deleted through one replica is refused by the other at once and
 * cached answers are dropped on every replica (changes announced over PostgreSQL LISTEN/NOTIFY,
 * and over Redis pub/sub; a control run without announcements shows the difference), and every
 * audit record carries the name of the replica that wrote it.
 */
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { untilTrue } from "../support/wait.js"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, tempDir, writeConfig } from "../support/services.js"

for (const transport of ["postgresql", "redis", "none"] as const) {
  describe.skipIf(await skipDialect("postgresql"))(`two replicas, changes over ${transport}`, () => {
    let db: TestDatabase
    const dir = tempDir("replicas")
    const prefix = `dbal:test:${randomUUID()}:`
    const daemons: Array<Daemon> = []
    const audit = (name: string) => path.join(dir, `${name}.audit.log`)

    beforeAll(async () => {
      db = await createDatabase("postgresql")
      const base = daemonConfig(db)
      for (const name of ["replica-a", "replica-b"]) {
        const config = {
          ...base,
          security: {
            audit_log: true,
            audit_log_path: audit(name),
            // A long session cache: only the announcement can make the other replica forget.
            auth: {
              service_tokens: [{ name: "tests", token: serviceAuth.token }],
              session_cache_ttl: 300,
              failed_auth: { burst: 1000, per_minute: 1000 }
            },
            rate_limit: {
              enabled: true,
              store: "redis",
              key_prefix: prefix,
              requests_per_minute: 1,
              burst: 1000,
              roles: { user: { requests_per_minute: 1, burst: 6 } }
            }
          },
          cluster: { replica_name: name, changes: transport },
          performance: { cache_enabled: true }
        }
        fs.mkdirSync(path.join(dir, name), { recursive: true })
        daemons.push(await startDaemon([`--config=${writeConfig(config, path.join(dir, name))}`]))
      }
    })

    afterAll(async () => {
      await Promise.all(daemons.map((d) => d.stop()))
      const redis = new Redis("redis://127.0.0.1:6379")
      const keys = await redis.keys(`${prefix}*`)
      if (keys.length > 0) await redis.del(...keys)
      redis.disconnect()
      await db?.drop()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it("refuses a session deleted through the other replica", async () => {
      const [a, b] = [await connect(daemons[0]!.port, serviceAuth), await connect(daemons[1]!.port, serviceAuth)]
      const user = (await a.call("create", ["User", { username: `r${Date.now()}`, email: `r${Date.now()}@example.com` }])).result as {
        id: string
      }
      const token = `session-${randomUUID()}`
      const session = (await a.call("create", ["Session", { userId: user.id, token, expiresAt: "2099-01-01T00:00:00Z" }])).result as {
        id: string
      }
      const asUser = { token, user_id: user.id }
      // Both replicas have now validated (and cached) the session.
      expect((await a.call("read", ["User", user.id], asUser)).error).toBeUndefined()
      expect((await b.call("read", ["User", user.id], asUser)).error).toBeUndefined()

      expect((await a.call("delete", ["Session", session.id])).result).toBe(true)
      expect((await a.call("read", ["User", user.id], asUser)).error?.code).toBe(401)
      if (transport === "none") {
        // Control: without announcements the other replica trusts its cache (300 s) — which is
        // what makes the two cases above a real test of the announcement.
        expect((await b.call("read", ["User", user.id], asUser)).error).toBeUndefined()
      } else {
        // The other replica hears of it within milliseconds, long before its 300 s cache expires.
        await untilTrue(
          "replica b to refuse the session",
          async () => (await b.call("read", ["User", user.id], asUser)).error?.code === 401,
          5000
        )
      }
      await Promise.all([a.close(), b.close()])
    })

    it("drops cached answers on every replica when one of them writes", async () => {
      const [a, b] = [await connect(daemons[0]!.port, serviceAuth), await connect(daemons[1]!.port, serviceAuth)]
      const tag = randomUUID().slice(0, 8)
      const q = ["PageView", { filter: { title: tag } }]
      const total = async () => ((await b.call("list", q)).result as { total: number }).total
      expect(await total()).toBe(0)
      expect(await total()).toBe(0) // now answered from b's cache
      expect((await a.call("create", ["PageView", { slug: `x-${tag}`, title: tag, level: 1, layout: {} }])).error).toBeUndefined()
      if (transport === "none") {
        // Control: without announcements b keeps its cached (now stale) answer.
        expect(await total()).toBe(0)
      } else {
        await untilTrue("replica b to see the write", async () => (await total()) === 1, 5000)
      }
      await Promise.all([a.close(), b.close()])
    })

    it("shares one rate limit between the replicas", async () => {
      const [a, b] = [await connect(daemons[0]!.port, serviceAuth), await connect(daemons[1]!.port, serviceAuth)]
      const user = (await a.call("create", ["User", { username: `l${Date.now()}`, email: `l${Date.now()}@example.com` }])).result as {
        id: string
      }
      const token = `session-${randomUUID()}`
      await a.call("create", ["Session", { userId: user.id, token, expiresAt: "2099-01-01T00:00:00Z" }])
      const asUser = { token, user_id: user.id }
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).call("read", ["User", user.id], asUser)))
      const admitted = answers.filter((x) => x.error === undefined).length
      const limited = answers.filter((x) => x.error?.code === 429).length
      expect(admitted).toBe(6)
      expect(limited).toBe(4)
      await Promise.all([a.close(), b.close()])
    })

    it("names the replica in every audit record", async () => {
      for (const [i, name] of ["replica-a", "replica-b"].entries()) {
        const c = await connect(daemons[i]!.port, serviceAuth)
        await c.call("count", ["User"])
        await c.close()
        await untilTrue(
          `${name}'s audit record`,
          async () => fs.existsSync(audit(name)) && fs.readFileSync(audit(name), "utf8").includes('"operation":"count"'),
          5000
        )
        const records = fs
          .readFileSync(audit(name), "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { replica?: string })
        expect(records.length).toBeGreaterThan(0)
        expect(records.every((r) => r.replica === name)).toBe(true)
      }
    })
  })
}
