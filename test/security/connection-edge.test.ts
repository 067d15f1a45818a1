/**
 * What the daemon learns when a connection is opened, against the real daemon process over real
 * sockets: the client's address behind trusted proxies (X-Forwarded-For, PROXY protocol v1/v2,
 * spoofing from untrusted peers ignored or refused) as audit records and limits see it, and
 * credentials presented at the handshake (Authorization header, `dbal.bearer.` subprotocol, `token`
 * query parameter) checked on every frame afterwards.
 *
 * 127.0.0.0/8 is all loopback on Linux: a client bound to 127.0.0.2 is a second peer address.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { buildV1, buildV2 } from "../../src/net/ProxyProtocol.js"
import { type Answer, type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, SERVICE_TOKEN, serviceAuth, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { until } from "../support/wait.js"
import { createSession, createUser, inSeconds } from "./harness.js"

type Rec = Record<string, unknown>

interface Opened {
  readonly ws: WebSocket
  readonly call: (method: string, params?: ReadonlyArray<unknown>, auth?: Rec) => Promise<Answer>
  readonly close: () => Promise<void>
}

interface OpenOptions {
  readonly localAddress?: string
  readonly headers?: Record<string, string>
  readonly protocols?: ReadonlyArray<string>
  readonly query?: string
  /** Bytes written on the TCP connection before the HTTP request (a PROXY header). */
  readonly preamble?: Buffer
}

let seq = 0
/** Opens a WebSocket; resolves with the connection, or with the HTTP status the upgrade was refused with. */
const open = (port: number, o: OpenOptions = {}): Promise<Opened | { readonly refused: number }> =>
  new Promise((resolve, reject) => {
    const url = `ws://127.0.0.1:${port}/${o.query === undefined ? "" : `?${o.query}`}`
    const ws = new WebSocket(url, o.protocols === undefined ? [] : [...o.protocols], {
      headers: o.headers ?? {},
      ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }),
      ...(o.preamble === undefined
        ? {}
        : {
            createConnection: (opts: net.NetConnectOpts) => {
              const socket = net.connect({
                ...opts,
                host: "127.0.0.1",
                port,
                ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress })
              } as net.NetConnectOpts)
              socket.write(o.preamble!)
              return socket
            }
          })
    } as WebSocket.ClientOptions)
    const pending = new Map<string, (a: Answer) => void>()
    ws.on("message", (d) => {
      const a = JSON.parse(String(d)) as Answer
      pending.get(String(a.id))?.(a)
      pending.delete(String(a.id))
    })
    ws.once("unexpected-response", (_req, res) => {
      resolve({ refused: res.statusCode ?? 0 })
      ws.terminate()
    })
    ws.once("error", (e) => reject(e))
    ws.once("open", () =>
      resolve({
        ws,
        call: (method, params = [], auth) =>
          new Promise((ok) => {
            const id = `e${++seq}`
            pending.set(id, ok)
            ws.send(JSON.stringify({ id, method, params, ...(auth === undefined ? {} : { auth }) }))
          }),
        close: () =>
          new Promise((r) => {
            if (ws.readyState === ws.CLOSED) return r()
            ws.once("close", () => r())
            ws.close()
          })
      })
    )
  })

const opened = async (port: number, o: OpenOptions = {}): Promise<Opened> => {
  const c = await open(port, o)
  if ("refused" in c) throw new Error(`upgrade refused with ${c.refused}`)
  return c
}
const refusedWith = async (port: number, o: OpenOptions = {}): Promise<number | "open"> => {
  const c = await open(port, o).catch((e: Error) => ({ refused: -1, error: e }))
  if ("refused" in c) return c.refused
  await c.close()
  return "open"
}

const auditRecords = (file: string): Array<Rec> =>
  fs.existsSync(file)
    ? fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Rec)
    : []

/** The audit record of request `id` (waits, bounded, for the batch to be written). */
const auditOf = (file: string, id: string): Promise<Rec> =>
  until(`the audit record of ${id}`, () => auditRecords(file).find((r) => r.requestId === id))

/** Makes a request and returns the address its audit record names. */
const addressSeen = async (c: Opened, file: string): Promise<unknown> => {
  const a = await c.call("count", ["User"], serviceAuth)
  expect(a.error, JSON.stringify(a)).toBeUndefined()
  const id = String(a.id)
  return (await auditOf(file, id)).remoteAddress
}

