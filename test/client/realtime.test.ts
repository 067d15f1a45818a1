/**
 * The client's live changes against a real daemon (SQLite): `db.pages.subscribe()` as an
 * AsyncIterable and `db.effect.pages.subscribe()` as an Effect Stream get the events of writes
 * made by another client; leaving the loop (or the stream ending) unsubscribes; a refused
 * subscription rejects with the daemon's error.
 */
import { randomUUID } from "node:crypto"
import { Chunk, Effect, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DBALClient, DbalError } from "dbal-daemon/client"
import { type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, SERVICE_TOKEN, type TestDatabase, writeConfig } from "../support/services.js"
import { until } from "../support/wait.js"

const auth = { token: SERVICE_TOKEN, userId: "tests" }

describe("client: live changes (production mode, real daemon on SQLite)", () => {
  let db: TestDatabase
  let daemon: Daemon
  const clients: Array<DBALClient> = []
  const client = () => {
    const c = new DBALClient({ mode: "production", endpoint: `ws://127.0.0.1:${daemon.port}`, auth })
    clients.push(c)
    return c
  }
  const subscriptions = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text()
    const line = text.split("\n").find((l) => l.startsWith("dbal_realtime_subscriptions "))
    return line === undefined ? 0 : Number(line.split(" ")[1])
  }
  const page = (title: string, level = 1) => ({ slug: `c-${randomUUID().slice(0, 8)}`, title, level, layout: {} })

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`])
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await daemon?.stop()
    await db?.drop()
  })

  it("AsyncIterable: create, update, delete in order; breaking out of the loop unsubscribes", async () => {
    const reader = client()
    const writer = client()
    const tag = randomUUID().slice(0, 8)
    const live = reader.pages.subscribe({ filter: { title: tag } })
    // The subscription is open once the daemon counts it; then the writes follow.
    await until("the subscription", async () => ((await subscriptions()) >= 1 ? true : undefined), 5000)
    const p = await writer.pages.create(page(tag))
    await writer.pages.update(p.id, { level: 2 })
    await writer.pages.delete(p.id)
    const seen: Array<[string, unknown, unknown]> = []
    for await (const e of live) {
      seen.push([e.event, e.record.id, e.record.level])
      if (e.event === "delete") break
    }
    expect(seen).toEqual([
      ["create", p.id, 1],
      ["update", p.id, 2],
      ["delete", p.id, 2]
    ])
    await until("the subscription to end", async () => ((await subscriptions()) === 0 ? true : undefined), 5000)
  })

  it("Effect Stream on db.effect: the events of the rows matching the filter", async () => {
    const reader = client()
    const writer = client()
    const tag = randomUUID().slice(0, 8)
    const events = Effect.runPromise(Stream.runCollect(Stream.take(reader.effect.pages.subscribe({ filter: { title: tag } }), 2)))
    await until("the subscription", async () => ((await subscriptions()) >= 1 ? true : undefined), 5000)
    await writer.pages.create(page("other"))
    const a = await writer.pages.create(page(tag))
    const b = await writer.pages.create(page(tag))
    const got = Chunk.toReadonlyArray(await events)
    expect(got.map((e) => [e.event, e.record.id])).toEqual([
      ["create", a.id],
      ["create", b.id]
    ])
    await until("the subscription to end", async () => ((await subscriptions()) === 0 ? true : undefined), 5000)
  })

  it("a refused subscription rejects with the daemon's error", async () => {
    const reader = client()
    const live = reader.pages.subscribe({ filter: { level: "high" } as never })
    const it = live[Symbol.asyncIterator]()
    const e = await it.next().then(
      () => undefined,
      (x: unknown) => x
    )
    expect(e).toBeInstanceOf(DbalError)
    expect((e as DbalError).code).toBe(422)
  })
})

describe("client: a subscription survives a reconnect (production mode, the daemon restarted on SQLite)", () => {
  let db: TestDatabase
  let daemon: Daemon | undefined
  let config: string
  const clients: Array<DBALClient> = []
  const client = (port: number, reconnect: false | { initialDelayMs: number; maxDelayMs: number }) => {
    const c = new DBALClient({ mode: "production", endpoint: `ws://127.0.0.1:${port}`, auth, reconnect })
    clients.push(c)
    return c
  }
  const subscriptions = async (port: number): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    const line = text.split("\n").find((l) => l.startsWith("dbal_realtime_subscriptions "))
    return line === undefined ? 0 : Number(line.split(" ")[1])
  }
  const page = (title: string) => ({ slug: `r-${randomUUID().slice(0, 8)}`, title, level: 1, layout: {} })

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`])
    // The restarted daemon listens where the clients reconnect to.
    config = writeConfig(daemonConfig(db, { server: { host: "127.0.0.1", port: daemon.port } }))
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await daemon?.stop()
    await db?.drop()
  })

  it("the AsyncIterable and the Effect Stream keep their events after the daemon restarts; without reconnecting, the stream fails with ConnectionLost", async () => {
    const port = daemon!.port
    const tag = randomUUID().slice(0, 8)
    const fast = { initialDelayMs: 20, maxDelayMs: 200 }
    const writer = client(port, fast)
    let resubscribed = 0
    const iterable = client(port, fast).pages.subscribe({ filter: { title: tag }, onResubscribed: () => void resubscribed++ })
    const seen = iterable[Symbol.asyncIterator]()
    let streamResubscribed = 0
    const streamed = Effect.runPromise(
      Stream.runCollect(
        Stream.take(
          client(port, fast).effect.pages.subscribe({ filter: { title: tag }, onResubscribed: () => void streamResubscribed++ }),
          2
        )
      )
    )
    const notReconnecting = client(port, false).pages.subscribe({ filter: { title: tag } })
    const once = notReconnecting[Symbol.asyncIterator]()
    await until("the three subscriptions", async () => ((await subscriptions(port)) >= 3 ? true : undefined), 5000)

    const a = await writer.pages.create(page(tag))
    expect((await seen.next()).value).toMatchObject({ event: "create", record: { id: a.id } })
    expect((await once.next()).value).toMatchObject({ event: "create", record: { id: a.id } })

    await daemon!.stop()
    daemon = await startDaemon([`--config=${config}`])
    expect(daemon.port).toBe(port)
    // Both subscribed again on the new daemon (which starts with none).
    await until("the re-subscriptions", async () => ((await subscriptions(port)) >= 2 ? true : undefined), 10_000)
    await until("onResubscribed", () => (resubscribed === 1 && streamResubscribed === 1 ? true : undefined), 5000)

    const b = await writer.pages.create(page(tag))
    expect((await seen.next()).value).toMatchObject({ event: "create", record: { id: b.id } })
    expect(Chunk.toReadonlyArray(await streamed).map((e) => [e.event, e.record.id])).toEqual([
      ["create", a.id],
      ["create", b.id]
    ])
    const lost = await once.next().then(
      () => undefined,
      (x: unknown) => x
    )
    expect(lost).toBeInstanceOf(DbalError)
    expect((lost as DbalError).kind).toBe("ConnectionLost")
    await iterable.close()
    await until("the subscriptions to end", async () => ((await subscriptions(port)) === 0 ? true : undefined), 5000)
  })
})
