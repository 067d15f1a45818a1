/**
 * Changes layer: writes made through the daemon, announced by entity name to the listeners of
 * this process (at once) and, with `cluster.changes`, to every other replica:
 * - postgresql: `SELECT pg_notify(channel, payload)` on the served database, and one dedicated
 *   connection that LISTENs (re-established with backoff if it drops);
 * - redis: PUBLISH / SUBSCRIBE on `cluster.redis_url`.
 * A replica ignores its own announcements (its listeners already ran).
 */
import { Effect, Layer, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import type pg from "pg"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { Changes } from "../src/services/Changes.js"
import { Database } from "../src/services/Database.js"

interface Message {
  readonly origin: string
  readonly entity: string
}

const parse = (payload: string): Message | undefined => {
  try {
    const m = JSON.parse(payload) as Partial<Message>
    return typeof m.origin === "string" && typeof m.entity === "string" ? { origin: m.origin, entity: m.entity } : undefined
  } catch {
    return undefined
  }
}

/** Keeps one LISTEN connection open; returns its closer. */
const pgListener = (driver: typeof pg, cfg: DaemonConfig, channel: string, onMessage: (payload: string) => void, onError: (e: unknown) => void) => {
  const c = cfg.database.connection
  let client: pg.Client | undefined
  let stopped = false
  let delay = 200
  const connect = () => {
    if (stopped) return
    const next = new driver.Client({
      host: c.host,
      port: c.port ?? 5432,
      database: c.database,
      user: c.user,
      ...(c.password === undefined ? {} : { password: Redacted.value(c.password) }),
      ...(c.ssl_mode === "disable" ? {} : { ssl: { rejectUnauthorized: c.ssl_mode === "verify-full" } }),
      application_name: "dbal-daemon-changes"
    })
    const retry = (e: unknown) => {
      onError(e)
      next.removeAllListeners()
      next.end().catch(() => undefined)
      if (client === next) client = undefined
      if (!stopped) setTimeout(connect, delay).unref()
      delay = Math.min(delay * 2, 5000)
    }
    next.on("error", retry)
    next.on("notification", (n) => {
      if (n.channel === channel && n.payload !== undefined) onMessage(n.payload)
    })
    next
      .connect()
      .then(() => next.query(`LISTEN ${channel}`))
      .then(() => {
        client = next
        delay = 200
      })
      .catch(retry)
  }
  connect()
  return () => {
    stopped = true
    const c2 = client
    client = undefined
    return c2 === undefined ? Promise.resolve() : c2.end().catch(() => undefined)
  }
}

export const layer = Layer.scoped(
  Changes,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    const origin = randomUUID()
    const listeners: Array<(entity: string) => void> = []
    const local = (entity: string) => {
      for (const l of listeners) l(entity)
    }
    const onRemote = (payload: string) => {
      const m = parse(payload)
      if (m !== undefined && m.origin !== origin) local(m.entity)
    }
    const channel = cfg.cluster.channel
    let broadcast: (entity: string) => Effect.Effect<void> = () => Effect.void

    if (cfg.cluster.changes === "postgresql") {
      const db = yield* Database
      const driver = (yield* Effect.promise(() => import("pg"))).default
      const close = pgListener(driver, cfg, channel, onRemote, () => undefined)
      yield* Effect.addFinalizer(() => Effect.promise(close))
      broadcast = (entity) =>
        db.sql`SELECT pg_notify(${channel}, ${JSON.stringify({ origin, entity } satisfies Message)})`.pipe(
          Effect.catchAll((e) => Effect.logWarning("change not announced to the other replicas", e.message)),
          Effect.asVoid
        )
    } else if (cfg.cluster.changes === "redis") {
      const options = { enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000 }
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const pub = new Redis(Redacted.value(cfg.cluster.redis_url), options)
      const sub = new Redis(Redacted.value(cfg.cluster.redis_url), { ...options, enableOfflineQueue: true })
      pub.on("error", () => undefined)
      sub.on("error", () => undefined)
      sub.on("message", (ch: string, payload: string) => {
        if (ch === channel) onRemote(payload)
      })
      yield* Effect.promise(() => sub.subscribe(channel).catch(() => undefined))
      yield* Effect.addFinalizer(() => Effect.sync(() => (pub.disconnect(), sub.disconnect())))
      broadcast = (entity) =>
        Effect.tryPromise(() => pub.publish(channel, JSON.stringify({ origin, entity } satisfies Message))).pipe(
          Effect.catchAll(() => Effect.logWarning("change not announced to the other replicas (redis)")),
          Effect.asVoid
        )
    }

    return {
      publish: (entity) => Effect.zipRight(Effect.sync(() => local(entity)), broadcast(entity)),
      subscribe: (listener) => Effect.sync(() => void listeners.push(listener))
    }
  })
)
