/**
 * Changes layer: writes made through the daemon, announced by entity name (with the rows they
 * touched, src/realtime/Announce.ts) to the listeners of this process (at once) and, with
 * `cluster.changes`, to every other replica:
 * - postgresql: `SELECT pg_notify(channel, payload)` on the served database, and one dedicated
 *   connection that LISTENs (re-established with backoff if it drops);
 * - redis: PUBLISH / SUBSCRIBE on `cluster.redis_url`.
 * A replica ignores its own announcements (its listeners already ran).
 */
import { Effect, Layer, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import type pg from "pg"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { EntityRegistry } from "../src/entity/Model.js"
import { decodeAnnouncement, encodeAnnouncements } from "../src/realtime/Announce.js"
import { Changes, type EntityChange, type RowChange } from "../src/services/Changes.js"
import { Database } from "../src/services/Database.js"

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
const PG_PAYLOAD_LIMIT = 7900
/** Redis has no such limit; this one keeps a bulk write's announcements to a few messages. */
const REDIS_PAYLOAD_LIMIT = 256 * 1024

/** Keeps one LISTEN connection open; returns its closer. */
const pgListener = (
  driver: typeof pg,
  cfg: DaemonConfig,
  channel: string,
  onMessage: (payload: string) => void,
  onError: (e: unknown) => void
) => {
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
    const registry = yield* EntityRegistry
    const origin = randomUUID()
    const listeners: Array<(entity: string) => void> = []
    const rowListeners: Array<(change: EntityChange) => void> = []
    // Fields that never leave the process in an announcement: sensitive and never_expose ones.
    const hidden = new Map<string, Set<string>>()
    for (const e of registry.entities.values())
      hidden.set(e.name, new Set(e.fields.filter((f) => f.sensitive || f.neverExpose).map((f) => f.name)))
    for (const ref of cfg.security.never_expose) {
      const [entity, field] = ref.split(".") as [string, string]
      hidden.get(entity)?.add(field)
    }
    const local = (entity: string, rows: ReadonlyArray<RowChange> | undefined, isLocal: boolean) => {
      for (const l of listeners) l(entity)
      if (rows !== undefined && rows.length > 0) for (const l of rowListeners) l({ entity, rows, local: isLocal })
    }
    const onRemote = (payload: string) => {
      const m = decodeAnnouncement(payload)
      if (m !== undefined && m.origin !== origin) local(m.entity, m.rows, false)
    }
    const channel = cfg.cluster.channel
    let broadcast: (entity: string, rows: ReadonlyArray<RowChange> | undefined) => Effect.Effect<void> = () => Effect.void

    if (cfg.cluster.changes === "postgresql") {
      const db = yield* Database
      const driver = (yield* Effect.promise(() => import("pg"))).default
      const close = pgListener(driver, cfg, channel, onRemote, () => undefined)
      yield* Effect.addFinalizer(() => Effect.promise(close))
      broadcast = (entity, rows) =>
        Effect.forEach(
          encodeAnnouncements(origin, entity, rows, PG_PAYLOAD_LIMIT, hidden.get(entity)),
          (payload) => db.sql`SELECT pg_notify(${channel}, ${payload})`,
          { discard: true }
        ).pipe(Effect.catchAll((e) => Effect.logWarning("change not announced to the other replicas", e.message)))
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
      // Announcements are not queued while Redis is away (they would arrive late and out of
      // order): the publishing connection is given a moment to be ready before the daemon serves.
      yield* Effect.promise(
        () =>
          new Promise<void>((ready) =>
            pub.status === "ready" ? ready() : (pub.once("ready", () => ready()), setTimeout(ready, 3000).unref())
          )
      )
      yield* Effect.addFinalizer(() => Effect.sync(() => (pub.disconnect(), sub.disconnect())))
      broadcast = (entity, rows) =>
        Effect.forEach(
          encodeAnnouncements(origin, entity, rows, REDIS_PAYLOAD_LIMIT, hidden.get(entity)),
          (payload) => Effect.tryPromise(() => pub.publish(channel, payload)),
          { discard: true }
        ).pipe(Effect.catchAll(() => Effect.logWarning("change not announced to the other replicas (redis)")))
    }

    return {
      publish: (entity, rows) =>
        Effect.zipRight(
          Effect.sync(() => local(entity, rows, true)),
          broadcast(entity, rows)
        ),
      subscribe: (listener) => Effect.sync(() => void listeners.push(listener)),
      subscribeRows: (listener) => Effect.sync(() => void rowListeners.push(listener))
    }
  })
)
