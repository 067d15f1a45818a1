/**
 * Realtime layer: the subscriptions of this replica and the delivery of changes to them
 * (docs/realtime.md).
 *
 * - Subscriptions are indexed by entity. A change to an entity nobody here subscribes to costs
 *   nothing; otherwise its rows are read once (one query per change, batched with the changes
 *   queued behind it), whatever the number of subscribers.
 * - Each subscriber's read decision is taken once per principal and entity (cached until the
 *   next credential check) and compiled to an in-memory test (src/query/FilterMatch.ts), as is
 *   its subscription filter; the event each gets follows src/realtime/Deliver.ts.
 * - Subscriptions with the same effective access — the same compiled view (row filter, readable
 *   fields: principals whose rules come out the same share one) and the same subscription
 *   filter — form a group. A change is decided and serialized once per group; then it goes out
 *   connection by connection, each subscriber's frame being its own prefix and its group's event
 *   text, laid out without a string per subscriber and written once per connection
 *   (src/realtime/PushSocket.ts). A fan-out yields to the event loop every `FANOUT_SLICE`
 *   frames, what it pushed written first, so that requests are served meanwhile.
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
import { filterKey } from "../src/realtime/Groups.js"
import { compileMatch } from "../src/query/FilterMatch.js"
import { type Decided, decide, project, type Test, type View } from "../src/realtime/Deliver.js"
import { EMPTY } from "../src/realtime/PushSocket.js"
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

/** A subscription filter, compiled once for all the subscriptions that have it. */
interface SharedFilter {
  readonly key: string
  readonly test: Test
  refs: number
}

/** A read decision, compiled; interned by content, so that principals with the same access share it. */
interface SharedView extends View {
  readonly id: number
}

/** The subscriptions of one entity with one view and one filter: a change is decided once for all of them. */
interface Group {
  readonly key: string
  readonly view: SharedView
  readonly filter: Test
  readonly subs: Set<Sub>
  /** During a fan-out: the event text of each of the change's rows for this group (null: nothing). */
  tails: Array<Uint8Array | null>
}

interface EntitySubs {
  readonly all: Set<Sub>
  /** The same subscriptions by connection: a fan-out goes connection by connection, one write each. */
  readonly byConn: Map<Conn, Set<Sub>>
  /** Subscriptions not yet in a group: new ones, and all of them after a credential check. */
  readonly pending: Set<Sub>
  readonly groups: Map<string, Group>
}

interface Sub {
  readonly id: string
  /** `{"subscription":"<id>","event":"` — the start of every frame it gets, as UTF-8. */
  readonly head: Uint8Array
  readonly conn: Conn
  readonly entity: EntityDef
  readonly filter: SharedFilter
  readonly credentials: Credentials
  /** Whom the per-principal limit counts it against (the principal at subscribe time). */
  readonly owner: string
  principal: Principal
  live: boolean
  group: Group | undefined
}

type Job = { readonly _tag: "change"; readonly change: EntityChange; readonly at: number } | { readonly _tag: "recheck" }

/** Ids per `IN (...)` list of a fetch. */
const ID_CHUNK = 500

/** Frames pushed between two yields to the event loop during a fan-out. */
const FANOUT_SLICE = 1000

/** Lets the event loop serve I/O (Effect's own yield runs on microtasks, before any I/O). */
const yieldToLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const h = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(h))
})

const utf8 = (s: string): Uint8Array => Buffer.from(s, "utf8")

