/**
 * A write reads its rows' before images only when they can be used (RealtimeShape.wantsBeforeImages):
 * while this replica has subscriptions to the entity, or always in a cluster (other replicas may
 * have some). Without them it announces row ids only (src/query/Capture.ts).
 */
import { Effect, type ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EntityRegistry } from "../../src/entity/Model.js"
import { TRUE } from "../../src/query/Filter.js"
import { type PushChannel, Realtime } from "../../src/services/Realtime.js"
import { type InProcess, startInProcess } from "../support/inprocess.js"
import { createDatabase, daemonConfig, SERVICE_TOKEN, type TestDatabase, writeConfig } from "../support/services.js"

describe("before images only where they can be used (sqlite)", () => {
  let db: TestDatabase
  let single: InProcess
  let clustered: InProcess

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    single = await startInProcess(writeConfig(daemonConfig(db)))
    const base = daemonConfig(db)
    clustered = await startInProcess(
      writeConfig({ ...base, cluster: { changes: "redis", redis_url: process.env.DBAL_TEST_REDIS_URL ?? "redis://127.0.0.1:6379" } })
    )
  })
  afterAll(async () => {
    await single?.runtime.dispose()
    await clustered?.runtime.dispose()
    await db?.drop()
  })

  /** The application's runtime, for its services (core() provides them all). */
  const services = (p: InProcess) => p.runtime as unknown as ManagedRuntime.ManagedRuntime<Realtime | EntityRegistry, unknown>

  const channel = (): PushChannel & { close: () => void } => {
    const closers: Array<() => void> = []
    return {
      push: () => "sent",
      flush: () => undefined,
      onClose: (f) => void closers.push(f),
      close: () => closers.forEach((f) => f())
    }
  }

  it("single replica: only while the entity has subscriptions", async () => {
    const [realtime, registry] = await services(single).runPromise(Effect.zip(Realtime, EntityRegistry))
    const page = registry.entities.get("PageView")!
    expect(realtime.wantsBeforeImages("PageView")).toBe(false)
    const ch = channel()
    const id = await services(single).runPromise(
      realtime.subscribe(
        {
          channel: ch,
          principal: { userId: "tests", role: "system", via: "service-token" },
          credentials: { token: SERVICE_TOKEN, userId: "tests" }
        },
        page,
        TRUE
      )
    )
    expect(realtime.wantsBeforeImages("PageView")).toBe(true)
    expect(realtime.wantsBeforeImages("User")).toBe(false)
    await services(single).runPromise(realtime.unsubscribe(ch, id))
    expect(realtime.wantsBeforeImages("PageView")).toBe(false)
  })

  it("cluster: always (the other replicas' subscribers are not known here)", async () => {
    const realtime = await services(clustered).runPromise(Realtime)
    expect(realtime.wantsBeforeImages("PageView")).toBe(true)
  })
})
