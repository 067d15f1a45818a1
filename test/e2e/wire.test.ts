/**
 * Bad input over the wire, against one real SQLite daemon with a small frame limit
 * (server.max_payload 65536) and server.max_in_flight 4: malformed frames, ids, methods, params,
 * authentication, binary and oversized frames, pipelining. The daemon must answer every request
 * exactly once, keep the connection open for everything short of a frame over 4× the limit, and
 * never leak a stack trace or SQL.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Answer, connect, type Daemon, health, openSocket, type RawSocket, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, writeConfig } from "../support/services.js"

const MAX_PAYLOAD = 65536
const MAX_IN_FLIGHT = 4

let db: TestDatabase | undefined
let daemon: Daemon | undefined
const sockets: Array<RawSocket> = []
/** Every answer the daemon sent in this file, for the final no-leak check. */
const answers: Array<Answer> = []

const open = async (): Promise<RawSocket> => {
  const s = await openSocket(daemon!.port)
  sockets.push(s)
  return s
}

/** The next answer on `s`, recorded. */
const next = async (s: RawSocket): Promise<Answer> => {
  const a = await s.next()
  answers.push(a)
  return a
}

/** A request frame; `NO_AUTH` leaves `auth` out. */
const NO_AUTH = Symbol("no auth")
const request = (id: unknown, method: unknown, params: ReadonlyArray<unknown>, auth: unknown = serviceAuth) =>
  JSON.stringify({ id, method, params, ...(auth === NO_AUTH ? {} : { auth }) })

/** Sends one frame and returns the next answer. */
const ask = async (s: RawSocket, frame: string | Buffer, binary = false): Promise<Answer> => {
  s.send(frame, { binary })
  return next(s)
}

beforeAll(async () => {
  db = await createDatabase("sqlite")
  const base = daemonConfig(db)
  const config = {
    ...base,
    server: { host: "127.0.0.1", port: 0, max_payload: MAX_PAYLOAD, max_in_flight: MAX_IN_FLIGHT },
    // The refused authentications of this file (about 50, from 127.0.0.1) stay below the
    // per-address failed-authentication throttle, which would otherwise answer 429 to every
    // later request from this address, good credentials included.
    security: {
      ...(base.security as Record<string, unknown>),
      auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }], failed_auth: { burst: 1000, per_minute: 1000 } }
    }
  }
  daemon = await startDaemon([`--config=${writeConfig(config)}`])
})

afterAll(async () => {
  for (const s of sockets) await s.close()
  await daemon?.stop()
  await db?.drop()
})

