/**
 * The probes: GET /health has exactly the specification's keys (status, version, uptime,
 * connections.active/total, database.connected/latency_ms) with values that fit; /livez answers
 * 200; /readyz answers 200 once the daemon is ready. (Database down and draining are covered
 * elsewhere.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { version } from "../../src/version.js"
import { type Client, connect } from "../support/daemon.js"
import { serviceAuth } from "../support/services.js"
import { get, type InProcessDaemon, startInProcess } from "./support.js"

describe("health probes", () => {
  let daemon: InProcessDaemon | undefined
  let client: Client | undefined

  beforeAll(async () => {
    daemon = await startInProcess("probes")
  })

  afterAll(async () => {
    await client?.close()
    await daemon?.dispose()
  })

  it("GET /health has exactly the specification's keys", async () => {
    client = await connect(daemon!.port, serviceAuth)
    const res = await get(daemon!.port, "/health")
    expect(res.status).toBe(200)
    expect(res.contentType).toContain("application/json")
    const body = JSON.parse(res.text) as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(["connections", "database", "status", "uptime", "version"])
    expect(Object.keys(body.connections as object).sort()).toEqual(["active", "total"])
    expect(Object.keys(body.database as object).sort()).toEqual(["connected", "latency_ms"])
    expect(body.status).toBe("healthy")
    expect(body.version).toBe(version)
    expect(Number.isInteger(body.uptime) && (body.uptime as number) >= 0).toBe(true)
    expect(body.connections).toEqual({ active: 1, total: 1 })
    const db = body.database as { connected: unknown; latency_ms: unknown }
    expect(db.connected).toBe(true)
    expect(typeof db.latency_ms === "number" && db.latency_ms >= 0 && db.latency_ms < 2000).toBe(true)
  })

  it("counts connections: active goes down on close, total stays", async () => {
    await client!.close()
    client = undefined
    // The server sees the close after the client does: wait for it, bounded.
    const deadline = Date.now() + 5000
    let body: { connections: { active: number; total: number } } | undefined
    while (Date.now() < deadline) {
      body = JSON.parse((await get(daemon!.port, "/health")).text) as typeof body
      if (body!.connections.active === 0) break
    }
    expect(body!.connections).toEqual({ active: 0, total: 1 })
  })

  it("GET /livez answers 200", async () => {
    const res = await get(daemon!.port, "/livez")
    expect(res.status).toBe(200)
    expect(JSON.parse(res.text)).toEqual({ status: "alive" })
  })

  it("GET /readyz answers 200 when ready", async () => {
    const res = await get(daemon!.port, "/readyz")
    expect(res.status).toBe(200)
    expect(JSON.parse(res.text)).toEqual({ status: "ready" })
  })

  it("other paths and methods are refused", async () => {
    expect((await get(daemon!.port, "/nope")).status).toBe(404)
    const post = await fetch(`http://127.0.0.1:${daemon!.port}/health`, { method: "POST", signal: AbortSignal.timeout(10_000) })
    expect(post.status).toBe(405)
  })
})
