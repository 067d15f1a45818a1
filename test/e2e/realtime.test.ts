/**
 * Realtime against one real daemon process (SQLite) and real WebSocket clients: what each
 * subscriber gets of a change is what its read access admits (row filters of rules and `self`
 * rules, read_fields, never_expose), moves into and out of view arrive as create and delete,
 * deletes are checked against the row as it was; unsubscribe, the subscription limits (429), a
 * deleted session (one error frame, then nothing), and a slow subscriber (dropped with 4008
 * while the others keep getting their events).
 *
 * The absence of an event is shown with a marker: a later change every subscriber in question
 * must get, before which nothing else may have arrived (one replica handles changes in order).
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Daemon, startDaemon } from "../support/daemon.js"
import { connectLive, eventsOf, type LiveClient, type Pushed } from "../support/live.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import type { Rec } from "../support/types.js"
import { until } from "../support/wait.js"

let db: TestDatabase
let daemon: Daemon
const clients: Array<LiveClient> = []
const dir = tempDir("realtime")

const open = async (auth?: Rec): Promise<LiveClient> => {
  const c = await connectLive(daemon.port, auth)
  clients.push(c)
  return c
}

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

const ok = async <T = Rec>(c: LiveClient, method: string, params: ReadonlyArray<unknown>, auth?: Rec): Promise<T> => {
  const a = await c.call(method, params, auth)
  if (a.error !== undefined) throw new Error(`${method} failed: ${JSON.stringify(a.error)}`)
  return a.result as T
}

/** A user with a session; its credentials. */
const userWith = async (admin: LiveClient, role: "user" | "admin" | "god"): Promise<{ id: string; auth: Rec; sessionId: string }> => {
  const name = `u${randomUUID().slice(0, 8)}`
  const user = await ok<{ id: string }>(admin, "create", ["User", { username: name, email: `${name}@example.com`, role }])
  const token = `session-${randomUUID()}`
  const session = await ok<{ id: string }>(admin, "create", ["Session", { userId: user.id, token, expiresAt: "2099-01-01T00:00:00Z" }])
  return { id: user.id, auth: { token, user_id: user.id }, sessionId: session.id }
}

const page = (tag: string, level: number, extra: Rec = {}) => ({
  slug: `p-${tag}-${randomUUID().slice(0, 8)}`,
  title: tag,
  level,
  layout: { a: 1 },
  ...extra
})

beforeAll(async () => {
  db = await createDatabase("sqlite")
  const rules = path.join(dir, "rules.yaml")
  fs.writeFileSync(
    rules,
    [
      "rules:",
      "  - roles: user",
      "    entities: PageView",
      "    operations: read",
      "    filter: { level: { lte: 2 } }",
      "    read_fields: [id, slug, title, level]"
    ].join("\n")
  )
  const base = daemonConfig(db)
  daemon = await startDaemon([
    `--config=${writeConfig(
      {
        ...base,
        security: {
          ...(base.security as Rec),
          never_expose: ["User.email"],
          acl: { rules_file: rules },
          auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }], failed_auth: { burst: 1000, per_minute: 1000 } }
        },
        realtime: { max_subscriptions_per_connection: 4, max_subscriptions_per_principal: 6, max_buffered_bytes: 256 * 1024 }
      },
      dir
    )}`
  ])
})

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await daemon?.stop()
  await db?.drop()
})

