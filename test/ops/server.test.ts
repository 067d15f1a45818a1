/**
 * Connection limits and graceful shutdown of the WebSocket server, against the real daemon
 * process: total and per-address connection limits, idle timeout, the heartbeat that drops a
 * peer which stops answering pings, the bound on a slow reader's unsent bytes, and SIGTERM with a
 * request in flight (readyz 503 while draining, the request finishes, sockets close with 1001,
 * the audit record is on disk, exit code 0).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { untilTrue } from "../support/wait.js"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, PG, serviceAuth, skipDialect, type TestDatabase, tempDir, writeConfig } from "../support/services.js"

const get = async (port: number, p: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(5000) })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** Opens a WebSocket; resolves with it, or with the HTTP status that refused the upgrade. */
const open = (port: number, options: WebSocket.ClientOptions = {}) =>
  new Promise<{ ws?: WebSocket; refused?: number }>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, options)
    ws.once("open", () => resolve({ ws }))
    ws.once("unexpected-response", (_req, res) => resolve({ refused: res.statusCode ?? 0 }))
    ws.once("error", reject)
  })

const closed = (ws: WebSocket, ms: number) =>
  new Promise<{ code: number; reason: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("socket not closed in time")), ms)
    ws.once("close", (code, reason) => {
      clearTimeout(t)
      resolve({ code, reason: reason.toString() })
    })
  })

describe("connection limits", () => {
  let db: TestDatabase
  let daemon: Daemon
  beforeAll(async () => {
    db = await createDatabase("sqlite")
    daemon = await startDaemon([
      `--config=${writeConfig(
        daemonConfig(db, {
          server: {
            host: "127.0.0.1",
            port: 0,
            max_connections: 4,
            max_connections_per_address: 3,
            idle_timeout: 3,
            heartbeat_interval: 1,
            max_buffered_bytes: 65536
          }
        })
      )}`
    ])
  })
  afterAll(async () => {
    await daemon?.stop()
    await db?.drop()
  })

  it("refuses connections past the per-address limit with 429 and frees the slot on close", async () => {
    const held = await Promise.all([open(daemon.port), open(daemon.port), open(daemon.port)])
    expect(held.every((h) => h.ws !== undefined)).toBe(true)
    expect((await open(daemon.port)).refused).toBe(429)
    const first = held[0]!.ws!
    const gone = closed(first, 5000)
    first.close()
    await gone
    await untilTrue(
      "the slot to be freed",
      async () => ((await get(daemon.port, "/health")).body.connections as { active: number }).active === 2,
      5000
    )
    const again = await open(daemon.port)
    expect(again.ws).toBeDefined()
    for (const h of [...held.slice(1), again]) h.ws?.terminate()
  })

  it("closes an idle connection with 1000 'idle timeout'", async () => {
    const { ws } = await open(daemon.port)
    const t0 = Date.now()
    const c = await closed(ws!, 8000)
    expect(c).toEqual({ code: 1000, reason: "idle timeout" })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2500)
  })

  it("drops a peer that stops answering pings", async () => {
    // autoPong off: the server's pings go unanswered, as with a dead peer.
    const { ws } = await open(daemon.port, { autoPong: false })
    const c = await closed(ws!, 8000)
    // terminate() gives no close frame: the client sees an abnormal closure.
    expect(c.code).toBe(1006)
  })

  it("stays healthy after all of the above", async () => {
    const h = await get(daemon.port, "/health")
    expect(h.status).toBe(200)
    expect(h.body.status).toBe("healthy")
  })
})

