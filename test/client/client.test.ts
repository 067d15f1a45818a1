/**
 * The client in both modes: the shared suite (suite.ts) in process on SQLite and against a real
 * daemon process on SQLite; then what only the WebSocket mode has — dropped connections,
 * reconnects, timeouts — against a daemon killed and restarted on a fixed port, and against a
 * fake server that never answers.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { WebSocketServer } from "ws"
import { type ConnectionState, DBALClient, DbalError } from "dbal-daemon/client"
import { type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, SERVICE_TOKEN, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { untilTrue } from "../support/wait.js"
import { clientSuite, rejection } from "./suite.js"

const auth = { token: SERVICE_TOKEN, userId: "tests" }

const freePort = (): Promise<number> =>
  new Promise((ok, fail) => {
    const s = net.createServer()
    s.once("error", fail)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => ok(port))
    })
  })

/** `p`, or a failure naming `what` after `ms` (a bound on waiting, never a synchronization). */
const within = <A>(ms: number, what: string, p: Promise<A>): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(new Error(`${what}: still pending after ${ms} ms`)), ms)
    })
  ])
}

/** Resolves when the client reaches `state` (bounded). */
const reaches = (client: DBALClient, state: ConnectionState, ms = 15_000): Promise<void> =>
  within(
    ms,
    `connection state ${state}`,
    new Promise<void>((ok) => {
      if (client.connectionState === state) return ok()
      const off = client.onConnectionStateChange((s) => {
        if (s === state) {
          off()
          ok()
        }
      })
    })
  )

describe("development mode (in process, SQLite)", () => {
  const dir = tempDir("client-dev")
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  clientSuite(() => new DBALClient({ mode: "development", adapter: "sqlite", database: path.join(dir, "dev.sqlite") }))

  it("fails with NotConnected once closed, and when the database cannot be opened", async () => {
    const c = new DBALClient({ mode: "development", adapter: "sqlite", database: path.join(dir, "closed.sqlite") })
    expect(await c.users.count()).toBe(0)
    await c.close()
    expect(c.connectionState).toBe("closed")
    const e = await rejection(c.users.count())
    expect(e.kind).toBe("NotConnected")

    const broken = new DBALClient({
      mode: "development",
      adapter: "sqlite",
      database: path.join(dir, "no", "such", "\u0000dir", "x.sqlite")
    })
    const b = await rejection(broken.users.count())
    expect(b.kind).toBe("NotConnected")
    await broken.close()
  })
})

describe("production mode (WebSocket, real daemon on SQLite)", () => {
  let db: TestDatabase
  let daemon: Daemon | undefined

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`])
  })
  afterAll(async () => {
    await daemon?.stop()
    await db?.drop()
  })

  clientSuite(() => new DBALClient({ mode: "production", endpoint: `ws://127.0.0.1:${daemon!.port}`, auth }))

  it("answers 401 for a token the daemon does not know, without reconnecting in a loop", async () => {
    const c = new DBALClient({
      mode: "production",
      endpoint: `ws://127.0.0.1:${daemon!.port}`,
      auth: { token: "wrong-token-0123456789abcdef" }
    })
    try {
      const e = await rejection(c.users.count())
      expect(e.kind).toBe("Server")
      expect(e.code).toBe(401)
      expect(e.method).toBe("count")
      await reaches(c, "idle")
    } finally {
      await c.close()
    }
  })
})

describe("production mode: dropped connections and reconnects", () => {
  let db: TestDatabase
  let port: number
  let configFile: string
  const daemons: Array<Daemon> = []
  const start = async () => {
    const d = await startDaemon([`--config=${configFile}`])
    daemons.push(d)
    expect(d.port).toBe(port)
    return d
  }

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    port = await freePort()
    configFile = writeConfig(daemonConfig(db, { server: { host: "127.0.0.1", port } }))
  })
  afterAll(async () => {
    for (const d of daemons) await d.stop("SIGKILL", 5000)
    await db?.drop()
  })

  it("fails every request in flight with ConnectionLost when the daemon is killed, then reconnects to its restart on the same port", async () => {
    let daemon = await start()
    const client = new DBALClient({
      mode: "production",
      endpoint: `ws://127.0.0.1:${port}`,
      auth,
      // Far above the bound below: what settles the requests is the drop, not their timeout.
      requestTimeoutMs: 60_000,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 }
    })
    const states: Array<ConnectionState> = []
    client.onConnectionStateChange((s) => states.push(s))
    try {
      await client.connect()
      const tag = Date.now().toString(36)
      const outcomes = Array.from({ length: 300 }, (_, i) =>
        client.users.create({ username: `k_${tag}_${i}`, email: `k_${tag}_${i}@example.com` }).then(
          () => "ok" as const,
          (e: unknown) => e
        )
      )
      // Kill as soon as the first answer is in: the others are in flight.
      await within(15_000, "first answer", Promise.race(outcomes))
      const killed = Date.now()
      await daemon.stop("SIGKILL")
      const settled = await within(10_000, "requests in flight when the daemon died", Promise.all(outcomes))
      expect(Date.now() - killed).toBeLessThan(10_000)
      const failures = settled.filter((o) => o !== "ok")
      expect(failures.length).toBeGreaterThan(0)
      for (const f of failures) {
        expect(f).toBeInstanceOf(DbalError)
        expect((f as DbalError).kind).toBe("ConnectionLost")
        expect((f as DbalError).code).toBe(503)
        expect((f as DbalError).method).toBe("create")
      }
      await reaches(client, "reconnecting")

      // A request made while the daemon is down waits (unsent) for the next connection.
      const waiting = client.users.count({ username: { startsWith: `k_${tag}_` } }, { timeoutMs: 30_000 })
      daemon = await start()
      const n = await within(30_000, "request queued during the outage", waiting)
      // Every answered create is there; a lost one may or may not have run.
      expect(n).toBeGreaterThanOrEqual(settled.length - failures.length)
      expect(n).toBeLessThanOrEqual(settled.length)
      expect(client.connectionState).toBe("ready")
      const after = await client.users.create({ username: `after_${tag}`, email: `after_${tag}@example.com` })
      expect(await client.users.read(after.id)).toEqual(after)
      expect(states).toEqual(expect.arrayContaining(["connecting", "ready", "reconnecting"]))
      expect(states.lastIndexOf("ready")).toBeGreaterThan(states.indexOf("reconnecting"))

      // close() stops reconnecting: the daemon goes away and the client stays closed.
      await client.close()
      expect(client.connectionState).toBe("closed")
      await daemon.stop("SIGKILL")
      expect(client.connectionState).toBe("closed")
      expect((await rejection(client.users.count())).kind).toBe("NotConnected")
    } finally {
      await client.close()
    }
  })
})