describe("malformed frames", () => {
  let s: RawSocket
  beforeAll(async () => {
    s = await open()
  })

  it("a frame that is not JSON: id null, 400", async () => {
    const a = await ask(s, "{not json")
    expect(a.id).toBeNull()
    expect(a.error?.code).toBe(400)
    expect(typeof a.error?.message).toBe("string")
  })

  it("a JSON array, string, number or null frame: id null, 400", async () => {
    for (const frame of ['[{"id":1,"method":"count","params":["User"]}]', '"hello"', "42", "null"]) {
      const a = await ask(s, frame)
      expect(a, frame).toMatchObject({ id: null, error: { code: 400 } })
    }
  })

  it("no id, or an unusable id (object, boolean, null): id null, 400", async () => {
    for (const frame of [
      JSON.stringify({ method: "count", params: ["User"], auth: serviceAuth }),
      JSON.stringify({ id: { a: 1 }, method: "count", params: ["User"], auth: serviceAuth }),
      JSON.stringify({ id: true, method: "count", params: ["User"], auth: serviceAuth }),
      JSON.stringify({ id: null, method: "count", params: ["User"], auth: serviceAuth })
    ]) {
      const a = await ask(s, frame)
      expect(a, frame).toMatchObject({ id: null, error: { code: 400 } })
    }
  })

  it("string ids are echoed exactly, numeric ids as numbers", async () => {
    for (const id of ["007", "ü-1", "", 'id with "quotes" and \\ and \n', 7, 0, -3, 1.5]) {
      const a = await ask(s, request(id, "count", ["User"]))
      expect(a.id, JSON.stringify(a)).toStrictEqual(id)
      expect(a.result, JSON.stringify(a)).toBe(0)
    }
  })

  it("an unknown method: 400 with the request's id", async () => {
    const a = await ask(s, request("m1", "dropDatabase", ["User"]))
    expect(a).toMatchObject({ id: "m1", error: { code: 400 } })
    const b = await ask(s, request("m2", 12, ["User"]))
    expect(b).toMatchObject({ id: "m2", error: { code: 400 } })
  })

  it("params that are not an array: 400 with the id", async () => {
    for (const params of [{ entity: "User" }, "User", 3]) {
      const a = await ask(s, JSON.stringify({ id: "p1", method: "count", params, auth: serviceAuth }))
      expect(a, JSON.stringify(params)).toMatchObject({ id: "p1", error: { code: 400 } })
    }
  })

  it("params of the wrong shape for the method: 400", async () => {
    for (const params of [[], [42], ["User"], ["User", { id: 1 }, "x", "y", "z", "w"]]) {
      const a = await ask(s, request("w1", "read", params))
      expect(a, JSON.stringify(params)).toMatchObject({ id: "w1", error: { code: 400 } })
    }
  })

  it("an unknown entity, or a non-string one: a client error, never 500", async () => {
    for (const params of [
      ["NoSuchEntity", "00000000-0000-4000-8000-000000000000"],
      [42, "x"],
      ["__proto__", "x"],
      ["constructor", "x"]
    ]) {
      const a = await ask(s, request("w2", "read", params))
      expect(a.id).toBe("w2")
      expect([400, 404, 422], JSON.stringify(a)).toContain(a.error?.code)
    }
  })

  it("a binary frame: id null, 400, and the connection stays open", async () => {
    const a = await ask(s, Buffer.from(request("b1", "count", ["User"])), true)
    expect(a).toMatchObject({ id: null, error: { code: 400 } })
    const b = await ask(s, request("after-binary", "count", ["User"]))
    expect(b).toMatchObject({ id: "after-binary", result: 0 })
  })
})

describe("authentication", () => {
  it("no auth: 401 with the id", async () => {
    const s = await open()
    const a = await ask(s, request("a1", "count", ["User"], NO_AUTH))
    expect(a).toMatchObject({ id: "a1", error: { code: 401 } })
  })

  it("a wrong token: 401", async () => {
    const s = await open()
    const a = await ask(s, request("a2", "count", ["User"], { token: "not-the-token", user_id: "tests" }))
    expect(a).toMatchObject({ id: "a2", error: { code: 401 } })
  })

  it("auth.user_id that does not match the principal: 401", async () => {
    const s = await open()
    const a = await ask(s, request("a3", "count", ["User"], { ...serviceAuth, user_id: "somebody-else" }))
    expect(a).toMatchObject({ id: "a3", error: { code: 401 } })
    const b = await ask(s, request("a4", "count", ["User"], { token: serviceAuth.token, userId: "tests" }))
    expect(b, "userId is accepted as an alias of user_id").toMatchObject({ id: "a4", result: 0 })
  })

  it("auth of the wrong shape: 400", async () => {
    const s = await open()
    for (const auth of [
      "token",
      5,
      [serviceAuth],
      { token: "" },
      { token: 5, user_id: "tests" },
      { token: serviceAuth.token, user_id: 7 }
    ]) {
      const a = await ask(s, request("a5", "count", ["User"], auth))
      expect(a, JSON.stringify(auth)).toMatchObject({ id: "a5", error: { code: 400 } })
    }
  })

  it("authenticate: later requests on that connection need no auth; other connections still do", async () => {
    const s = await open()
    const failed = await ask(s, request("x0", "authenticate", [{ token: "wrong", user_id: "tests" }], NO_AUTH))
    expect(failed).toMatchObject({ id: "x0", error: { code: 401 } })
    const stillNot = await ask(s, request("x1", "count", ["User"], NO_AUTH))
    expect(stillNot, "a failed authenticate does not authenticate the connection").toMatchObject({ id: "x1", error: { code: 401 } })

    const ok = await ask(s, request("x2", "authenticate", [serviceAuth], NO_AUTH))
    expect(ok.error, JSON.stringify(ok)).toBeUndefined()
    expect(ok.id).toBe("x2")
    const count = await ask(s, request("x3", "count", ["User"], NO_AUTH))
    expect(count).toMatchObject({ id: "x3", result: 0 })
    const created = await ask(
      s,
      request("x4", "create", ["User", { username: "wire_auth", email: "wire_auth@example.com", role: "user" }], NO_AUTH)
    )
    expect(created.error, JSON.stringify(created)).toBeUndefined()

    const other = await open()
    const refused = await ask(other, request("y1", "count", ["User"], NO_AUTH))
    expect(refused).toMatchObject({ id: "y1", error: { code: 401 } })

    // The client helper's `call` with auth null sends no auth either.
    const client = await connect(daemon!.port)
    const viaHelper = await client.call("count", ["User"], null)
    answers.push(viaHelper)
    expect(viaHelper.error?.code).toBe(401)
    await client.close()
  })
})

