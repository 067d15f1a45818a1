/**
 * The rate limiter charges by work (issue 14, finding 4): a request takes `requestWeight` tokens
 * (1 per operation, a transaction the sum of its operations', a createMany 1 per started
 * ROWS_PER_TOKEN records), never more than a full bucket. Checked on the memory bucket with an
 * injected clock, and through the live daemon with the memory and the Redis store: with a burst
 * of 25 and a refill of one token a minute, a createMany of 1,000 records (20 tokens) leaves
 * exactly 5 requests.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeMemory } from "../../src/limits/TokenBucket.js"
import { requestWeight, ROWS_PER_TOKEN } from "../../src/rpc/Methods.js"
import { type Client, connect } from "../support/daemon.js"
import { createDatabase, SERVICE_TOKEN, serviceAuth, skipDialect, type TestDatabase } from "../support/services.js"
import { expectOk, expectRateLimited, type InProcessDaemon, securityConfig, startInProcess, uid } from "./harness.js"

describe("requestWeight", () => {
  it("is 1 per operation, a transaction's sum, and a createMany's started blocks of ROWS_PER_TOKEN records", () => {
    expect(ROWS_PER_TOKEN).toBe(50)
    expect(requestWeight("read", ["User", "x"])).toBe(1)
    expect(requestWeight("getCapabilities", [])).toBe(1)
    expect(requestWeight("createMany", ["User", []])).toBe(1)
    expect(requestWeight("createMany", ["User", Array.from({ length: 50 }, () => ({}))])).toBe(1)
    expect(requestWeight("createMany", ["User", Array.from({ length: 51 }, () => ({}))])).toBe(2)
    expect(requestWeight("createMany", ["User", Array.from({ length: 1000 }, () => ({}))])).toBe(20)
    const op = { method: "count", params: ["User"] }
    expect(requestWeight("transaction", [Array.from({ length: 100 }, () => op)])).toBe(100)
    expect(requestWeight("transaction", [[op, { method: "createMany", params: ["User", Array.from({ length: 120 }, () => ({}))] }]])).toBe(
      4
    )
    // Malformed operations still cost one each; an empty or malformed transaction costs one.
    expect(requestWeight("transaction", [[op, "junk", { method: "transaction", params: [[op, op]] }]])).toBe(3)
    expect(requestWeight("transaction", [[]])).toBe(1)
    expect(requestWeight("transaction", ["junk"])).toBe(1)
  })
})

describe("makeMemory charges the cost, at most a full bucket", () => {
  const clock = () => {
    let t = 1_000_000
    return { now: () => t, advance: (ms: number) => void (t += ms) }
  }

  it("takes cost tokens; retryAfter is the wait for all of them; a cost above burst empties a full bucket", () => {
    const c = clock()
    const m = makeMemory({ requestsPerMinute: 60, burst: 10, now: c.now })
    expect(m.check("k", true, 7)).toBeUndefined()
    expect(m.check("k", true, 4)?.retryAfter, "3 left, 4 needed: one second").toBe(1)
    expect(m.check("k", true, 3)).toBeUndefined()
    expect(m.check("k", true, 5)?.retryAfter, "none left, 5 needed").toBe(5)
    c.advance(10_000)
    // 25 > burst: admitted on a full bucket, which it empties.
    expect(m.check("k", true, 25)).toBeUndefined()
    expect(m.check("k", true, 1)).toBeDefined()
    c.advance(9_000)
    expect(m.check("k", true, 25)?.retryAfter, "9 tokens, a full bucket (10) needed").toBe(1)
  })
})

const BURST = 25

describe.skipIf(await skipDialect("sqlite"))("through the daemon: a createMany of 1,000 records takes 20 tokens", () => {
  let db: TestDatabase | undefined
  const clients: Array<Client> = []
  beforeAll(async () => {
    db = await createDatabase("sqlite")
  })
  afterAll(async () => {
    for (const c of clients) await c.close()
    await db?.drop()
  })

  const cases = [
    { store: "memory", extra: {} },
    { store: "redis", extra: { redis_url: "redis://127.0.0.1:6379", on_store_error: "closed" } }
  ] as const

  for (const { store, extra } of cases) {
    describe(`${store} store`, () => {
      let daemon: InProcessDaemon | undefined
      beforeAll(async () => {
        daemon = await startInProcess(
          securityConfig(db!, {
            auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] },
            rate_limit: {
              enabled: true,
              store,
              key_prefix: `dbal:rlw:${uid()}:`,
              requests_per_minute: 1,
              burst: BURST,
              roles: { system: { requests_per_minute: 1, burst: BURST } },
              ...extra
            }
          })
        )
      })
      afterAll(async () => {
        await daemon?.dispose()
      })

      it("leaves burst − 20 requests; a transaction of 5 operations takes 5", async () => {
        const c = await connect(daemon!.port, serviceAuth)
        clients.push(c)
        const tag = `rlw${uid()}`
        const records = Array.from({ length: 1000 }, (_, i) => ({ slug: `${tag}-${i}`, title: tag, level: 1, layout: {} }))
        expect(expectOk<number>(await c.call("createMany", ["PageView", records]), "createMany")).toBe(1000)
        // 25 − 20 = 5 tokens left: a transaction of 5 counts takes them all.
        const count = { method: "count", params: ["PageView", { title: tag }] }
        expect(expectOk<Array<number>>(await c.call("transaction", [[count, count, count, count, count]]), "transaction")).toEqual([
          1000, 1000, 1000, 1000, 1000
        ])
        expectRateLimited(await c.call("getCapabilities", []), "the request after 25 tokens")
      })
    })
  }
})
