/**
 * Rate limiting: the memory token bucket on an injected clock (refill, retryAfter, idle keys
 * dropped, max_keys bounding a flood), the memory store through the live daemon (per principal,
 * per role), the Redis store shared by two daemon processes (one limit in total, not one per
 * process), and each `on_store_error` policy with Redis unreachable, answering quickly.
 */
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeMemory } from "../../src/limits/TokenBucket.js"
import { type Answer, type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, SERVICE_TOKEN, serviceAuth, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"
import {
  DIALECTS,
  expectError,
  expectOk,
  expectRateLimited,
  type InProcessDaemon,
  securityConfig,
  signJwt,
  startInProcess,
  timed,
  uid
} from "./harness.js"

const REDIS_URL = "redis://127.0.0.1:6379"
/** Nothing listens there: connections are refused at once. */
const CLOSED_PORT_URL = "redis://127.0.0.1:1"
const HS_SECRET = "hs256-secret-for-the-ratelimit-tests-0123456789"
const hsKey = new TextEncoder().encode(HS_SECRET)
const OTHER_TOKEN = "other-service-token-0123456789abcdef"

describe("makeMemory (token bucket) on an injected clock", () => {
  const clock = () => {
    let t = 1_000_000
    return { now: () => t, advance: (ms: number) => void (t += ms) }
  }

  it("admits burst requests at once, then refills at requests_per_minute; retryAfter is the wait for the next token", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 60, burst: 5, now: c.now })
    for (let i = 0; i < 5; i++) expect(m.check("a", true), `request ${i + 1}`).toBeUndefined()
    const sixth = m.check("a", true)
    expect(sixth?._tag).toBe("RateLimited")
    expect(sixth?.retryAfter).toBe(1)
    c.advance(500)
    expect(m.check("a", true)?.retryAfter, "half a token: still a second at most").toBe(1)
    c.advance(500)
    expect(m.check("a", true), "one token after one second").toBeUndefined()
    expect(m.check("a", true), "and only one").toBeDefined()
    // A long pause refills to burst, never beyond.
    c.advance(60 * 60_000)
    for (let i = 0; i < 5; i++) expect(m.check("a", true), `after an hour, request ${i + 1}`).toBeUndefined()
    expect(m.check("a", true)).toBeDefined()
    // Another key has its own bucket.
    expect(m.check("b", true)).toBeUndefined()
  })

  it("retryAfter counts whole seconds up to the next token (6 per minute: a token every 10 s)", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 6, burst: 2, now: c.now })
    expect(m.check("k", true)).toBeUndefined()
    expect(m.check("k", true)).toBeUndefined()
    expect(m.check("k", true)?.retryAfter).toBe(10)
    c.advance(2_500)
    expect(m.check("k", true)?.retryAfter).toBe(8) // 7.5 s left, rounded up
    c.advance(7_499)
    expect(m.check("k", true)?.retryAfter).toBe(1) // 1 ms left
    c.advance(1)
    expect(m.check("k", true)).toBeUndefined()
    // Refused requests take nothing: the next token still comes 10 s after the last admitted one.
    for (let i = 0; i < 5; i++) expect(m.check("k", true)?.retryAfter).toBe(10)
    c.advance(10_000)
    expect(m.check("k", true)).toBeUndefined()
  })

  it("check without take only looks; consume is the Effect form", async () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 60, burst: 1, now: c.now })
    for (let i = 0; i < 10; i++) expect(m.check("k", false)).toBeUndefined()
    const { Effect, Exit } = await import("effect")
    expect(Exit.isSuccess(await Effect.runPromiseExit(m.consume("k")))).toBe(true)
    const refused = await Effect.runPromiseExit(m.consume("k"))
    expect(Exit.isFailure(refused)).toBe(true)
    expect(m.check("k", false)?.retryAfter).toBe(1)
  })

  it("drops keys once they have been idle long enough to be full again", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 60, burst: 5, now: c.now }) // full again after 5 s
    for (let i = 0; i < 100; i++) m.check(`idle-${i}`, true)
    expect(m.size()).toBe(100)
    c.advance(4_000)
    m.check("busy", true)
    expect(m.size(), "not yet idle long enough (and no sweep due)").toBe(101)
    c.advance(6_001) // 10 s since the first keys, 6 s since "busy"
    m.check("busy", true)
    expect(m.size(), "only the key in use is left").toBe(1)
    // Dropping a full bucket loses nothing: a dropped key starts full, as it would have been.
    for (let i = 0; i < 5; i++) expect(m.check("idle-0", true)).toBeUndefined()
    expect(m.check("idle-0", true)).toBeDefined()
  })

  it("max_keys bounds the map under a flood of 10,000 distinct keys", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 60, burst: 3, now: c.now, maxKeys: 1_000 })
    let peak = 0
    const started = performance.now()
    for (let i = 0; i < 10_000; i++) {
      expect(m.check(`flood-${i}`, true), "a new key starts full").toBeUndefined()
      c.advance(1) // the flood lasts 10 s of the injected clock
      peak = Math.max(peak, m.size())
    }
    expect(peak).toBeLessThanOrEqual(1_000)
    expect(m.size()).toBeGreaterThan(0)
    expect(performance.now() - started, "the flood is handled in bounded time").toBeLessThan(5_000)
    // Without a bound (default 100,000) but with the clock moving, idle keys still go.
    const d = clock()
    const unbounded = makeMemory({ requestsPerMinute: 60, burst: 3, now: d.now })
    for (let i = 0; i < 10_000; i++) {
      unbounded.check(`flood-${i}`, true)
      d.advance(1)
    }
    d.advance(10_000)
    unbounded.check("last", true)
    expect(unbounded.size()).toBe(1)
  })

  it("max_keys: a flood within one instant cannot reset a spent key that keeps asking", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 1, burst: 2, now: c.now, maxKeys: 500 })
    m.check("victim", true)
    m.check("victim", true)
    for (let i = 0; i < 10_000; i++) {
      m.check(`flood-${i}`, true)
      if (i % 50 === 0) expect(m.check("victim", true), `victim during the flood (${i})`).toBeDefined()
    }
    expect(m.size()).toBeLessThanOrEqual(500)
    expect(m.check("victim", true)).toBeDefined()
  })
})