describe("realtime: access per subscriber", () => {
  it("PageView: a rule's row filter and read_fields for users, everything for admins, moves in and out of view", async () => {
    const system = await open(serviceAuth)
    const [alice, admin] = [await userWith(system, "user"), await userWith(system, "admin")]
    const asAlice = await open(alice.auth)
    const asAdmin = await open(admin.auth)
    const tag = randomUUID().slice(0, 8)
    const filter = { filter: { title: tag } }
    const sa = await asAlice.subscribe("PageView", filter)
    const sb = await asAdmin.subscribe("PageView", filter)

    const low = await ok<{ id: string }>(system, "create", ["PageView", page(tag, 1)])
    const high = await ok<{ id: string }>(system, "create", ["PageView", page(tag, 4)])
    await ok(system, "update", ["PageView", low.id, { level: 3 }]) // out of alice's view
    await ok(system, "update", ["PageView", high.id, { level: 2 }]) // into alice's view
    await ok(system, "delete", ["PageView", low.id]) // alice could not see it any more
    await ok(system, "delete", ["PageView", high.id])

    const forAlice = await asAlice.upTo(sa, (p) => p.event === "delete" && p.record?.id === high.id)
    expect(eventsOf(forAlice)).toEqual([
      ["create", low.id],
      ["delete", low.id],
      ["create", high.id],
      ["delete", high.id]
    ])
    // read_fields: only id, slug, title, level.
    for (const f of forAlice.filter((x) => x.event === "create"))
      expect(Object.keys(f.record!).sort()).toEqual(["id", "level", "slug", "title"])

    const forAdmin = await asAdmin.upTo(sb, (p) => p.event === "delete" && p.record?.id === high.id)
    expect(eventsOf(forAdmin)).toEqual([
      ["create", low.id],
      ["create", high.id],
      ["update", low.id],
      ["update", high.id],
      ["delete", low.id],
      ["delete", high.id]
    ])
    expect(forAdmin[0]!.record).toMatchObject({ id: low.id, title: tag, level: 1, layout: { a: 1 }, isActive: true })
    expect(forAdmin[2]!.record).toMatchObject({ level: 3 })
    // A delete carries the row as it was, in the subscriber's view.
    expect(forAdmin[5]!.record).toMatchObject({ id: high.id, level: 2, layout: { a: 1 } })
    expect(Object.keys(forAlice[3]!.record!).sort()).toEqual(["id", "level", "slug", "title"])
  })

  it("User: `self` for users, every row for admins, never_expose fields in nobody's events", async () => {
    const system = await open(serviceAuth)
    const [alice, bob, admin] = [await userWith(system, "user"), await userWith(system, "user"), await userWith(system, "admin")]
    const asAlice = await open(alice.auth)
    const asBob = await open(bob.auth)
    const asAdmin = await open(admin.auth)
    const [sa, sb, sc] = [await asAlice.subscribe("User"), await asBob.subscribe("User"), await asAdmin.subscribe("User")]

    await ok(system, "update", ["User", alice.id, { username: `a${randomUUID().slice(0, 8)}` }])
    await ok(system, "update", ["User", bob.id, { username: `b${randomUUID().slice(0, 8)}` }])

    const a = await asAlice.upTo(sa, (p) => p.record?.id === alice.id)
    expect(eventsOf(a)).toEqual([["update", alice.id]])
    // Bob's first event is his own update: alice's was not his to see.
    const b = await asBob.upTo(sb, (p) => p.record?.id === bob.id)
    expect(eventsOf(b)).toEqual([["update", bob.id]])
    const c = await asAdmin.upTo(sc, (p) => p.record?.id === bob.id)
    expect(eventsOf(c)).toEqual([
      ["update", alice.id],
      ["update", bob.id]
    ])
    for (const f of [...a, ...b, ...c]) {
      expect(f.record).not.toHaveProperty("email")
      expect(f.record).toHaveProperty("username")
    }
  })

  it("refuses what a read would refuse: an entity the caller may not read (403), a filter on a field it may not read (403), a bad filter (422)", async () => {
    const system = await open(serviceAuth)
    const alice = await userWith(system, "user")
    const c = await open(alice.auth)
    expect((await c.call("subscribe", ["Session"])).error?.code).toBe(403)
    expect((await c.call("subscribe", ["PageView", { filter: { isActive: true } }])).error?.code).toBe(403)
    expect((await c.call("subscribe", ["PageView", { filter: { level: "high" } }])).error?.code).toBe(422)
    expect((await c.call("subscribe", ["PageView", { where: {} }])).error?.code).toBe(422)
    expect((await c.call("subscribe", ["Nope"])).error?.code).toBe(422)
    expect((await c.call("subscribe", ["PageView", 3])).error?.code).toBe(400)
  })
})