describe("errors that reach the database carry no SQL", () => {
  it("conflict, validation, unknown fields, bad filters, bad ids", async () => {
    const s = await open()
    const user = { username: "wire_dup", email: "wire_dup@example.com", role: "user" }
    expect(await ask(s, request("e1", "create", ["User", user]))).toHaveProperty("result")
    const cases: Array<[string, ReadonlyArray<unknown>, number]> = [
      ["create", ["User", user], 409],
      ["create", ["User", { ...user, username: "x'; DROP TABLE users; --", email: "nope" }], 422],
      ["create", ["User", { ...user, username: "wire_dup2", bogus: 1 }], 422],
      ["list", ["User", { filter: { nosuchfield: 1 } }], 422],
      ["list", ["User", { filter: { username: { regex: ".*" } } }], 422],
      ["list", ["User", { sort: { username: "sideways" } }], 422],
      ["read", ["User", "' OR 1=1 --"], 404],
      ["update", ["User", "00000000-0000-4000-8000-000000000000", { email: "a@b.c" }], 404],
      ["deleteMany", ["User", {}], 422]
    ]
    for (const [i, [method, params, code]] of cases.entries()) {
      const a = await ask(s, request(`e${i + 2}`, method, params))
      expect(a.id).toBe(`e${i + 2}`)
      expect(a.error?.code, `${method} ${JSON.stringify(params)}: ${JSON.stringify(a)}`).toBe(code)
    }
  })
})

describe("upsert's two forms", () => {
  it("[entity, uniqueField, value, createData, updateData] and [entity, {uniqueField: value}, createData, updateData] reach one record; a bad filter is a 422", async () => {
    const s = await open()
    const name = `wire_${Date.now().toString(36)}`
    const created = await ask(s, request("u1", "upsert", ["User", { username: name }, { email: `${name}@example.com` }, { role: "admin" }]))
    expect(created).toMatchObject({ id: "u1", result: { username: name, role: "user" } })
    const id = (created.result as { id: string }).id
    const byField = await ask(s, request("u2", "upsert", ["User", "username", name, { email: `${name}@example.com` }, { role: "admin" }]))
    expect(byField).toMatchObject({ id: "u2", result: { id, role: "admin" } })
    const byFilter = await ask(s, request("u3", "upsert", ["User", { username: name }, { email: `${name}@example.com` }, { role: "god" }]))
    expect(byFilter).toMatchObject({ id: "u3", result: { id, role: "god" } })
    const two = await ask(s, request("u4", "upsert", ["User", { username: name, email: `${name}@example.com` }, {}, { role: "user" }]))
    expect(two).toMatchObject({ id: "u4", error: { code: 422, details: { fields: [{ field: "filter" }] } } })
    const byId = await ask(s, request("u5", "upsert", ["User", { id }, {}, { role: "user" }]))
    expect(byId).toMatchObject({ id: "u5", error: { code: 422, details: { fields: [{ field: "filter.id" }] } } })
  })
})