/** A row's record texts for one view, and its event texts by event and source. */
interface RowTexts {
  after?: string
  before?: string
  readonly tails: Map<string, Uint8Array | null>
}

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
  const byEntity = new Map<string, EntitySubs>()
  const perPrincipal = new Map<string, number>()
  let total = 0
  /** Read decisions by entity × principal; null: refused. Emptied at every credential check. */
  const views = new Map<string, SharedView | null>()
  /** The same decisions by what they admit (entity, row filter, readable fields). Emptied with `views`. */
  const viewsByContent = new Map<string, SharedView>()
  let nextViewId = 0
  const filters = new Map<string, SharedFilter>()
  const jobs = yield* Queue.unbounded<Job>()
  const offer = (job: Job) => void Queue.unsafeOffer(jobs, job)

  const gauges = () => {
    realtimeSubscriptions.unsafeUpdate(total, [])
    realtimeSubscribers.unsafeUpdate(conns.size, [])
  }

  const ungroup = (es: EntitySubs, sub: Sub) => {
    const g = sub.group
    if (g === undefined) return
    sub.group = undefined
    g.subs.delete(sub)
    if (g.subs.size === 0 && es.groups.get(g.key) === g) es.groups.delete(g.key)
  }

  const remove = (sub: Sub) => {
    if (!sub.live) return
    sub.live = false
    sub.conn.subs.delete(sub.id)
    const es = byEntity.get(sub.entity.name)
    if (es !== undefined) {
      es.all.delete(sub)
      const mine = es.byConn.get(sub.conn)
      mine?.delete(sub)
      if (mine?.size === 0) es.byConn.delete(sub.conn)
      es.pending.delete(sub)
      ungroup(es, sub)
      if (es.all.size === 0) byEntity.delete(sub.entity.name)
    }
    if (--sub.filter.refs === 0) filters.delete(sub.filter.key)
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
    sub.conn.channel.push(utf8(JSON.stringify({ subscription: sub.id, error: toWireError(error) })), EMPTY)
    sub.conn.channel.flush()
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

  const viewOf = (entity: EntityDef, principal: Principal): Effect.Effect<SharedView | null> => {
    const key = viewKey(entity, principal)
    const known = views.get(key)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.map(Effect.either(acl.decide(principal, entity, "read")), (d) => {
      let view: SharedView | null = null
      if (d._tag === "Right") {
        const { rowFilter, readable } = d.right
        const content = `${entity.name}\u0000${filterKey(rowFilter)}\u0000${readable.map((f) => f.name).join("\u0000")}`
        view = viewsByContent.get(content) ?? null
        if (view === null) {
          view = {
            id: nextViewId++,
            access: compileMatch(rowFilter),
            readable,
            allRows: rowFilter._tag === "And" && rowFilter.nodes.length === 0
          }
          viewsByContent.set(content, view)
        }
      }
      views.set(key, view)
      return view
    })
  }

  const sharedFilter = (filter: FilterNode): SharedFilter => {
    const key = filterKey(filter)
    let shared = filters.get(key)
    if (shared === undefined) filters.set(key, (shared = { key, test: compileMatch(filter), refs: 0 }))
    shared.refs++
    return shared
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
        head: utf8(`{"subscription":"${id}","event":"`),
        conn,
        entity,
        filter: sharedFilter(filter),
        credentials: who.credentials,
        owner,
        principal: who.principal,
        live: true,
        group: undefined
      }
      conn.subs.set(id, sub)
      conns.set(who.channel, conn)
      let es = byEntity.get(entity.name)
      if (es === undefined) byEntity.set(entity.name, (es = { all: new Set(), byConn: new Map(), pending: new Set(), groups: new Map() }))
      es.all.add(sub)
      let mine = es.byConn.get(conn)
      if (mine === undefined) es.byConn.set(conn, (mine = new Set()))
      mine.add(sub)
      es.pending.add(sub)
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
    viewsByContent.clear()
    // Every subscription is grouped again, by the views of this check.
    for (const es of byEntity.values()) {
      for (const g of es.groups.values())
        for (const s of g.subs) {
          s.group = undefined
          es.pending.add(s)
        }
      es.groups.clear()
    }
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
      const view = yield* viewOf(s.entity, s.principal)
      if (view === null) end(s, new Forbidden({ reason: `Insufficient permissions for operation 'read' on entity '${s.entity.name}'` }))
      else next = Math.min(next, expiryOf(s.principal))
    }
    if (total > 0) schedule(next)
  })

  /** Puts the entity's pending subscriptions into their groups (those whose access is refused wait for the check that ends them). */
  const place = (es: EntitySubs) =>
    Effect.gen(function* () {
      for (const sub of [...es.pending]) {
        if (!sub.live) {
          es.pending.delete(sub)
          continue
        }
        const view = yield* viewOf(sub.entity, sub.principal)
        if (view === null || !sub.live) continue
        const key = `${view.id}\u0000${sub.filter.key}`
        let g = es.groups.get(key)
        if (g === undefined) es.groups.set(key, (g = { key, view, filter: sub.filter.test, subs: new Set(), tails: [] }))
        g.subs.add(sub)
        sub.group = g
        es.pending.delete(sub)
      }
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

  /**
   * The text after a group's subscribers' own prefix for one changed row — `<event>","record":<record>}`
   * as UTF-8 — or null when the group gets nothing. Shared through `texts` by the groups of one view.
   */
  const tailFor = (entity: EntityDef, g: Group, change: RowChange, after: RowImage | undefined, texts: Map<SharedView, RowTexts>) => {
    const d: Decided = decide(g.view, g.filter, change, after)
    if (d === undefined) return null
    let t = texts.get(g.view)
    if (t === undefined) texts.set(g.view, (t = { tails: new Map() }))
    const k = `${d.event}${d.from}`
    const known = t.tails.get(k)
    if (known !== undefined) return known
    let record: string
    if (d.from === "id") record = JSON.stringify({ [entity.primaryKey.name]: change.id })
    else if (d.from === "before") record = t.before ??= JSON.stringify(project(entity, g.view, change.before!))
    else record = t.after ??= JSON.stringify(project(entity, g.view, after!))
    // Nothing this view can see changed (a no-op update, a rolled-back write): no event.
    const noop =
      d.event === "update" &&
      d.from === "after" &&
      change.before !== undefined &&
      change.partial !== true &&
      (t.before ??= JSON.stringify(project(entity, g.view, change.before))) === record
    const tail = noop ? null : utf8(`${d.event}","record":${record}}`)
    t.tails.set(k, tail)
    return tail
  }

  /**
   * Pushes the events of one change's rows: decided per group and row first, then written
   * connection by connection (each subscriber's frames in row order, one write per connection).
   * After every FANOUT_SLICE frames the event loop gets a turn, what was pushed written first.
   * Returns the frames sent.
   */
  const fanOut = (entity: EntityDef, es: EntitySubs, rows: ReadonlyArray<RowChange>, fetched: Map<string, RowImage>) =>
    Effect.gen(function* () {
      for (let r = 0; r < rows.length; r++) {
        const change = rows[r]!
        const after = fetched.get(change.id.toLowerCase())
        const texts = new Map<SharedView, RowTexts>()
        for (const g of es.groups.values()) g.tails[r] = tailFor(entity, g, change, after, texts)
      }
      let sent = 0
      let budget = FANOUT_SLICE
      for (const [conn, subs] of es.byConn) {
        let open = true
        for (const sub of subs) {
          const g = sub.group
          if (!sub.live || g === undefined) continue
          for (let r = 0; r < rows.length && open; r++) {
            const tail = g.tails[r]
            if (tail === null || tail === undefined) continue
            const result = conn.channel.push(sub.head, tail)
            if (result === "sent") {
              sent++
              budget--
            } else {
              dropConnection(conn, result === "slow")
              open = false
            }
          }
          if (!open) break
          if (budget <= 0) {
            conn.channel.flush()
            yield* yieldToLoop
            budget = FANOUT_SLICE
          }
        }
        if (open) conn.channel.flush()
      }
      return sent
    })

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
      for (const j of work) {
        const entity = registry.entities.get(j.change.entity)
        const rows = fetched.get(j.change.entity)
        const es = byEntity.get(j.change.entity)
        if (entity === undefined || rows === undefined || es === undefined) continue
        if (es.pending.size > 0) yield* place(es)
        const sent = yield* fanOut(entity, es, j.change.rows, rows)
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

  const clustered = config.cluster.changes !== "none"
  const wantsBeforeImages = (entity: string) => clustered || byEntity.has(entity)

  return { subscribe, unsubscribe, wantsBeforeImages }
})

export const layer = Layer.scoped(Realtime, make)