describe("production mode: timeouts and unreachable daemons", () => {
  let server: WebSocketServer
  let serverPort: number
  let connections = 0
  const received: Array<string> = []

  beforeAll(async () => {
    // A daemon that accepts the handshake and then never answers.
    server = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    await new Promise<void>((ok) => server.once("listening", () => ok()))
    serverPort = (server.address() as net.AddressInfo).port
    server.on("connection", (ws) => {
      connections++
      ws.on("message", (data) => {
        const frame = JSON.parse(String(data)) as { id: unknown; method: string }
        received.push(frame.method)
        if (frame.method === "authenticate")
          ws.send(JSON.stringify({ id: frame.id, result: { authenticated: true, userId: "tests", role: "system" } }))
      })
    })
  })
  afterAll(async () => {
    for (const ws of server.clients) ws.terminate()
    await new Promise<void>((ok) => server.close(() => ok()))
  })

  it("fails a request that gets no answer with Timeout (client default and per call)", async () => {
    const c = new DBALClient({ mode: "production", endpoint: `ws://127.0.0.1:${serverPort}`, auth, requestTimeoutMs: 150 })
    try {
      // Connected first: this test is about a request that gets no answer, not about connecting
      // (which, on a loaded machine, can itself take longer than 150 ms).
      await within(5_000, "connect", c.connect())
      const started = Date.now()
      const e = await within(5_000, "stalled request", rejection(c.users.count()))
      expect(e.kind).toBe("Timeout")
      expect(e.code).toBe(504)
      expect(e.details).toEqual({ timeoutMs: 150 })
      expect(Date.now() - started).toBeGreaterThanOrEqual(140)

      const quick = await within(5_000, "stalled request", rejection(c.pages.list({ limit: 5 }, { timeoutMs: 5 })))
      expect(quick.kind).toBe("Timeout")
      expect(quick.details).toEqual({ timeoutMs: 5 })
      // The client gave up after 5 ms, which may be before its frame reached the server.
      await untilTrue("the stalled list reaches the server", () => received.length >= 3, 5_000)
      expect(received).toEqual(["authenticate", "count", "list"])
      expect(c.connectionState).toBe("ready")
    } finally {
      await c.close()
    }
  })

  it("reconnects after the server drops the connection, and close() stops it", async () => {
    const c = new DBALClient({
      mode: "production",
      endpoint: `ws://127.0.0.1:${serverPort}`,
      auth,
      requestTimeoutMs: 5_000,
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 }
    })
    try {
      await c.connect()
      const before = connections
      const pending = c.users.count()
      for (const ws of server.clients) ws.terminate()
      const lost = await within(5_000, "request on a dropped connection", rejection(pending))
      expect(lost.kind).toBe("ConnectionLost")
      await reaches(c, "reconnecting", 5_000)
      await reaches(c, "ready", 5_000)
      expect(connections).toBe(before + 1)

      await c.close()
      for (const ws of server.clients) ws.terminate()
      expect(c.connectionState).toBe("closed")
      expect((await rejection(c.users.count())).kind).toBe("NotConnected")
    } finally {
      await c.close()
    }
  })

  it("fails with NotConnected when no daemon listens", async () => {
    const port = await freePort()
    const c = new DBALClient({
      mode: "production",
      endpoint: `ws://127.0.0.1:${port}`,
      auth,
      requestTimeoutMs: 300,
      reconnect: { initialDelayMs: 20, maxDelayMs: 50 }
    })
    try {
      const e = await within(5_000, "request without a daemon", rejection(c.users.count()))
      expect(e.kind).toBe("NotConnected")
      expect(e.code).toBe(503)
      expect(String(e.details?.reason)).toMatch(/ECONNREFUSED|no connection/)
    } finally {
      await c.close()
    }
    expect(c.connectionState).toBe("closed")
  })
})