describe("realtime: lifecycle and limits", () => {
  it("unsubscribe: no more events for it, true; an unknown id is 404", async () => {
    const system = await open(serviceAuth)
    const c = await open(serviceAuth)
    const tag = randomUUID().slice(0, 8)
    const kept = await c.subscribe("PageView", { filter: { title: tag } })
    const gone = await c.subscribe("PageView", { filter: { title: tag } })
    const first = await ok<{ id: string }>(system, "create", ["PageView", page(tag, 1)])
    await c.upTo(gone, (p) => p.record?.id === first.id)
    expect((await c.call("unsubscribe", [gone])).result).toBe(true)
    expect((await c.call("unsubscribe", [gone])).error?.code).toBe(404)
    expect((await c.call("unsubscribe", [randomUUID()])).error?.code).toBe(404)
    const second = await ok<{ id: string }>(system, "create", ["PageView", page(tag, 1)])
    expect(eventsOf(await c.upTo(kept, (p) => p.record?.id === second.id))).toEqual([
      ["create", first.id],
      ["create", second.id]
    ])
    expect(c.pending(gone)).toEqual([])
  })

  it("limits: per connection and per principal, 429 past them; a closed connection gives its subscriptions back", async () => {
    const system = await open(serviceAuth)
    const user = await userWith(system, "user")
    const one = await open(user.auth)
    for (let i = 0; i < 4; i++) await one.subscribe("PageView")
    const fifth = await one.call("subscribe", ["PageView"])
    expect(fifth.error?.code).toBe(429)
    expect(String(fifth.error?.details?.reason)).toMatch(/per connection/)
    const two = await open(user.auth)
    await two.subscribe("PageView")
    await two.subscribe("PageView")
    const seventh = await two.call("subscribe", ["PageView"])
    expect(seventh.error?.code).toBe(429)
    expect(String(seventh.error?.details?.reason)).toMatch(/per principal/)
    await one.close()
    await until(
      "the closed connection's subscriptions to be given back",
      async () => ((await two.call("subscribe", ["PageView"])).error === undefined ? true : undefined),
      5000
    )
  })

  it("a deleted session ends its subscriptions with one error frame (401), and they get nothing after it", async () => {
    const system = await open(serviceAuth)
    const user = await userWith(system, "user")
    const c = await open(user.auth)
    const s1 = await c.subscribe("User")
    const s2 = await c.subscribe("PageView")
    await ok(system, "delete", ["Session", user.sessionId])
    const f1 = await c.upTo(s1, (p) => p.error !== undefined)
    const f2 = await c.upTo(s2, (p) => p.error !== undefined)
    // Its own user's creation, written just before it subscribed, may come first (the change can
    // be handled after the subscription exists); then exactly one error frame.
    for (const frames of [f1, f2]) {
      expect(frames.at(-1)?.error?.code, JSON.stringify(frames)).toBe(401)
      expect(
        frames.slice(0, -1).every((f) => f.error === undefined && f.record?.id === user.id),
        JSON.stringify(frames)
      ).toBe(true)
    }
    // A later change of what they watched reaches another subscriber, and not them.
    const watcher = await open(serviceAuth)
    const w = await watcher.subscribe("PageView")
    const p = await ok<{ id: string }>(system, "create", ["PageView", page("after", 1)])
    await watcher.upTo(w, (x) => x.record?.id === p.id)
    expect(c.pending(s1)).toEqual([])
    expect(c.pending(s2)).toEqual([])
    expect((await c.call("unsubscribe", [s1], serviceAuth)).error?.code).toBe(404)
  })

  it("a slow subscriber is dropped at max_buffered_bytes with close code 4008; the others keep getting every event", async () => {
    const system = await open(serviceAuth)
    const slow = await open(serviceAuth)
    const fast = await open(serviceAuth)
    const tag = randomUUID().slice(0, 8)
    await slow.subscribe("PageView", { filter: { title: tag } })
    const f = await fast.subscribe("PageView", { filter: { title: tag } })
    const slowBefore = await metric('dbal_realtime_subscriptions_ended_total{reason="slow"}')
    // The slow client stops reading: its socket is paused, so the daemon's send buffer fills.
    slow.ws.pause()
    ;(slow.ws as unknown as { _socket: { pause: () => void } })._socket.pause()
    const big = "x".repeat(60_000)
    const ids: Array<string> = []
    for (let i = 0; i < 400 && (await metric('dbal_realtime_subscriptions_ended_total{reason="slow"}')) === slowBefore; i++) {
      ids.push((await ok<{ id: string }>(system, "create", ["PageView", page(tag, 1, { description: big })])).id)
    }
    expect(await metric('dbal_realtime_subscriptions_ended_total{reason="slow"}')).toBe(slowBefore + 1)
    const last = (await ok<{ id: string }>(system, "create", ["PageView", page(tag, 1)])).id
    const got = await fast.upTo(f, (p) => p.record?.id === last, 20_000)
    expect(got.map((p: Pushed) => p.record?.id)).toEqual([...ids, last])
    slow.ws.resume()
    ;(slow.ws as unknown as { _socket: { resume: () => void } })._socket.resume()
    expect(await slow.closed(15_000)).toBe(4008)
  })
})