describe("frame size limits", () => {
  it("a frame just over max_payload: 400 with id null, and the connection stays open", async () => {
    const s = await open()
    const pad = "x".repeat(MAX_PAYLOAD)
    const frame = JSON.stringify({ id: "big", method: "count", params: ["User", { username: pad }], auth: serviceAuth })
    expect(Buffer.byteLength(frame)).toBeGreaterThan(MAX_PAYLOAD)
    expect(Buffer.byteLength(frame)).toBeLessThan(MAX_PAYLOAD * 2)
    const a = await ask(s, frame)
    expect(a).toMatchObject({ id: null, error: { code: 400 } })
    const b = await ask(s, request("after-big", "count", ["User"]))
    expect(b).toMatchObject({ id: "after-big" })
    expect(b.error).toBeUndefined()
  })

  it("a frame of exactly max_payload bytes is read (not refused for its size)", async () => {
    const s = await open()
    const base = JSON.stringify({ id: "exact", method: "count", params: ["User", { username: "" }], auth: serviceAuth })
    const frame = base.replace('"username":""', `"username":"${"y".repeat(MAX_PAYLOAD - Buffer.byteLength(base))}"`)
    expect(Buffer.byteLength(frame)).toBe(MAX_PAYLOAD)
    const a = await ask(s, frame)
    expect(a.id, JSON.stringify(a).slice(0, 300)).toBe("exact")
  })

  it("a frame over 4× max_payload closes that connection with 1009; the daemon serves new ones", async () => {
    const s = await open()
    s.send("z".repeat(MAX_PAYLOAD * 4 + 1))
    expect(await s.closed()).toBe(1009)
    const fresh = await open()
    const a = await ask(fresh, request("after-1009", "count", ["User"]))
    expect(a).toMatchObject({ id: "after-1009" })
    expect(a.error).toBeUndefined()
    expect(daemon!.alive()).toBe(true)
  })
})

describe("pipelining", () => {
  it(`200 pipelined requests with max_in_flight ${MAX_IN_FLIGHT}: exactly one answer each, with its id`, async () => {
    const s = await open()
    const expected = new Map<string | number, (a: Answer) => void>()
    for (let i = 0; i < 200; i++) {
      // A mix: writes, reads, counts, refusals decided before and after authentication.
      const kind = i % 5
      const id: string | number = i % 2 === 0 ? `p-${i}` : i
      if (kind === 0) {
        s.send(request(id, "create", ["User", { username: `pipe_${i}`, email: `pipe_${i}@example.com`, role: "user" }]))
        expected.set(id, (a) => expect(a.result, JSON.stringify(a)).toMatchObject({ username: `pipe_${i}` }))
      } else if (kind === 1) {
        s.send(request(id, "count", ["User"]))
        expected.set(id, (a) => expect(typeof a.result, JSON.stringify(a)).toBe("number"))
      } else if (kind === 2) {
        s.send(request(id, "list", ["User", { limit: 5 }]))
        expected.set(id, (a) => expect(a.result, JSON.stringify(a)).toHaveProperty("data"))
      } else if (kind === 3) {
        s.send(request(id, "count", ["User"], { token: "wrong", user_id: "tests" }))
        expected.set(id, (a) => expect(a.error?.code, JSON.stringify(a)).toBe(401))
      } else {
        s.send(request(id, "noSuchMethod", []))
        expected.set(id, (a) => expect(a.error?.code, JSON.stringify(a)).toBe(400))
      }
    }
    const seen = new Set<unknown>()
    for (let n = 0; n < 200; n++) {
      const a = await next(s)
      expect(seen.has(a.id), `answered twice: ${JSON.stringify(a.id)}`).toBe(false)
      seen.add(a.id)
      const check = expected.get(a.id as string | number)
      expect(check, `an answer with an id that was not sent: ${JSON.stringify(a)}`).toBeDefined()
      check!(a)
    }
    expect(seen.size).toBe(200)
    // Nothing else is pending: the next frame on the connection answers a fresh request.
    const sentinel = await ask(s, request("sentinel", "count", ["User", { username: { startsWith: "pipe_" } }]))
    expect(sentinel).toMatchObject({ id: "sentinel", result: 40 })
  })

  it("several pipelining connections at once", async () => {
    const conns = await Promise.all([open(), open(), open()])
    conns.forEach((s, c) => {
      for (let i = 0; i < 30; i++) s.send(request(`c${c}-${i}`, "count", ["User"]))
    })
    await Promise.all(
      conns.map(async (s, c) => {
        const ids = new Set<unknown>()
        for (let i = 0; i < 30; i++) {
          const a = await next(s)
          expect(a.error, JSON.stringify(a)).toBeUndefined()
          ids.add(a.id)
        }
        expect(ids).toEqual(new Set(Array.from({ length: 30 }, (_, i) => `c${c}-${i}`)))
      })
    )
  })
})