const start = async (db: TestDatabase, server: Rec, auth: Rec = {}, extra: Rec = {}) => {
  const dir = tempDir("edge")
  const auditFile = path.join(dir, "audit", "audit.log")
  const base = daemonConfig(db)
  const daemon = await startDaemon(
    [
      `--config=${writeConfig(
        {
          ...base,
          server: { host: "127.0.0.1", port: 0, ...server },
          security: {
            ...(base.security as Rec),
            audit_log: true,
            audit_log_path: auditFile,
            auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], ...auth }
          },
          ...extra
        },
        dir
      )}`
    ],
    { timeoutMs: 90_000 }
  )
  return { daemon, auditFile }
}

let db: TestDatabase | undefined
const daemons: Array<Daemon> = []
const conns: Array<Opened> = []
const keep = (c: Opened) => {
  conns.push(c)
  return c
}

beforeAll(async () => {
  db = await createDatabase("sqlite")
})
afterAll(async () => {
  for (const c of conns) await c.close()
  for (const d of daemons) await d.stop()
  await db?.drop()
})

describe("trusted proxies: X-Forwarded-For", () => {
  let port = 0
  let audit = ""
  beforeAll(async () => {
    const d = await start(
      db!,
      { trusted_proxies: ["127.0.0.2", "127.0.0.3/32"], max_connections_per_address: 2 },
      { failed_auth: { burst: 2, per_minute: 1 } }
    )
    daemons.push(d.daemon)
    port = d.daemon.port
    audit = d.auditFile
  })

  it("from an untrusted peer X-Forwarded-For is ignored: the peer's address is recorded", async () => {
    const c = keep(await opened(port, { localAddress: "127.0.0.1", headers: { "X-Forwarded-For": "203.0.113.7" } }))
    expect(await addressSeen(c, audit)).toBe("127.0.0.1")
  })

  it("from a trusted peer the right-most untrusted hop is the client, across several trusted hops", async () => {
    const one = keep(await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "198.51.100.9" } }))
    expect(await addressSeen(one, audit)).toBe("198.51.100.9")
    // 6.6.6.6 was written by the client itself; 127.0.0.3 is a second trusted proxy.
    const hops = keep(
      await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "6.6.6.6, 198.51.100.10, 127.0.0.3" } })
    )
    expect(await addressSeen(hops, audit)).toBe("198.51.100.10")
    const ports = keep(
      await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "[2001:db8::5]:4711, 127.0.0.3:80" } })
    )
    expect(await addressSeen(ports, audit)).toBe("2001:db8::5")
    // Garbage where a trusted proxy wrote: the walk stops at that proxy.
    const garbage = keep(await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "1.2.3.4, not-an-address" } }))
    expect(await addressSeen(garbage, audit)).toBe("127.0.0.2")
  })

  it("max_connections_per_address counts resolved addresses: a third connection of one client behind the proxy is refused, another client's is not", async () => {
    const from = (client: string) => ({ localAddress: "127.0.0.2", headers: { "X-Forwarded-For": client } })
    keep(await opened(port, from("192.0.2.1")))
    keep(await opened(port, from("192.0.2.1")))
    expect(await refusedWith(port, from("192.0.2.1"))).toBe(429)
    expect(await refusedWith(port, from("192.0.2.2"))).toBe("open")
    // The untrusted peer cannot borrow another address's budget by naming it.
    expect(await refusedWith(port, { localAddress: "127.0.0.1", headers: { "X-Forwarded-For": "192.0.2.3" } })).toBe("open")
  })

  it("failed authentications count per resolved address: one client behind the proxy locked out, another not; spoofing does not escape the lockout", async () => {
    const bad = { token: "no-such-token-0123456789" }
    const a = keep(await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "192.0.2.50" } }))
    for (let i = 0; i < 2; i++) expect((await a.call("count", ["User"], bad)).error?.code).toBe(401)
    expect((await a.call("count", ["User"], serviceAuth)).error?.code).toBe(429)
    const b = keep(await opened(port, { localAddress: "127.0.0.2", headers: { "X-Forwarded-For": "192.0.2.51" } }))
    expect((await b.call("count", ["User"], serviceAuth)).error).toBeUndefined()
    // 127.0.0.4 is not trusted: whatever it claims, its failures are its own.
    const spoof = (n: number) => ({ localAddress: "127.0.0.4", headers: { "X-Forwarded-For": `198.18.0.${n}` } })
    const once = async (o: OpenOptions, auth: Rec) => {
      const c = await opened(port, o)
      const code = (await c.call("count", ["User"], auth)).error?.code
      await c.close()
      return code
    }
    for (let i = 0; i < 2; i++) expect(await once(spoof(i), bad)).toBe(401)
    expect(await once(spoof(9), serviceAuth)).toBe(429)
  })
})