describe("slow readers", () => {
  let db: TestDatabase
  let slow: Daemon
  beforeAll(async () => {
    db = await createDatabase("sqlite")
    // No heartbeat and no idle timeout: only the unsent-bytes bound can drop the reader.
    slow = await startDaemon([
      `--config=${writeConfig(daemonConfig(db, { server: { host: "127.0.0.1", port: 0, idle_timeout: 0, heartbeat_interval: 0, max_buffered_bytes: 65536 } }))}`
    ])
  })
  afterAll(async () => {
    await slow?.stop()
    await db?.drop()
  })

  it("drops a slow reader instead of buffering its answers without limit", async () => {
    const c = await connect(slow.port, serviceAuth)
    const owner = (await c.call("create", ["User", { username: `slow${Date.now()}`, email: `slow${Date.now()}@example.com` }])).result as {
      id: string
    }
    const script = await c.call("create", ["LuaScript", { name: `big-${Date.now()}`, code: "x".repeat(40_000), createdBy: owner.id }])
    expect(script.error).toBeUndefined()
    // Stop reading: the answers pile up in the server's send buffer.
    const socket = (c.ws as unknown as { _socket: import("node:net").Socket })._socket
    socket.pause()
    const gone = new Promise<void>((r) => c.ws.once("close", () => r()))
    for (let i = 0; i < 200; i++)
      c.ws.send(JSON.stringify({ id: i, method: "list", params: ["LuaScript", { limit: 100 }], auth: serviceAuth }))
    await untilTrue(
      "the slow reader to be dropped",
      async () => ((await get(slow.port, "/health")).body.connections as { active: number }).active === 0,
      15_000
    )
    socket.resume()
    await gone
  })

  it("keeps a reader that reads", async () => {
    const c = await connect(slow.port, serviceAuth)
    const answers = await Promise.all(Array.from({ length: 50 }, () => c.call("list", ["LuaScript", { limit: 100 }])))
    expect(answers.every((a) => a.error === undefined)).toBe(true)
    await c.close()
  })
})

describe.skipIf(await skipDialect("postgresql"))("graceful shutdown", () => {
  let db: TestDatabase
  const dir = tempDir("shutdown")
  beforeAll(async () => {
    db = await createDatabase("postgresql")
  })
  afterAll(async () => {
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("drains: readyz 503, the in-flight request finishes, sockets close with 1001, audit flushed, exit 0", async () => {
    const audit = path.join(dir, "audit.log")
    const base = daemonConfig(db)
    const daemon = await startDaemon([
      `--config=${writeConfig({ ...base, server: { host: "127.0.0.1", port: 0, shutdown_grace: 20 }, security: { ...(base.security as object), audit_log: true, audit_log_path: audit } })}`
    ])
    const c = await connect(daemon.port, serviceAuth)
    const user = (await c.call("create", ["User", { username: "drain", email: "drain@example.com" }])).result as { id: string }
    expect((await get(daemon.port, "/readyz")).status).toBe(200)

    // Hold the row's lock from outside, so that the daemon's update waits in flight.
    const conn = (db.databaseConfig.connection as { database: string }).database
    const locker = new pg.Client({ ...PG, database: conn })
    await locker.connect()
    await locker.query("BEGIN")
    await locker.query("SELECT id FROM users WHERE id = $1 FOR UPDATE", [user.id])
    const pending = c.call("update", ["User", user.id, { role: "admin" }])
    await untilTrue(
      "the update to wait on the lock",
      async () => {
        const r = await locker.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1", [
          conn
        ])
        return (r.rows[0] as { n: number }).n > 0
      },
      10_000
    )

    const socketClosed = closed(c.ws, 30_000)
    const exited = daemon.stop("SIGTERM")
    await untilTrue(
      "readyz to answer 503",
      async () => (await get(daemon.port, "/readyz").catch(() => ({ status: 0 }))).status === 503,
      10_000
    )
    expect((await open(daemon.port)).refused).toBe(503)

    await locker.query("ROLLBACK")
    await locker.end()
    const answer = await pending
    expect(answer.error).toBeUndefined()
    expect(answer.result).toMatchObject({ id: user.id, role: "admin" })
    expect((await socketClosed).code).toBe(1001)
    expect(await exited).toBe(0)
    const lines = fs
      .readFileSync(audit, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { operation: string; success: boolean; recordIds?: Array<string> })
    expect(lines.some((l) => l.operation === "update" && l.success && l.recordIds?.includes(user.id))).toBe(true)
  })
})
