/**
 * Compatibility with metabuilder's own DBAL client: a client that behaves on the wire exactly as
 * its WebSocket bridge does (test/support/metabuilder-bridge.mjs: string ids from its own
 * generator, no `auth` in any frame, the credential in the endpoint's `?token=`, the global
 * WebSocket) calls every method of the bridge against the daemon process, on SQLite and
 * PostgreSQL, and gets the daemon's answers as the bridge hands them to the application.
 *
 * Node 20 has no global WebSocket unless started with --experimental-websocket, so the bridge
 * runs in a child Node process with that flag (Node's own WebSocket, as in a browser or Node 22),
 * not with `ws`.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as path from "node:path"
import { createInterface } from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, SERVICE_TOKEN, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"

type Rec = Record<string, unknown>
type Outcome =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: { message: string; code: number; details?: Rec } }

interface Bridge {
  readonly call: (method: string, ...args: ReadonlyArray<unknown>) => Promise<Outcome>
  /** Like `call`, failing the test unless the call succeeded. */
  readonly ok: <T = unknown>(method: string, ...args: ReadonlyArray<unknown>) => Promise<T>
  readonly stop: () => Promise<void>
  readonly stderr: () => string
}

const startBridge = (endpoint: string): Bridge => {
  const flags = typeof (globalThis as { WebSocket?: unknown }).WebSocket === "function" ? [] : ["--experimental-websocket"]
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    [...flags, "--no-warnings", path.join(root, "test", "support", "metabuilder-bridge.mjs"), endpoint],
    {
      stdio: ["pipe", "pipe", "pipe"]
    }
  )
  let err = ""
  child.stderr.on("data", (b: Buffer) => (err += b.toString()))
  const waiting = new Map<number, (o: Outcome) => void>()
  createInterface({ input: child.stdout }).on("line", (line) => {
    const o = JSON.parse(line) as Outcome & { seq: number }
    waiting.get(o.seq)?.(o)
    waiting.delete(o.seq)
  })
  let seq = 0
  const call = (method: string, ...args: ReadonlyArray<unknown>) =>
    new Promise<Outcome>((resolve, reject) => {
      const s = ++seq
      const timer = setTimeout(() => reject(new Error(`the bridge did not answer ${method} within 35 s; stderr: ${err}`)), 35_000)
      waiting.set(s, (o) => {
        clearTimeout(timer)
        resolve(o)
      })
      child.stdin.write(`${JSON.stringify({ seq: s, method, args: args.map((a) => (a === undefined ? "__undefined__" : a)) })}\n`)
    })
  return {
    call,
    ok: async <T>(method: string, ...args: ReadonlyArray<unknown>) => {
      const o = await call(method, ...args)
      expect(o, `${method} through the bridge: ${JSON.stringify(o)}`).toMatchObject({ ok: true })
      return (o as { value: T }).value
    },
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null) return r()
        child.once("exit", () => r())
        child.stdin.end()
      }),
    stderr: () => err
  }
}

