/**
 * The README quick start: `npm start` (config/development.yaml: SQLite, a development service
 * token printed at start), isolated from the developer's data/ folder and port through the
 * DBAL_<SECTION>__<KEY> environment overrides. Then a User's life cycle over the WebSocket,
 * GET /health, and a clean SIGTERM shutdown.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client, connect, type Daemon, health, startDaemon } from "../support/daemon.js"
import { tempDir } from "../support/services.js"

describe("quick start (npm start with the development configuration)", () => {
  const dir = tempDir("quickstart")
  const dbFile = path.join(dir, "dev.sqlite")
  const auditFile = path.join(dir, "audit.log")
  let daemon: Daemon | undefined
  let client: Client | undefined
  let auth: { token: string; user_id: string } | undefined
  let exitCode: number | null | undefined

  beforeAll(async () => {
    daemon = await startDaemon([], {
      command: ["npm", "start", "--silent"],
      // npm passes SIGTERM to its `sh -c` only, which leaves the daemon running: signal the
      // whole process group, as Ctrl-C in a terminal does.
      processGroup: true,
      env: {
        DBAL_SERVER__PORT: "0",
        DBAL_DATABASE__CONNECTION__FILENAME: dbFile,
        DBAL_SECURITY__AUDIT_LOG_PATH: auditFile
      }
    })
  })

  afterAll(async () => {
    await client?.close()
    if (exitCode === undefined) await daemon?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("prints the development service token and uses the overridden database file", async () => {
    // The token line may come just after the listening line.
    const m = await daemon!.waitForOutput(/development service token "dev": (\S+)/)
    auth = { token: m[1]!, user_id: "dev" }
    expect(fs.existsSync(dbFile), "the database file of DBAL_DATABASE__CONNECTION__FILENAME exists").toBe(true)
    client = await connect(daemon!.port, auth)
  })

  it("creates, reads, updates, lists and deletes a User", async () => {
    const created = await client!.call("create", ["User", { username: "quickstart_user", email: "qs@example.com", role: "user" }])
    expect(created.error, JSON.stringify(created)).toBeUndefined()
    const user = created.result as Record<string, unknown>
    expect(user).toMatchObject({ username: "quickstart_user", email: "qs@example.com", role: "user" })
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(typeof user.createdAt).toBe("string")
    const id = user.id as string

    const read = await client!.call("read", ["User", id])
    expect(read.result, JSON.stringify(read)).toMatchObject({ id, username: "quickstart_user" })

    const updated = await client!.call("update", ["User", id, { email: "qs2@example.com" }])
    expect(updated.result, JSON.stringify(updated)).toMatchObject({ id, email: "qs2@example.com" })

    const listed = await client!.call("list", ["User", { filter: { username: "quickstart_user" } }])
    expect(listed.result, JSON.stringify(listed)).toMatchObject({ total: 1, page: 1, hasMore: false })
    const data = (listed.result as { data: Array<Record<string, unknown>> }).data
    expect(data.map((u) => u.id)).toEqual([id])
    expect(data[0]!.email).toBe("qs2@example.com")

    const deleted = await client!.call("delete", ["User", id])
    expect(deleted, JSON.stringify(deleted)).toMatchObject({ result: true })
    const gone = await client!.call("read", ["User", id])
    expect(gone.error?.code, JSON.stringify(gone)).toBe(404)
  })

  it("answers GET /health", async () => {
    const { status, body } = await health(daemon!.port)
    expect(status).toBe(200)
    expect(body.status).toBe("healthy")
    expect(typeof body.version).toBe("string")
    expect(typeof body.uptime).toBe("number")
    const connections = body.connections as { active: unknown; total: unknown }
    expect(connections.active).toBeGreaterThanOrEqual(1)
    expect(connections.total).toBeGreaterThanOrEqual(1)
    const database = body.database as { connected: unknown; latency_ms: unknown }
    expect(database.connected).toBe(true)
    expect(typeof database.latency_ms).toBe("number")
  })

  it("writes the audit log to the overridden path", () => {
    const lines = fs.readFileSync(auditFile, "utf8").trim().split("\n")
    const ops = lines.map((l) => (JSON.parse(l) as { operation: string }).operation)
    expect(ops).toEqual(expect.arrayContaining(["create", "read", "update", "list", "delete"]))
  })

  it("stops on SIGTERM (to npm's process group): every process of the group exits", async () => {
    await client?.close()
    client = undefined
    exitCode = await daemon!.stop("SIGTERM")
    expect(daemon!.alive(), "no process of the group is left running").toBe(false)
    // npm re-raises the signal its script died of, so npm itself ends "killed by SIGTERM"
    // (code null); the daemon's own exit code is checked to be 0 in the suite below.
    const signal = daemon!.process.signalCode
    expect(exitCode === 0 || signal === "SIGTERM", `npm ended with code ${exitCode}, signal ${signal}:\n${daemon!.output()}`).toBe(true)
    expect(daemon!.output()).not.toMatch(/ERROR| {4}at /)
  })
})

describe("quick start without npm (node bin/dbal-daemon.mjs, no --config)", () => {
  const dir = tempDir("quickstart-node")
  let daemon: Daemon | undefined

  afterAll(async () => {
    await daemon?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("serves with the development configuration and exits 0 on SIGTERM with a client connected", async () => {
    daemon = await startDaemon([], {
      env: {
        DBAL_SERVER__PORT: "0",
        DBAL_DATABASE__CONNECTION__FILENAME: path.join(dir, "dev.sqlite"),
        DBAL_SECURITY__AUDIT_LOG_PATH: path.join(dir, "audit.log")
      }
    })
    const m = await daemon.waitForOutput(/development service token "dev": (\S+)/)
    const client = await connect(daemon.port, { token: m[1]!, user_id: "dev" })
    const count = await client.call("count", ["User"])
    expect(count, JSON.stringify(count)).toMatchObject({ result: 0 })
    const closed = new Promise<number>((r) => client.ws.once("close", (code) => r(code)))
    const code = await daemon.stop("SIGTERM")
    expect(code, daemon.output()).toBe(0)
    expect(await closed).toBe(1001)
  })
})
