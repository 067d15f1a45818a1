/**
 * Realtime layer: the subscriptions of this replica and the delivery of changes to them
 * (docs/realtime.md).
 *
 * - Subscriptions are indexed by entity. A change to an entity nobody here subscribes to costs
 *   nothing; otherwise its rows are read once (one query per change, batched with the changes
 *   queued behind it), whatever the number of subscribers.
 * - Each subscriber's read decision is taken once per principal and entity (cached until the
 *   next credential check) and compiled to an in-memory test (src/query/FilterMatch.ts), as is
 *   its subscription filter; the event each gets follows src/realtime/Deliver.ts. Records are
 *   serialized once per distinct view, not once per subscriber.
 * - Changes are handled one batch at a time, in the order this replica heard them: events of one
 *   row reach a subscriber in that order, and each carries the row as read after the write.
 * - Credentials are checked again every `revalidate_interval`, at the earliest session or token
 *   expiry, and when a Session or User is written anywhere: a subscription whose credentials are
 *   refused, or whose principal may no longer read the entity, ends with one error frame.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Exit, Layer, Option, Queue } from "effect"
import { AppConfig } from "../src/Config.js"
import { Forbidden, NotFound, RateLimited, type RequestError, toWireError } from "../src/Errors.js"
import { EntityRegistry, type EntityDef } from "../src/entity/Model.js"
import { isUuid } from "../src/entity/Validate.js"
import {
  realtimeDelivery,
  realtimeEndedOf,
  realtimeEvents,
  realtimeFetches,
  realtimeSubscribers,
  realtimeSubscriptions
} from "../src/Metrics.js"
import { decodeRow, type Row } from "../src/query/Codec.js"
import { compileFilter, type FilterNode } from "../src/query/Filter.js"
import { compileMatch } from "../src/query/FilterMatch.js"
import { decide, project, type Test, type View } from "../src/realtime/Deliver.js"
import { Acl } from "../src/services/Acl.js"
import { Auth, type Credentials } from "../src/services/Auth.js"
import { Changes, type EntityChange, type RowChange, type RowImage } from "../src/services/Changes.js"
import { Database } from "../src/services/Database.js"
import type { Principal } from "../src/services/Principal.js"
import { type PushChannel, Realtime, type Subscriber } from "../src/services/Realtime.js"

interface Conn {
  readonly channel: PushChannel
  readonly subs: Map<string, Sub>
}

interface Sub {
  readonly id: string
  /** `{"subscription":"<id>","event":"` — the start of every frame it gets. */
  readonly head: string
  readonly conn: Conn
  readonly entity: EntityDef
  readonly filter: Test
  readonly credentials: Credentials
  /** Whom the per-principal limit counts it against (the principal at subscribe time). */
  readonly owner: string
  principal: Principal
  live: boolean
  /** Its view as of `viewGeneration` (saves a key per subscriber and event). */
  view: View | null | undefined
  viewGeneration: number
}

type Job = { readonly _tag: "change"; readonly change: EntityChange; readonly at: number } | { readonly _tag: "recheck" }

/** Ids per `IN (...)` list of a fetch. */
const ID_CHUNK = 500

const viewKey = (entity: EntityDef, p: Principal) => `${entity.name}\u0000${p.role}\u0000${p.userId}`
const credentialKey = (c: Credentials) => `${c.userId ?? ""}\u0000${c.token}`