describe("trusted proxies: PROXY protocol (server.proxy_protocol)", () => {
  let port = 0
  let audit = ""
  beforeAll(async () => {
    const d = await start(db!, { trusted_proxies: ["127.0.0.2/32"], proxy_protocol: true })
    daemons.push(d.daemon)
    port = d.daemon.port
    audit = d.auditFile
  })

  it("v1 from a trusted peer: the header's source address is the client", async () => {
    const c = keep(await opened(port, { localAddress: "127.0.0.2", preamble: buildV1("203.0.113.20", 51000, "127.0.0.1", port) }))
    expect(await addressSeen(c, audit)).toBe("203.0.113.20")
    const v6 = keep(await opened(port, { localAddress: "127.0.0.2", preamble: buildV1("2001:db8::20", 51000, "2001:db8::1", port) }))
    expect(await addressSeen(v6, audit)).toBe("2001:db8::20")
  })

  it("v2 (with TLVs after the addresses) from a trusted peer: the header's source address is the client; LOCAL keeps the peer's", async () => {
    const tlvs = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]) // PP2_TYPE_UNIQUE_ID "abc"
    const c = keep(
      await opened(port, {
        localAddress: "127.0.0.2",
        preamble: buildV2({ source: "203.0.113.21", sourcePort: 40000, destination: "127.0.0.1", destinationPort: port, tlvs })
      })
    )
    expect(await addressSeen(c, audit)).toBe("203.0.113.21")
    const local = keep(
      await opened(port, {
        localAddress: "127.0.0.2",
        preamble: buildV2({ command: "LOCAL", source: "0.0.0.0", sourcePort: 0, destination: "0.0.0.0", destinationPort: 0 })
      })
    )
    expect(await addressSeen(local, audit)).toBe("127.0.0.2")
  })

  it("a PROXY header from an untrusted peer is refused; the same peer without one is served as itself", async () => {
    await expect(
      open(port, { localAddress: "127.0.0.1", preamble: buildV1("203.0.113.22", 1, "127.0.0.1", port) }).then((c) =>
        "refused" in c ? c.refused : "open"
      )
    ).resolves.not.toBe("open")
    await expect(
      open(port, {
        localAddress: "127.0.0.1",
        preamble: buildV2({ source: "203.0.113.22", sourcePort: 1, destination: "127.0.0.1", destinationPort: port })
      })
        .then((c) => ("refused" in c ? c.refused : "open"))
        .catch(() => "failed")
    ).resolves.not.toBe("open")
    const plain = keep(await opened(port, { localAddress: "127.0.0.1" }))
    expect(await addressSeen(plain, audit)).toBe("127.0.0.1")
    expect(auditRecords(audit).some((r) => r.remoteAddress === "203.0.113.22")).toBe(false)
  })

  it("a trusted peer must send the header; a malformed one is refused", async () => {
    expect(await refusedWith(port, { localAddress: "127.0.0.2" })).not.toBe("open")
    expect(
      await refusedWith(port, { localAddress: "127.0.0.2", preamble: Buffer.from("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n") })
    ).not.toBe("open")
  })
})