describe("disconnects", () => {
  it("a client that leaves with requests in flight and queued does not disturb the daemon", async () => {
    for (let c = 0; c < 3; c++) {
      const s = await openSocket(daemon!.port)
      for (let i = 0; i < 50; i++)
        s.send(
          request(`gone-${c}-${i}`, i % 2 === 0 ? "count" : "create", [
            "User",
            { username: `gone_${c}_${i}`, email: `gone_${c}_${i}@example.com`, role: "user" }
          ])
        )
      s.ws.terminate()
      await s.closed()
    }
    const fresh = await open()
    const a = await ask(fresh, request("after-gone", "count", ["User"]))
    expect(a).toMatchObject({ id: "after-gone" })
    expect(a.error).toBeUndefined()
  })

  it("/health counts the connections that are open", async () => {
    const openHere = () => sockets.filter((s) => s.ws.readyState === s.ws.OPEN).length
    // The server sees a close a moment after the client does: wait for the count (bounded).
    const activeBecomes = async (n: number) => {
      const deadline = Date.now() + 5000
      let c = { active: -1, total: -1 }
      while (Date.now() < deadline) {
        c = (await health(daemon!.port)).body.connections as { active: number; total: number }
        if (c.active === n) break
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(c.active, "connections.active").toBe(n)
      return c
    }
    const before = await activeBecomes(openHere())
    const extra = await Promise.all([open(), open()])
    const during = await activeBecomes(openHere())
    expect(during.total).toBe(before.total + 2)
    await Promise.all(extra.map((s) => s.close()))
    await activeBecomes(openHere())
  })
})

describe("after all of the above", () => {
  it("the daemon is alive and healthy", async () => {
    expect(daemon!.alive(), daemon!.output()).toBe(true)
    const { status, body } = await health(daemon!.port)
    expect(status).toBe(200)
    expect(body).toMatchObject({ status: "healthy", database: { connected: true } })
  })

  it("no answer carried a stack trace or SQL", () => {
    expect(answers.length).toBeGreaterThan(250)
    const leaks = answers
      .map((a) => JSON.stringify(a))
      .filter(
        (t) =>
          t.includes("    at ") ||
          /\b(SELECT|INSERT INTO|UPDATE \S+ SET|DELETE FROM)\b|SQLITE_|sqlite3?\b|UNIQUE constraint|syntax error/i.test(t)
      )
    expect(leaks).toEqual([])
  })

  it("the daemon logged no unexpected failure", () => {
    expect(daemon!.output()).not.toContain("request failed unexpectedly")
  })
})

describe("shutdown", () => {
  it("SIGTERM with pipelined requests in flight: answers already sent are whole, the socket closes with 1001, exit code 0", async () => {
    const s = await open()
    for (let i = 0; i < 100; i++) {
      s.send(request(`t-${i}`, "create", ["User", { username: `term_${i}`, email: `term_${i}@example.com`, role: "user" }]))
    }
    // Shut down once the first answer proves the requests are being worked on.
    const first = await next(s)
    expect(first.error, JSON.stringify(first)).toBeUndefined()
    const code = await daemon!.stop("SIGTERM")
    expect(code, daemon!.output()).toBe(0)
    expect(await s.closed()).toBe(1001)
    // Whatever came before the close is well-formed and answers requests that were sent, once each.
    const ids = new Set<unknown>([first.id])
    for (;;) {
      const a = await s.next(100).catch(() => undefined)
      if (a === undefined) break
      answers.push(a)
      expect(ids.has(a.id), `answered twice: ${JSON.stringify(a.id)}`).toBe(false)
      ids.add(a.id)
      expect(String(a.id)).toMatch(/^t-\d+$/)
    }
    expect(daemon!.output()).not.toContain("    at ")
  })
})