/** Sends `n` requests at once on `c` (pipelined) and returns the answers. */
const burstOf = (c: Client, n: number, auth?: Record<string, unknown>): Promise<ReadonlyArray<Answer>> =>
  Promise.all(Array.from({ length: n }, () => c.call("getCapabilities", [], auth)))

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`rate limiting on ${dialect}`, () => {
    let db: TestDatabase | undefined
    const clients: Array<Client> = []
    const open = async (port: number, auth?: Record<string, unknown>) => {
      const c = await connect(port, auth)
      clients.push(c)
      return c
    }
    const auth = (extra: Record<string, unknown> = {}) => ({
      service_tokens: [
        { name: "tests", token: SERVICE_TOKEN },
        { name: "other", token: OTHER_TOKEN }
      ],
      jwt: { enabled: true, algorithms: ["HS256"], secret: HS_SECRET },
      ...extra
    })
    const userAuth = async (sub: string, role = "user") => ({ token: await signJwt(hsKey, "HS256", { sub, role }), user_id: sub })

    beforeAll(async () => {
      db = await createDatabase(dialect)
    })
    afterAll(async () => {
      for (const c of clients) await c.close()
      await db?.drop()
    })

    describe("memory store: requests_per_minute 60, burst 5; system: burst 2", () => {
      let daemon: InProcessDaemon | undefined
      beforeAll(async () => {
        daemon = await startInProcess(
          securityConfig(db!, {
            auth: auth(),
            rate_limit: {
              enabled: true,
              store: "memory",
              requests_per_minute: 60,
              burst: 5,
              roles: { system: { requests_per_minute: 60, burst: 2 } }
            }
          })
        )
      })
      afterAll(async () => {
        await daemon?.dispose()
      })

      it("the 6th rapid request of a principal gets 429 with retryAfter; another principal is unaffected", async () => {
        const a = await userAuth(`rl-a-${uid()}`)
        const b = await userAuth(`rl-b-${uid()}`)
        const c = await open(daemon!.port)
        const started = performance.now()
        for (let i = 1; i <= 5; i++) expectOk(await c.call("getCapabilities", [], a), `A request ${i}`)
        const retryAfter = expectRateLimited(await c.call("getCapabilities", [], a), "A request 6")
        const elapsed = performance.now() - started
        // At 1 token a second, "rapid" means well under a second for the six.
        expect(elapsed).toBeLessThan(1_000)
        expect(retryAfter).toBe(1)
        // Another principal, even on the same connection and with the same role: its own bucket.
        for (let i = 1; i <= 5; i++) expectOk(await c.call("getCapabilities", [], b), `B request ${i}`)
        expectRateLimited(await c.call("getCapabilities", [], b), "B request 6")
        // Another connection of A shares A's bucket.
        expectRateLimited(await (await open(daemon!.port)).call("getCapabilities", [], a), "A on another connection")
      })

      it("the per-role override applies: system principals get burst 2, each its own", async () => {
        const c = await open(daemon!.port)
        const answers = [
          await c.call("getCapabilities", [], serviceAuth),
          await c.call("getCapabilities", [], serviceAuth),
          await c.call("getCapabilities", [], serviceAuth)
        ]
        expectOk(answers[0]!, "system 1")
        expectOk(answers[1]!, "system 2")
        expectRateLimited(answers[2]!, "system 3")
        const other = { token: OTHER_TOKEN, user_id: "other" }
        expectOk(await c.call("getCapabilities", [], other), "other system principal 1")
        expectOk(await c.call("getCapabilities", [], other), "other system principal 2")
        expectRateLimited(await c.call("getCapabilities", [], other), "other system principal 3")
        // A user role still has burst 5 while the system principals are limited.
        const u = await userAuth(`rl-u-${uid()}`)
        const burst = await burstOf(c, 6, u)
        expect(burst.filter((x) => x.error === undefined)).toHaveLength(5)
        expect(burst.filter((x) => x.error?.code === 429)).toHaveLength(1)
      })
    })

    describe("redis store shared by two daemon processes", () => {
      const prefix = `dbal-test:${uid()}:`
      let daemons: Array<Daemon> = []
      let redis: Redis | undefined
      beforeAll(async () => {
        redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
        const file = writeConfig(
          securityConfig(db!, {
            auth: auth(),
            rate_limit: { enabled: true, store: "redis", redis_url: REDIS_URL, key_prefix: prefix, requests_per_minute: 1, burst: 10 }
          })
        )
        // One after the other, so that the second does not migrate while the first does.
        daemons.push(await startDaemon([`--config=${file}`]))
        daemons.push(await startDaemon([`--config=${file}`]))
      })
      afterAll(async () => {
        await Promise.all(daemons.map((d) => d.stop()))
        daemons = []
        if (redis !== undefined) {
          const keys = await redis.keys(`${prefix}*`)
          if (keys.length > 0) await redis.del(...keys)
          expect(await redis.keys(`${prefix}*`)).toEqual([])
          redis.disconnect()
        }
      })

      it("15 requests to each process as one principal: exactly 10 admitted in total, both processes refuse some", async () => {
        expect(daemons[0]!.process.pid).not.toBe(daemons[1]!.process.pid)
        const [c1, c2] = [await open(daemons[0]!.port, serviceAuth), await open(daemons[1]!.port, serviceAuth)]
        const [a1, a2] = await Promise.all([burstOf(c1, 15), burstOf(c2, 15)])
        const all = [...a1, ...a2]
        for (const a of all) {
          if (a.error === undefined) expectOk(a)
          else expectRateLimited(a)
        }
        const admitted = all.filter((a) => a.error?.code !== 429).length
        const per = [a1, a2].map((as) => as.filter((a) => a.error?.code !== 429).length)
        expect(
          admitted,
          `one limit across both processes (admitted per process: ${per.join(" + ")}); daemon logs:\n${daemons.map((d) => d.output()).join("\n")}`
        ).toBe(10)
        expect(a1.filter((a) => a.error?.code === 429).length, "process 1 refused some").toBeGreaterThan(0)
        expect(a2.filter((a) => a.error?.code === 429).length, "process 2 refused some").toBeGreaterThan(0)
        const retryAfter = expectRateLimited(all.find((a) => a.error !== undefined)!)
        expect(retryAfter, "1 request a minute: the next in at most a minute").toBeLessThanOrEqual(60)
        // And it stays shut on both (nothing refills at 1 a minute).
        expectRateLimited(await c1.call("getCapabilities", []))
        expectRateLimited(await c2.call("getCapabilities", []))
        // The bucket lives in Redis under the prefix, with an expiry.
        const keys = await redis!.keys(`${prefix}*`)
        expect(keys).toEqual([`${prefix}system:tests`])
        expect(await redis!.pttl(keys[0]!)).toBeGreaterThan(0)
      })
    })

    describe("redis unreachable (a closed port): on_store_error", () => {
      const started: Array<InProcessDaemon> = []
      const start = async (policy: "closed" | "open" | "local") => {
        const d = await startInProcess(
          securityConfig(db!, {
            auth: auth(),
            rate_limit: {
              enabled: true,
              store: "redis",
              redis_url: CLOSED_PORT_URL,
              key_prefix: `dbal-test:${uid()}:`,
              requests_per_minute: 1,
              burst: 3,
              on_store_error: policy
            }
          })
        )
        started.push(d)
        return d
      }
      afterAll(async () => {
        for (const d of started) await d.dispose()
      })
      /** Sends `n` requests one after the other, each measured. */
      const sequence = async (c: Client, n: number) => {
        const out: Array<{ answer: Answer; ms: number }> = []
        for (let i = 0; i < n; i++) {
          const { value, ms } = await timed(() => c.call("getCapabilities", []))
          out.push({ answer: value, ms })
        }
        for (const { ms } of out) expect(ms, "answered quickly").toBeLessThan(2_000)
        return out.map((o) => o.answer)
      }

      it('"closed": 503', async () => {
        const d = await start("closed")
        const answers = await sequence(await open(d.port, serviceAuth), 5)
        for (const a of answers) expect(typeof expectError(a, 503, "closed").details?.reason).toBe("string")
      })

      it('"open": requests pass beyond the burst', async () => {
        const d = await start("open")
        const answers = await sequence(await open(d.port, serviceAuth), 8)
        for (const a of answers) expectOk(a, "open")
      })

      it('"local": limited by the process-local bucket (429 after the burst)', async () => {
        const d = await start("local")
        const c = await open(d.port, serviceAuth)
        const answers = await sequence(c, 6)
        for (const a of answers.slice(0, 3)) expectOk(a, "local, within the burst")
        for (const a of answers.slice(3)) expect(expectRateLimited(a, "local, past the burst")).toBeLessThanOrEqual(60)
        // Per principal there too.
        expectOk(await c.call("getCapabilities", [], { token: OTHER_TOKEN, user_id: "other" }), "another principal")
      })
    })
  })
}