describe("credentials at the handshake", () => {
  let port = 0
  let audit = ""
  let daemon: Daemon
  let asClient: Client
  beforeAll(async () => {
    const d = await start(
      db!,
      {},
      { query_token: true, session_cache_ttl: 60, failed_auth: { burst: 1000, per_minute: 1000 } },
      { logging: { level: "debug" } }
    )
    daemons.push(d.daemon)
    daemon = d.daemon
    port = d.daemon.port
    audit = d.auditFile
    asClient = await connect(port, serviceAuth)
  })
  afterAll(async () => {
    await asClient.close()
  })

  it("Authorization: Bearer — frames without auth are the token's principal", async () => {
    const c = keep(await opened(port, { headers: { Authorization: `Bearer ${SERVICE_TOKEN}` } }))
    expect(typeof (await c.call("count", ["User"])).result).toBe("number")
  })

  it("subprotocol dbal.bearer.<token>: the daemon selects `dbal`; frames without auth work", async () => {
    const c = keep(await opened(port, { protocols: ["dbal", `dbal.bearer.${SERVICE_TOKEN}`] }))
    expect(c.ws.protocol).toBe("dbal")
    expect(typeof (await c.call("count", ["User"])).result).toBe("number")
  })

  it("query parameter token (query_token: true): frames without auth work", async () => {
    const c = keep(await opened(port, { query: `token=${SERVICE_TOKEN}` }))
    expect(typeof (await c.call("count", ["User"])).result).toBe("number")
  })

  it("a session token at the handshake: its user, checked on every frame; expiry and deletion while open answer 401", async () => {
    const u = await createUser(asClient)
    const s = await createSession(asClient, u.id, inSeconds(3600))
    const c = keep(await opened(port, { headers: { Authorization: `Bearer ${s.token}` } }))
    expect(((await c.call("read", ["User", u.id])).result as Rec).id).toBe(u.id)
    // `auth` in a frame wins for that frame.
    const other = await createUser(asClient)
    expect((await c.call("read", ["User", other.id])).error?.code).toBeOneOf([403, 404])
    expect(((await c.call("read", ["User", other.id], serviceAuth)).result as Rec).id).toBe(other.id)
    expect((await c.call("read", ["User", other.id])).error?.code, "the next frame is the session's again").toBeOneOf([403, 404])
    expect((await asClient.call("delete", ["Session", s.id])).result).toBe(true)
    expect((await c.call("read", ["User", u.id])).error?.code, "after the session was deleted").toBe(401)

    const expiresAt = inSeconds(2)
    const short = await createSession(asClient, u.id, expiresAt)
    const e = keep(await opened(port, { protocols: ["dbal", `dbal.bearer.${short.token}`] }))
    expect((await e.call("read", ["User", u.id])).error).toBeUndefined()
    await until(
      "a frame refused after the session's expiry",
      async () => ((await e.call("read", ["User", u.id])).error?.code === 401 ? true : undefined),
      15_000,
      100
    )
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt.getTime() - 1000)
  })

  it("a credential that fails at the handshake refuses the upgrade with 401: unknown, expired session, each way; the Authorization header wins over the others", async () => {
    const u = await createUser(asClient)
    const expired = await createSession(asClient, u.id, inSeconds(-60))
    expect(await refusedWith(port, { headers: { Authorization: "Bearer no-such-token-0123456789" } })).toBe(401)
    expect(await refusedWith(port, { headers: { Authorization: `Bearer ${expired.token}` } })).toBe(401)
    expect(await refusedWith(port, { protocols: ["dbal", `dbal.bearer.${expired.token}`] })).toBe(401)
    expect(await refusedWith(port, { query: `token=${expired.token}` })).toBe(401)
    expect(await refusedWith(port, { headers: { Authorization: "Bearer" } })).toBe(401)
    expect(
      await refusedWith(port, {
        headers: { Authorization: "Bearer no-such-token-0123456789" },
        protocols: ["dbal", `dbal.bearer.${SERVICE_TOKEN}`]
      })
    ).toBe(401)
    const failed = await until("the audit record of a refused handshake", () =>
      auditRecords(audit).find((r) => r.operation === "connect" && r.success === false && r.errorCode === 401)
    )
    expect(failed.remoteAddress).toBe("127.0.0.1")
  })

  it("the URL (with its token) is never logged, nor written to the audit log", async () => {
    const u = await createUser(asClient)
    const s = await createSession(asClient, u.id, inSeconds(3600))
    const good = keep(await opened(port, { query: `token=${s.token}` }))
    await good.call("read", ["User", u.id])
    await good.call("list", ["NoSuchEntity"])
    expect(await refusedWith(port, { query: `token=${s.token}x` })).toBe(401)
    await good.close()
    const marker = keep(await opened(port))
    const m = await marker.call("count", ["User"], serviceAuth)
    await auditOf(audit, String(m.id))
    expect(daemon.output()).not.toContain(s.token)
    expect(fs.readFileSync(audit, "utf8")).not.toContain(s.token)
  })
})

describe("handshake credentials where query tokens are off (the default) and failures are throttled", () => {
  let port = 0
  beforeAll(async () => {
    const d = await start(db!, {}, { failed_auth: { burst: 2, per_minute: 1 } })
    daemons.push(d.daemon)
    port = d.daemon.port
  })

  it("a token in the URL is refused with 401 (not looked at); bad handshakes count as failed authentications: the third gets 429, a good one too", async () => {
    expect(await refusedWith(port, { localAddress: "127.0.0.5", query: `token=${SERVICE_TOKEN}` })).toBe(401)
    expect(await refusedWith(port, { localAddress: "127.0.0.5", headers: { Authorization: "Bearer bad-token-000000000001" } })).toBe(401)
    expect(await refusedWith(port, { localAddress: "127.0.0.5", headers: { Authorization: "Bearer bad-token-000000000002" } })).toBe(401)
    expect(await refusedWith(port, { localAddress: "127.0.0.5", headers: { Authorization: `Bearer ${SERVICE_TOKEN}` } })).toBe(429)
    expect(await refusedWith(port, { localAddress: "127.0.0.6", headers: { Authorization: `Bearer ${SERVICE_TOKEN}` } })).toBe("open")
  })
})
