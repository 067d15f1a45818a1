/**
 * The request bound through the whole RpcHandler, in both kinds of fiber it is run in: a request
 * fiber of `requestRuntime` (as the WebSocket server forks every frame; the bound interrupts the
 * request's own body) and an ordinary interruptible fiber (as `runPromise` callers do; the bound
 * forks a child). A request stuck past `query_timeout` must be answered 504, its stuck stage
 * interrupted, and its audit record written, in either.
 *
 * The stuck stage is the rate limiter, swapped for one that never answers: the test is about the
 * bound, not about the limiter. The other layers are the daemon's own, on SQLite.
 */
import { Effect, Layer, ManagedRuntime, Runtime } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Acl from "../../layers/Acl.js"
import * as AuditLog from "../../layers/AuditLog.js"
import * as Auth from "../../layers/Auth.js"
import * as Changes from "../../layers/Changes.js"
import * as Config from "../../layers/Config.js"
import * as Database from "../../layers/Database.js"
import * as Entities from "../../layers/Entities.js"
import * as ResultCache from "../../layers/ResultCache.js"
import * as Handler from "../../src/rpc/Handler.js"
import * as HandlerLayer from "../../layers/RpcHandler.js"
import { requestRuntime } from "../../src/query/Timeout.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { readAudit } from "../security/audit-helpers.js"
import { createDatabase, daemonConfig, serviceAuth, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { until } from "../support/wait.js"

const QUERY_TIMEOUT = 200

/** A limiter that lets the first requests through and then never answers; counts interruptions. */
const stuckLimiter = (state: { stuck: boolean; interrupted: number }) =>
  Layer.succeed(RateLimiter, {
    consume: () => (state.stuck ? Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => void state.interrupted++))) : Effect.void)
  })

describe("a request stuck past query_timeout", () => {
  let db: TestDatabase
  let dir: string
  let rt: ManagedRuntime.ManagedRuntime<Handler.RpcHandler, unknown>
  const state = { stuck: false, interrupted: 0 }
  const auditFile = () => path.join(dir, "audit.log")

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    dir = tempDir("request-timeout")
    const file = writeConfig(
      {
        ...daemonConfig(db),
        performance: { query_timeout: QUERY_TIMEOUT },
        security: { audit_log: true, audit_log_path: auditFile(), auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }] } }
      },
      dir
    )
    const base = Layer.provideMerge(Database.layer, Layer.provideMerge(Entities.layer, Config.layer(file)))
    const services = Layer.provideMerge(
      Layer.mergeAll(Auth.layer, Acl.layer, stuckLimiter(state), AuditLog.layer, ResultCache.layer),
      Changes.layer
    )
    rt = ManagedRuntime.make(Layer.provideMerge(Layer.provideMerge(HandlerLayer.layer, services), base)) as ManagedRuntime.ManagedRuntime<
      Handler.RpcHandler,
      unknown
    >
    await rt.runPromise(Handler.RpcHandler)
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const kinds = [
    { kind: "a request fiber", requestFiber: true },
    { kind: "an interruptible fiber", requestFiber: false }
  ] as const

  it.each(kinds)("answers 504, interrupts the stuck stage and audits the timeout ($kind)", async ({ requestFiber }) => {
    const handler = await rt.runPromise(Handler.RpcHandler)
    const runtime = await rt.runtime()
    const run = requestFiber ? Runtime.runPromise(requestRuntime(runtime)) : Runtime.runPromise(runtime)
    const conn = { remoteAddress: "127.0.0.1", auth: undefined }
    const requestId = `stuck-${requestFiber ? "request" : "plain"}`

    // Not stuck: an ordinary answer in the same kind of fiber.
    state.stuck = false
    const ok = JSON.parse(
      await run(handler.handle(conn, JSON.stringify({ id: "ok", method: "getCapabilities", params: [], auth: serviceAuth })))
    ) as { result?: unknown }
    expect(ok.result).toBeDefined()

    state.stuck = true
    const before = state.interrupted
    const started = performance.now()
    const answer = JSON.parse(
      await run(handler.handle(conn, JSON.stringify({ id: requestId, method: "list", params: ["PageView"], auth: serviceAuth })))
    ) as {
      id: string
      error?: { code: number }
    }
    const elapsed = performance.now() - started
    expect(answer.id).toBe(requestId)
    expect(answer.error?.code).toBe(504)
    expect(elapsed).toBeGreaterThanOrEqual(QUERY_TIMEOUT - 1)
    expect(elapsed).toBeLessThan(QUERY_TIMEOUT + 1000)
    expect(state.interrupted).toBe(before + 1)

    // The record of a read is written without waiting for it: poll with a bound.
    const record = await until(
      `the audit record of ${requestId}`,
      () => readAudit(auditFile()).find((r) => r.requestId === requestId),
      5000
    )
    expect(record).toMatchObject({ operation: "list", success: false, errorCode: 504 })
  })
})