export const make = Effect.gen(function* () {
  const config = yield* AppConfig
  const cfg = config.realtime
  const registry = yield* EntityRegistry
  const db = yield* Database
  const acl = yield* Acl
  const auth = yield* Auth
  const changes = yield* Changes
  const { sql, dialect } = db

  const conns = new Map<PushChannel, Conn>()
  const byEntity = new Map<string, Set<Sub>>()
  const perPrincipal = new Map<string, number>()
  let total = 0
  /** Read decisions by entity × principal; null: refused. Emptied at every credential check. */
  const views = new Map<string, View | null>()
  let viewGeneration = 0
  const jobs = yield* Queue.unbounded<Job>()
  const offer = (job: Job) => void Queue.unsafeOffer(jobs, job)

  const gauges = () => {
    realtimeSubscriptions.unsafeUpdate(total, [])
    realtimeSubscribers.unsafeUpdate(conns.size, [])
  }

  const remove = (sub: Sub) => {
    if (!sub.live) return
    sub.live = false
    sub.conn.subs.delete(sub.id)
    const set = byEntity.get(sub.entity.name)
    set?.delete(sub)
    if (set !== undefined && set.size === 0) byEntity.delete(sub.entity.name)
    const n = (perPrincipal.get(sub.owner) ?? 1) - 1
    if (n <= 0) perPrincipal.delete(sub.owner)
    else perPrincipal.set(sub.owner, n)
    total--
    if (sub.conn.subs.size === 0) conns.delete(sub.conn.channel)
    gauges()
  }

  const dropConnection = (conn: Conn, slow: boolean) => {
    const subs = [...conn.subs.values()]
    for (const s of subs) remove(s)
    if (slow) realtimeEndedOf("slow").unsafeUpdate(subs.length, [])
  }

  /** Ends a subscription with its one error frame. */
  const end = (sub: Sub, error: RequestError) => {
    if (!sub.live) return
    remove(sub)
    realtimeEndedOf("revoked").unsafeUpdate(1, [])
    sub.conn.channel.push(JSON.stringify({ subscription: sub.id, error: toWireError(error) }))
  }

  // --- the next credential check: every revalidate_interval, or at the earliest expiry
  let timer: ReturnType<typeof setTimeout> | undefined
  let nextAt = Number.POSITIVE_INFINITY
  const schedule = (at: number) => {
    if (at >= nextAt && timer !== undefined) return
    if (timer !== undefined) clearTimeout(timer)
    nextAt = at
    timer = setTimeout(
      () => {
        timer = undefined
        nextAt = Number.POSITIVE_INFINITY
        offer({ _tag: "recheck" })
      },
      Math.max(0, at - Date.now())
    )
    timer.unref()
  }
  const expiryOf = (p: Principal) => (p.expiresAt === undefined ? Number.POSITIVE_INFINITY : p.expiresAt + 1)
  yield* Effect.addFinalizer(() => Effect.sync(() => timer !== undefined && clearTimeout(timer)))

  const viewOf = (sub: Sub): Effect.Effect<View | null> => {
    const key = viewKey(sub.entity, sub.principal)
    const known = views.get(key)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.map(Effect.either(acl.decide(sub.principal, sub.entity, "read")), (d) => {
      const view =
        d._tag === "Left"
          ? null
          : {
              access: compileMatch(d.right.rowFilter),
              readable: d.right.readable,
              allRows: d.right.rowFilter._tag === "And" && d.right.rowFilter.nodes.length === 0
            }
      views.set(key, view)
      return view
    })
  }

  const subscribe = (who: Subscriber, entity: EntityDef, filter: FilterNode): Effect.Effect<string, RateLimited> =>
    Effect.suspend(() => {
      const existing = conns.get(who.channel)
      if ((existing?.subs.size ?? 0) >= cfg.max_subscriptions_per_connection) {
        return Effect.fail(
          new RateLimited({ retryAfter: 1, reason: `at most ${cfg.max_subscriptions_per_connection} subscriptions per connection` })
        )
      }
      const owner = who.principal.userId
      if ((perPrincipal.get(owner) ?? 0) >= cfg.max_subscriptions_per_principal) {
        return Effect.fail(
          new RateLimited({ retryAfter: 1, reason: `at most ${cfg.max_subscriptions_per_principal} subscriptions per principal` })
        )
      }
      const conn: Conn = existing ?? { channel: who.channel, subs: new Map() }
      const id = crypto.randomUUID()
      const sub: Sub = {
        id,
        head: `{"subscription":"${id}","event":"`,
        conn,
        entity,
        filter: compileMatch(filter),
        credentials: who.credentials,
        owner,
        principal: who.principal,
        live: true,
        view: undefined,
        viewGeneration: -1
      }
      conn.subs.set(id, sub)
      conns.set(who.channel, conn)
      let set = byEntity.get(entity.name)
      if (set === undefined) byEntity.set(entity.name, (set = new Set()))
      set.add(sub)
      perPrincipal.set(owner, (perPrincipal.get(owner) ?? 0) + 1)
      total++
      gauges()
      schedule(Math.min(Date.now() + cfg.revalidate_interval * 1000, expiryOf(who.principal)))
      if (existing === undefined) who.channel.onClose(() => dropConnection(conn, false))
      return Effect.succeed(id)
    })

  const unsubscribe = (channel: PushChannel, id: string): Effect.Effect<true, NotFound> =>
    Effect.suspend(() => {
      const sub = conns.get(channel)?.subs.get(id)
      if (sub === undefined) return Effect.fail(new NotFound({ entity: "subscription" }))
      remove(sub)
      return Effect.succeed(true as const)
    })

  const liveSubs = (): Array<Sub> => [...conns.values()].flatMap((c) => [...c.subs.values()])

  /** Checks every subscriber's credentials (once per distinct credential) and read access. */
  const recheck = Effect.gen(function* () {
    views.clear()
    viewGeneration++
    const groups = new Map<string, Array<Sub>>()
    for (const s of liveSubs()) {
      const k = credentialKey(s.credentials)
      const g = groups.get(k)
      if (g === undefined) groups.set(k, [s])
      else g.push(s)
    }
    for (const subs of groups.values()) {
      const exit = yield* Effect.exit(auth.recheck(subs[0]!.credentials))
      if (Exit.isSuccess(exit)) {
        for (const s of subs) s.principal = exit.value
        continue
      }
      const e = Option.getOrUndefined(Cause.failureOption(exit.cause))
      // The database not answering says nothing about the credentials: checked again later.
      if (e?._tag === "Unauthorized") for (const s of subs) end(s, e)
    }
    let next = Date.now() + cfg.revalidate_interval * 1000
    for (const s of liveSubs()) {
      const view = yield* viewOf(s)
      if (view === null) end(s, new Forbidden({ reason: `Insufficient permissions for operation 'read' on entity '${s.entity.name}'` }))
      else next = Math.min(next, expiryOf(s.principal))
    }
    if (total > 0) schedule(next)
  })

  /** The rows of `entity` with these ids as they are now, read in one query per 500 ids. */
  const fetchRows = (entity: EntityDef, ids: ReadonlyArray<string>): Effect.Effect<Map<string, RowImage>, SqlError> =>
    Effect.gen(function* () {
      const out = new Map<string, RowImage>()
      const pk = entity.primaryKey
      const valid = pk.type === "uuid" ? ids.filter(isUuid) : ids
      for (let i = 0; i < valid.length; i += ID_CHUNK) {
        const idIn: FilterNode = { _tag: "In", field: pk, values: valid.slice(i, i + ID_CHUNK), negate: false }
        realtimeFetches.unsafeUpdate(1, [])
        const rows = yield* db.query(
          sql<Row>`SELECT ${sql.join(", ", false)(entity.exposed.map((f) => sql`${sql(f.column)}`))} FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, idIn)}`
        )
        for (const row of rows) out.set(String(row[pk.column]).toLowerCase(), decodeRow(dialect, entity, row, entity.exposed))
      }
      return out
    })

  /** Pushes one row's events to the subscribers of its entity. */
  const deliverRow = (entity: EntityDef, subs: ReadonlySet<Sub>, change: RowChange, after: RowImage | undefined): number => {
    const records = new Map<View, { after?: string; before?: string }>()
    const idOnly = JSON.stringify({ [entity.primaryKey.name]: change.id })
    const completeBefore = change.before !== undefined && change.partial !== true ? change.before : undefined
    let sent = 0
    for (const sub of subs) {
      if (!sub.live) continue
      if (sub.viewGeneration !== viewGeneration) {
        sub.view = views.get(viewKey(sub.entity, sub.principal))
        sub.viewGeneration = viewGeneration
      }
      const view = sub.view
      if (view === undefined || view === null) {
        sub.viewGeneration = -1
        continue
      }
      const d = decide(view, sub.filter, change, after)
      if (d === undefined) continue
      let record = idOnly
      if (d.from !== "id") {
        let cached = records.get(view)
        if (cached === undefined) records.set(view, (cached = {}))
        if (d.from === "after") {
          record = cached.after ??= JSON.stringify(project(entity, view, after!))
          // Nothing this subscriber can see changed (a no-op update, a rolled-back write).
          if (
            d.event === "update" &&
            completeBefore !== undefined &&
            (cached.before ??= JSON.stringify(project(entity, view, completeBefore))) === record
          )
            continue
        } else record = cached.before ??= JSON.stringify(project(entity, view, change.before!))
      }
      const result = sub.conn.channel.push(`${sub.head}${d.event}","record":${record}}`)
      if (result === "sent") sent++
      else dropConnection(sub.conn, result === "slow")
    }
    return sent
  }

  const handle = (batch: ReadonlyArray<Job>) =>
    Effect.gen(function* () {
      if (batch.some((j) => j._tag === "recheck")) yield* recheck
      const work = batch.filter((j): j is Extract<Job, { _tag: "change" }> => j._tag === "change" && byEntity.has(j.change.entity))
      if (work.length === 0) return
      // One read per entity for the whole batch: the rows as they are now.
      const wanted = new Map<string, Set<string>>()
      for (const j of work) {
        let ids = wanted.get(j.change.entity)
        if (ids === undefined) wanted.set(j.change.entity, (ids = new Set()))
        for (const r of j.change.rows) ids.add(r.id.toLowerCase())
      }
      const fetched = new Map<string, Map<string, RowImage>>()
      for (const [name, ids] of wanted) {
        const entity = registry.entities.get(name)
        if (entity === undefined) continue
        const rows = yield* Effect.either(fetchRows(entity, [...ids]))
        if (rows._tag === "Right") fetched.set(name, rows.right)
        else yield* Effect.logWarning(`realtime: the changed ${name} rows could not be read; their events are lost`, rows.left.message)
      }
      for (const name of fetched.keys()) for (const s of byEntity.get(name) ?? []) yield* viewOf(s)
      for (const j of work) {
        const entity = registry.entities.get(j.change.entity)
        const rows = fetched.get(j.change.entity)
        const subs = byEntity.get(j.change.entity)
        if (entity === undefined || rows === undefined || subs === undefined) continue
        let sent = 0
        for (const change of j.change.rows) sent += deliverRow(entity, subs, change, rows.get(change.id.toLowerCase()))
        if (sent > 0) {
          realtimeEvents.unsafeUpdate(sent, [])
          realtimeDelivery.unsafeUpdate((performance.now() - j.at) / 1000, [])
        }
      }
    })

  const loop = Queue.take(jobs).pipe(
    Effect.flatMap((first) => Effect.map(Queue.takeAll(jobs), (rest) => [first, ...rest])),
    Effect.flatMap(handle),
    Effect.catchAllCause((cause) => Effect.logError("realtime: a batch of changes failed", cause)),
    Effect.forever
  )
  yield* Effect.forkScoped(loop)

  yield* changes.subscribeRows((change) => {
    if (byEntity.has(change.entity)) offer({ _tag: "change", change, at: performance.now() })
  })
  yield* changes.subscribe((entity) => {
    if (total > 0 && (entity === "Session" || entity === "User")) offer({ _tag: "recheck" })
  })

  return { subscribe, unsubscribe }
})

export const layer = Layer.scoped(Realtime, make)