for (const dialect of ["sqlite", "postgresql"] as const) {
  describe.skipIf(await skipDialect(dialect))(`metabuilder's bridge against the daemon on ${dialect}`, () => {
    let db: TestDatabase | undefined
    let daemon: Daemon | undefined
    let bridge: Bridge
    const suffix = Math.random().toString(36).slice(2, 8)
    const name = (n: string) => `mb_${n}_${suffix}`

    beforeAll(async () => {
      db = await createDatabase(dialect)
      const base = daemonConfig(db)
      daemon = await startDaemon(
        [
          `--config=${writeConfig({
            ...base,
            security: { ...(base.security as Rec), auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], query_token: true } }
          })}`
        ],
        { timeoutMs: 90_000 }
      )
      bridge = startBridge(`ws://127.0.0.1:${daemon.port}/?token=${SERVICE_TOKEN}`)
    })
    afterAll(async () => {
      await bridge?.stop()
      await daemon?.stop()
      await db?.drop()
    })

    it("getCapabilities", async () => {
      const caps = await bridge.ok<Rec>("getCapabilities")
      expect(caps.adapter ?? caps.dialect).toBeDefined()
      expect(caps.methods).toEqual(
        expect.arrayContaining([
          "create",
          "read",
          "update",
          "delete",
          "list",
          "findFirst",
          "findByField",
          "upsert",
          "updateByField",
          "deleteByField",
          "deleteMany",
          "createMany",
          "updateMany"
        ])
      )
    })

    it("create, read, update, list (with and without options), findFirst, findByField, updateByField, deleteByField, delete", async () => {
      const ada = await bridge.ok<Rec>("create", "User", { username: name("ada"), email: `${name("ada")}@example.com` })
      expect(typeof ada.id).toBe("string")
      expect(ada.username).toBe(name("ada"))
      expect((await bridge.ok<Rec>("read", "User", ada.id)).username).toBe(name("ada"))
      expect((await bridge.ok<Rec>("update", "User", ada.id, { email: `${name("ada2")}@example.com` })).email).toBe(
        `${name("ada2")}@example.com`
      )

      const listed = await bridge.ok<{ data: Array<Rec>; total: number }>("list", "User", { filter: { username: name("ada") }, limit: 10 })
      expect(listed.data.map((u) => u.id)).toEqual([ada.id])
      expect(listed.total).toBe(1)
      // The bridge sends an omitted `options` as null.
      const all = await bridge.ok<{ data: Array<Rec> }>("list", "User", undefined)
      expect(all.data.some((u) => u.id === ada.id)).toBe(true)

      expect((await bridge.ok<Rec>("findFirst", "User", { username: name("ada") })).id).toBe(ada.id)
      expect(await bridge.ok("findFirst", "User", { username: name("nobody") })).toBeNull()
      expect((await bridge.ok<Rec>("findByField", "User", "username", name("ada"))).id).toBe(ada.id)
      expect(await bridge.ok("findByField", "User", "username", name("nobody"))).toBeNull()

      const updated = await bridge.ok<Rec>("updateByField", "User", "username", name("ada"), { email: `${name("ada3")}@example.com` })
      expect(updated.email).toBe(`${name("ada3")}@example.com`)

      const bob = await bridge.ok<Rec>("create", "User", { username: name("bob"), email: `${name("bob")}@example.com` })
      expect(await bridge.ok("deleteByField", "User", "username", name("bob"))).toBe(true)
      expect(await bridge.ok("findByField", "User", "username", name("bob"))).toBeNull()
      expect(bob.id).not.toBe(ada.id)

      expect(await bridge.ok("delete", "User", ada.id)).toBe(true)
      // The daemon answers a missing record with 404, which the bridge rejects with a DBALError.
      const gone = await bridge.call("read", "User", ada.id)
      expect(gone).toMatchObject({ ok: false, error: { code: 404 } })
    })

    it("createMany, updateMany, deleteMany: numbers", async () => {
      const many = [1, 2, 3].map((i) => ({ username: name(`many${i}`), email: `${name(`many${i}`)}@example.com`, role: "user" }))
      expect(await bridge.ok("createMany", "User", many)).toBe(3)
      const filter = { username: { startsWith: name("many").slice(0, -suffix.length - 1) }, email: { endsWith: `${suffix}@example.com` } }
      expect(await bridge.ok("updateMany", "User", filter, { role: "admin" })).toBe(3)
      expect((await bridge.ok<{ total: number }>("list", "User", { filter: { ...filter, role: "admin" } })).total).toBe(3)
      expect(await bridge.ok("deleteMany", "User", filter)).toBe(3)
      expect((await bridge.ok<{ total: number }>("list", "User", { filter })).total).toBe(0)
    })

    it("errors reach the application as DBALError {code, message, details}", async () => {
      const e = await bridge.call("create", "User", { username: name("x") })
      expect(e).toMatchObject({ ok: false, error: { code: 422 } })
      expect(typeof (e as { error: { message: string } }).error.message).toBe("string")
      expect(bridge.stderr()).not.toMatch(/Invalid RPC response shape|No pending request/)
    })

    it("upsert in the bridge's filter form [entity, {uniqueField: value}, createData, updateData]", async () => {
      const filter = { username: name("carol") }
      const created = await bridge.ok<Rec>(
        "upsert",
        "User",
        filter,
        { username: name("carol"), email: `${name("carol")}@example.com` },
        { email: `${name("carol2")}@example.com` }
      )
      expect(created.email).toBe(`${name("carol")}@example.com`)
      const updated = await bridge.ok<Rec>(
        "upsert",
        "User",
        filter,
        { username: name("carol"), email: `${name("carol")}@example.com` },
        { email: `${name("carol2")}@example.com` }
      )
      expect(updated.id).toBe(created.id)
      expect(updated.email).toBe(`${name("carol2")}@example.com`)
    })
  })
}
