/**
 * The methods of the protocol, as one table (`MethodTable`): from it come the protocol's method
 * list, the write methods, the methods a transaction may hold, each request's rate-limit weight
 * and getCapabilities' list.
 *
 * Every method on an entity takes the same order (`onEntity`):
 *   decode   the params' JSON shape (400) and the entity (422 for an unknown one); pure (Either);
 *   decide   the access decision (403), before anything that could name a field; the Acl service;
 *   plan     validation of fields and values (422), fields the caller may not read or write (403),
 *            complexity (422), and what the repository is to run; pure (Either), no I/O;
 *   execute  the repository's statement, with its timeout, retries and spans (Effect);
 *   shape    the answer holds only the fields the caller may read (`viewOf`), by the statement's
 *            own column list.
 * The audit record follows in the handler (src/rpc/Handler.ts).
 */
import { Effect, Either } from "effect"
import type { DaemonConfig } from "../Config.js"
import {
  BadRequest,
  Forbidden,
  NotFound,
  NotSupported,
  type RequestError,
  TransactionOpFailed,
  Unavailable,
  ValidationFailed
} from "../Errors.js"
import { adapterOf } from "../entity/Ddl.js"
import type { AclOperation, EntityDef, EntityRegistryShape, FieldDef } from "../entity/Model.js"
import { isUuid, validateCreate, validateCreateMany, validateUpdate, type Values } from "../entity/Validate.js"
import { checkComplexity, type ComplexityRequest } from "../query/Complexity.js"
import { filterFields, type FilterNode, hasFieldCondition, operand, parseFilter } from "../query/Filter.js"
import type { Access, Include, Repository, SortKey } from "../query/Repository.js"
import type { ResultCacheShape } from "../services/ResultCache.js"
import type { AclShape, Decision } from "../services/Acl.js"
import type { DatabaseShape } from "../services/Database.js"
import type { Principal } from "../services/Principal.js"
import { checkNoRoleEscalation } from "./Guards.js"
import { getSchema } from "./Schema.js"
import { isRecord } from "../Json.js"

export interface MethodContext {
  readonly principal: Principal
  readonly registry: EntityRegistryShape
  readonly repo: Repository
  readonly acl: AclShape
  readonly config: DaemonConfig
  readonly db: DatabaseShape
  /** Absent inside a transaction: its reads see its own uncommitted writes. */
  readonly cache?: ResultCacheShape
  /**
   * Inside a transaction: the complexity its earlier operations scored. The operations share one
   * limit, `performance.max_query_complexity`.
   */
  readonly spent?: { score: number }
  /** The connection's subscriptions (src/services/Realtime.ts); absent where nothing can be pushed (realtime off, in-process client). */
  readonly live?: LiveHandle
}

/** `subscribe` and `unsubscribe` on the requesting connection, as its principal. */
export interface LiveHandle {
  readonly subscribe: (entity: EntityDef, filter: FilterNode) => Effect.Effect<string, RequestError>
  readonly unsubscribe: (id: string) => Effect.Effect<true, RequestError>
}

/** What makes two decisions give the same answer: the row filter (values included) and the fields. */
const decisionKey = (d: Access) => ({
  f: JSON.stringify(d.rowFilter, (k, v: unknown) =>
    k === "field" && v !== null && typeof v === "object" && "name" in v ? (v as FieldDef).name : v
  ),
  r: d.readable.map((f) => f.name)
})

/**
 * A read answered from the result cache when possible. The key holds everything that shapes the
 * answer: method, entity, params and the caller's effective access to every entity involved.
 */
const cachedRead = <A>(
  ctx: MethodContext,
  method: Method,
  params: ReadonlyArray<unknown>,
  reads: ReadonlyArray<{ readonly entity: EntityDef; readonly access: Access }>,
  compute: Effect.Effect<A, RequestError>
): Effect.Effect<A, RequestError> =>
  ctx.cache === undefined
    ? compute
    : ctx.cache.through(
        () => JSON.stringify([method, params, reads.map((r) => [r.entity.name, decisionKey(r.access)])]),
        reads.map((r) => r.entity.name),
        compute
      )

export interface Outcome {
  readonly result: unknown
  readonly entity?: string
  readonly recordIds?: ReadonlyArray<string>
}

// The decode and plan stages are plain functions returning Either: no I/O, and no Effect step
// per check (docs/architecture.md, "The request pipeline"). Effect is used where there is I/O or
// a service: the access decision (the Acl service) and the execute stage.

const left = <E>(e: E): Either.Either<never, E> => Either.left(e)
const ok: Either.Either<void, never> = Either.right(undefined)

const arity = (params: ReadonlyArray<unknown>, min: number, max: number, shape: string): Either.Either<void, BadRequest> =>
  params.length < min || params.length > max ? left(new BadRequest({ reason: `expected params ${shape}` })) : ok

const entityOf = (ctx: MethodContext, raw: unknown): Either.Either<EntityDef, RequestError> => {
  if (typeof raw !== "string") return left(new BadRequest({ reason: "params[0] must be the entity name (a string)" }))
  const e = ctx.registry.entities.get(raw)
  return e === undefined
    ? left(ValidationFailed.one("entity", `unknown entity (known: ${[...ctx.registry.entities.keys()].join(", ")})`))
    : Either.right(e)
}

/**
 * Refuses values for fields the decision does not let the principal write, and role escalation.
 * `sent`: the request's records (same order as `values`) for creates, whose values also hold the
 * entity's defaults: a default the caller did not send is not the caller's write.
 */
const checkWritable = (
  ctx: MethodContext,
  entity: EntityDef,
  decision: Decision,
  values: ReadonlyArray<Values>,
  sent?: ReadonlyArray<unknown>
): Either.Either<void, Forbidden> => {
  const writable = new Set(decision.writable)
  for (const [i, v] of values.entries()) {
    const given = sent?.[i]
    for (const f of v.keys()) {
      if (isRecord(given) && !Object.hasOwn(given, f.name)) continue
      if (!writable.has(f)) return left(new Forbidden({ reason: `field '${f.name}' may not be written by this principal` }))
    }
  }
  return checkNoRoleEscalation(ctx.principal, entity, values)
}

const decide = (ctx: MethodContext, entity: EntityDef, op: AclOperation) => ctx.acl.decide(ctx.principal, entity, op)

/**
 * What the caller may see of an entity, whatever the method: the fields of its `read` decision
 * (read_fields, never_expose). `readable` bounds every field a request tests (filter, sort,
 * lookup); `answer` shapes every record answered. A caller the read rules refuse outright tests
 * no field, and sees only the `id` of a record it writes (the handle it needs to name it again).
 */
interface View {
  readonly readable: ReadonlyArray<FieldDef>
  readonly answer: ReadonlyArray<FieldDef>
}

const viewOf = (ctx: MethodContext, entity: EntityDef): Effect.Effect<View> =>
  Effect.map(ctx.acl.readable(ctx.principal, entity), (readable): View =>
    readable === undefined ? { readable: [], answer: [entity.primaryKey] } : { readable, answer: readable }
  )

/** A write decision's row filter with the caller's readable fields: what the repository writes and answers. */
const writeAccess = (d: Decision, view: View): Access => ({ rowFilter: d.rowFilter, readable: view.answer })

/** A write decision with what the caller may see of the entity. */
interface WriteDecision {
  readonly decision: Decision
  readonly view: View
}

const decideWrite =
  (op: AclOperation) =>
  (ctx: MethodContext, entity: EntityDef): Effect.Effect<WriteDecision, Forbidden> =>
    Effect.flatMap(decide(ctx, entity, op), (decision) => Effect.map(viewOf(ctx, entity), (view) => ({ decision, view })))

const decideRead = (ctx: MethodContext, entity: EntityDef): Effect.Effect<Decision, Forbidden> => decide(ctx, entity, "read")

/** The access decision as a plain function, when the Acl service has one (docs/architecture.md, "The hot path"). */
const decideNow =
  (op: AclOperation) =>
  (ctx: MethodContext, entity: EntityDef): Either.Either<Decision, Forbidden> | undefined =>
    ctx.acl.decideNow?.(ctx.principal, entity, op)

/**
 * A field the principal may not see (read_fields, security.never_expose) cannot be tested by a
 * filter, sort or lookup either, in a read or a write: its values would leak through counts and
 * matches.
 */
const checkReadable = (readableFields: ReadonlyArray<FieldDef>, fields: ReadonlyArray<FieldDef>): Either.Either<void, Forbidden> => {
  const readable = new Set(readableFields)
  const hidden = fields.find((f) => !readable.has(f))
  return hidden === undefined
    ? ok
    : left(
        new Forbidden({
          reason: `field '${hidden.name}' may not be read by this principal, so it cannot be filtered, sorted or looked up by`
        })
      )
}

/**
 * The request's score against `performance.max_query_complexity`, shared by a transaction's
 * operations (the one state the plan stage updates: the transaction's running score).
 */
const admitComplexity = (ctx: MethodContext, q: ComplexityRequest): Either.Either<void, ValidationFailed> =>
  Either.map(checkComplexity(q, ctx.config.performance.max_query_complexity, ctx.spent?.score ?? 0), (c) => {
    if (ctx.spent !== undefined) ctx.spent.score += c.total
  })

const filterOf = (entity: EntityDef, raw: unknown, at: string) => parseFilter(entity, raw, at)

const requireFilter = (entity: EntityDef, raw: unknown): Either.Either<FilterNode, ValidationFailed> =>
  Either.flatMap(filterOf(entity, raw, "filter"), (node: FilterNode) =>
    raw === undefined || raw === null || !hasFieldCondition(node)
      ? left(ValidationFailed.one("filter", "bulk writes need a filter that tests at least one field"))
      : Either.right(node)
  )

const uniqueField = (entity: EntityDef, raw: string, at: string): Either.Either<FieldDef, RequestError> => {
  const f = entity.byName.get(raw)
  if (f === undefined || f.neverExpose) return left(ValidationFailed.one(at, `unknown field of ${entity.name}`))
  if (!f.unique) return left(ValidationFailed.one(at, `${raw} is not a unique field of ${entity.name}`))
  return Either.right(f)
}

/** A lookup value for a unique field (type-checked; a malformed id finds nothing, as `read` does). */
const lookupValue = (f: FieldDef, raw: unknown, at = "value"): Either.Either<unknown, ValidationFailed> => {
  if (f.type === "uuid" && typeof raw === "string" && !isUuid(raw)) return Either.right(undefined)
  return Either.mapLeft(operand(f, raw), (e) => ValidationFailed.one(at, e))
}

/**
 * The `*ByField` methods' lookup: a unique field the caller may read (403 otherwise), and its
 * value (undefined: a malformed id, which finds nothing).
 */
const readableLookup = (entity: EntityDef, name: string, raw: unknown, readable: ReadonlyArray<FieldDef>) =>
  Either.flatMap(uniqueField(entity, name, "field"), (f) =>
    Either.flatMap(lookupValue(f, raw), (v) => Either.map(checkReadable(readable, [f]), () => ({ f, v })))
  )

const parseSort = (entity: EntityDef, raw: unknown): Either.Either<Array<SortKey>, ValidationFailed> => {
  if (raw === undefined || raw === null) return Either.right([])
  const items = Array.isArray(raw) ? raw : [raw]
  const keys: Array<SortKey> = []
  const issues: Array<{ field: string; error: string }> = []
  items.forEach((item, i) => {
    const at = Array.isArray(raw) ? `sort[${i}]` : "sort"
    if (!isRecord(item)) return void issues.push({ field: at, error: 'must be an object {field: "asc" | "desc"}' })
    for (const [name, dir] of Object.entries(item)) {
      const f = entity.byName.get(name)
      if (f === undefined || f.neverExpose) issues.push({ field: `${at}.${name}`, error: `unknown field of ${entity.name}` })
      else if (f.type === "json" || f.type === "string_list")
        issues.push({ field: `${at}.${name}`, error: `${f.type === "json" ? "JSON fields" : "lists"} cannot be sorted` })
      else if (dir !== "asc" && dir !== "desc") issues.push({ field: `${at}.${name}`, error: 'must be "asc" or "desc"' })
      else if (!keys.some((k) => k.field === f)) keys.push({ field: f, direction: dir })
    }
  })
  if (keys.length > 8) issues.push({ field: "sort", error: "at most 8 sort keys" })
  return issues.length > 0 ? left(ValidationFailed.one(issues[0]!.field, issues[0]!.error)) : Either.right(keys)
}

const LIST_OPTIONS = new Set(["filter", "sort", "page", "limit", "include"])

/** `include: ["page"]` or `{page: true}` → the foreign-key fields whose records come along. */
const parseInclude = (entity: EntityDef, raw: unknown): Either.Either<Array<FieldDef>, ValidationFailed> => {
  if (raw === undefined || raw === null) return Either.right([])
  const names = Array.isArray(raw)
    ? raw
    : isRecord(raw)
      ? Object.entries(raw)
          .filter(([, v]) => v === true)
          .map(([k]) => k)
      : undefined
  if (names === undefined || !names.every((n): n is string => typeof n === "string")) {
    return left(ValidationFailed.one("include", 'must be a list of relation names, e.g. ["page"]'))
  }
  const relations = entity.fields.filter((f) => f.foreignKey !== undefined)
  const out: Array<FieldDef> = []
  for (const n of names) {
    const f = relations.find((r) => r.foreignKey!.relation === n)
    if (f === undefined) {
      const known = relations.map((r) => r.foreignKey!.relation)
      return left(
        ValidationFailed.one(
          `include.${n}`,
          `unknown relation of ${entity.name}${known.length > 0 ? ` (known: ${known.join(", ")})` : " (it has none)"}`
        )
      )
    }
    if (!out.includes(f)) out.push(f)
  }
  return Either.right(out)
}

/** List options after the access decision: keys, paging, filter, sort, complexity, includes. */
const listOptions = (ctx: MethodContext, entity: EntityDef, o: Record<string, unknown>) =>
  Either.gen(function* () {
    for (const k of Object.keys(o))
      if (!LIST_OPTIONS.has(k))
        return yield* left(ValidationFailed.one(k, "unknown list option (expected filter, sort, page, limit, include)"))
    const max = ctx.config.performance.max_page_size
    const page = o.page ?? 1
    const limit = o.limit ?? ctx.config.performance.default_page_size
    if (typeof page !== "number" || !Number.isSafeInteger(page) || page < 1)
      return yield* left(ValidationFailed.one("page", "must be an integer >= 1"))
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1 || limit > max) {
      return yield* left(ValidationFailed.one("limit", `must be an integer between 1 and ${max}`))
    }
    if ((page - 1) * limit > 1_000_000_000) return yield* left(ValidationFailed.one("page", "is too deep"))
    const filter = yield* filterOf(entity, o.filter, "filter")
    const sort = yield* parseSort(entity, o.sort)
    yield* admitComplexity(ctx, { filter, sortKeys: sort.length, page, limit })
    const include = yield* parseInclude(entity, o.include)
    return { page, limit, filter, sort, include }
  })

/** The id of an answered record, as the audit record names it (text: integer ids too). */
const idsOf = (entity: EntityDef, r: unknown): ReadonlyArray<string> => {
  const id = isRecord(r) ? r[entity.primaryKey.name] : undefined
  return typeof id === "string" || typeof id === "number" ? [String(id)] : []
}

/** params[i] as a record id: a string, or also an integer for an entity the database numbers; else 400. */
const idAt = (p: ReadonlyArray<unknown>, i: number, entity: EntityDef): Either.Either<string | number, BadRequest> => {
  const v = p[i]
  if (typeof v === "string") return Either.right(v)
  const numbered = entity.primaryKey.type === "integer"
  if (numbered && typeof v === "number" && Number.isSafeInteger(v)) return Either.right(v)
  return left(new BadRequest({ reason: `params[${i}] must be the record id (${numbered ? "an integer" : "a string"})` }))
}

/** params[i] as a string, else 400 with `what`. */
const stringAt = (p: ReadonlyArray<unknown>, i: number, what: string): Either.Either<string, BadRequest> =>
  typeof p[i] === "string" ? Either.right(p[i]) : left(new BadRequest({ reason: `params[${i}] must be ${what}` }))

/**
 * How a method on an entity runs, stage by stage; `onEntity` keeps the order for every method:
 * - `decode` sees only the params' JSON shape (400);
 * - `decide` takes the access decision (403) before anything that could name a field;
 * - `plan` validates and checks everything else and says what to run (422, 403), without I/O;
 * - `execute` runs the plan: the repository's statement (with its timeout, retries and spans),
 *   and the answer shaped by the plan's readable fields.
 */
interface EntityMethod<P, D, Q> {
  readonly params: readonly [min: number, max: number, shape: string]
  readonly decode: (p: ReadonlyArray<unknown>, entity: EntityDef) => Either.Either<P, BadRequest>
  readonly decide: (ctx: MethodContext, entity: EntityDef) => Effect.Effect<D, Forbidden>
  /** `decide` as a plain function, where the Acl service offers one (undefined: use `decide`). */
  readonly decideNow?: (ctx: MethodContext, entity: EntityDef) => Either.Either<D, Forbidden> | undefined
  readonly plan: (
    ctx: MethodContext,
    entity: EntityDef,
    params: P,
    decided: D,
    raw: ReadonlyArray<unknown>
  ) => Either.Either<Q, RequestError>
  readonly execute: (ctx: MethodContext, entity: EntityDef, plan: Q, raw: ReadonlyArray<unknown>) => Effect.Effect<Outcome, RequestError>
}

type Runner = (ctx: MethodContext, params: ReadonlyArray<unknown>) => Effect.Effect<Outcome, RequestError>

const onEntity =
  <P, D, Q>(m: EntityMethod<P, D, Q>): Runner =>
  (ctx, raw) => {
    const decoded = Either.flatMap(arity(raw, m.params[0], m.params[1], m.params[2]), () =>
      Either.flatMap(entityOf(ctx, raw[0]), (entity) => Either.map(m.decode(raw, entity), (params) => ({ entity, params })))
    )
    if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
    const { entity, params } = decoded.right
    const run = (decided: D): Effect.Effect<Outcome, RequestError> => {
      const planned = m.plan(ctx, entity, params, decided, raw)
      return Either.isLeft(planned) ? Effect.fail(planned.left) : m.execute(ctx, entity, planned.right, raw)
    }
    const now = m.decideNow?.(ctx, entity)
    if (now === undefined) return Effect.flatMap(m.decide(ctx, entity), run)
    return Either.isLeft(now) ? Effect.fail(now.left) : run(now.right)
  }

const noParams = () => Either.right(undefined)

/** Decoded upsert params, of either form. */
interface UpsertParams {
  /** `uniqueField` (field form) or the filter's only key (filter form); undefined: the filter names none or several. */
  readonly field: string | undefined
  readonly value: unknown
  readonly createData: unknown
  readonly updateData: unknown
  /** Where the lookup is named in the params, for error paths: "uniqueField" or "filter". */
  readonly at: "uniqueField" | "filter"
  /** The filter form's filter (checked after the decision). */
  readonly filter?: Record<string, unknown>
}

const UPSERT_SHAPE = "[entity, uniqueField, uniqueValue, createData, updateData] or [entity, filter, createData, updateData]"

const decodeUpsert = (p: ReadonlyArray<unknown>): Either.Either<UpsertParams, BadRequest> => {
  if (p.length === 5 && typeof p[1] === "string")
    return Either.right({ field: p[1], value: p[2], createData: p[3], updateData: p[4], at: "uniqueField" })
  if (p.length === 4 && isRecord(p[1])) {
    const keys = Object.keys(p[1])
    return Either.right({
      field: keys.length === 1 ? keys[0] : undefined,
      value: keys.length === 1 ? p[1][keys[0]!] : undefined,
      createData: p[2],
      updateData: p[3],
      at: "filter",
      filter: p[1]
    })
  }
  return left(
    new BadRequest({
      reason:
        p.length === 5
          ? "params[1] must be the unique field's name (a string)"
          : p.length === 4
            ? "params[1] must be a filter object naming one unique field"
            : `expected params ${UPSERT_SHAPE}`
    })
  )
}

/** The upsert's lookup field, after the decision: one unique field other than id, with a plain value. */
const upsertLookup = (entity: EntityDef, u: UpsertParams): Either.Either<FieldDef, RequestError> => {
  if (u.field === undefined) {
    return left(
      ValidationFailed.one(
        "filter",
        `must name exactly one unique field of ${entity.name} (it names ${Object.keys(u.filter ?? {}).length})`
      )
    )
  }
  const at = u.at === "filter" ? `filter.${u.field}` : "uniqueField"
  return Either.flatMap(uniqueField(entity, u.field, at), (f) => {
    if (f.primary) return left(ValidationFailed.one(at, "ids are generated by the daemon: upsert by another unique field"))
    if (u.at === "filter") {
      if (u.value === null || typeof u.value === "object")
        return left(ValidationFailed.one(at, "must be the unique value itself (not null, an operator or a list)"))
      const v = operand(f, u.value)
      if (Either.isLeft(v)) return left(ValidationFailed.one(at, v.left))
    }
    return Either.right(f)
  })
}

/**
 * Rate-limit tokens one request takes: 1 per operation (a transaction: the sum of its
 * operations'), and a `createMany` 1 per started `ROWS_PER_TOKEN` records. Counted from the
 * params as sent, before validation; the limiter never takes more than a full bucket.
 */
export const ROWS_PER_TOKEN = 50

export const requestWeight = (method: Method, params: ReadonlyArray<unknown>): number => {
  if (method === "transaction") {
    const ops = Array.isArray(params[0]) ? params[0] : []
    let total = 0
    for (const op of ops) {
      total +=
        isRecord(op) && typeof op.method === "string" && op.method !== "transaction" && Object.hasOwn(MethodTable, op.method)
          ? requestWeight(op.method as Method, Array.isArray(op.params) ? op.params : [])
          : 1
    }
    return Math.max(1, total)
  }
  if (method === "createMany" && Array.isArray(params[1])) return Math.max(1, Math.ceil(params[1].length / ROWS_PER_TOKEN))
  return 1
}

/** One method of the protocol. */
interface MethodSpec {
  /** Changes data: its audit record must be durable before it is answered. */
  readonly writes: boolean
  /** May be one of a `transaction`'s operations. */
  readonly inTransaction: boolean
  /** Absent for `authenticate`, which the handler answers itself (it sets the connection's credentials). */
  readonly run?: Runner
  /** Its audit record may commit with its write, in the audit journal (src/query/Journal.ts). */
  readonly journaled?: true
}

const createMethod: Runner = onEntity({
  params: [2, 2, "[entity, data]"],
  decode: noParams,
  decide: decideWrite("create"),
  plan: (ctx, entity, _, { decision, view }, p) =>
    Either.gen(function* () {
      const values = yield* validateCreate(entity, p[1])
      yield* checkWritable(ctx, entity, decision, [values], [p[1]])
      return { values, access: writeAccess(decision, view) }
    }),
  execute: (ctx, entity, { values, access }) =>
    Effect.map(ctx.repo.create(entity, values, access), (result) => ({ result, entity: entity.name, recordIds: idsOf(entity, result) }))
})

const readMethod: Runner = onEntity({
  params: [2, 2, "[entity, id]"],
  decode: (p, entity) => idAt(p, 1, entity),
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (_ctx, _entity, id, access) => Either.right({ id, access }),
  execute: (ctx, entity, { id, access }, p) =>
    Effect.map(cachedRead(ctx, "read", p, [{ entity, access }], ctx.repo.read(entity, id, access)), (result) => ({
      result,
      entity: entity.name,
      recordIds: [String(id)]
    }))
})

const updateMethod: Runner = onEntity({
  params: [3, 3, "[entity, id, data]"],
  decode: (p, entity) => idAt(p, 1, entity),
  decide: decideWrite("update"),
  plan: (ctx, entity, id, { decision, view }, p) =>
    Either.gen(function* () {
      const values = yield* validateUpdate(entity, p[2])
      yield* checkWritable(ctx, entity, decision, [values])
      return { id, values, access: writeAccess(decision, view) }
    }),
  execute: (ctx, entity, { id, values, access }) =>
    Effect.map(ctx.repo.update(entity, id, values, access), (result) => ({ result, entity: entity.name, recordIds: [String(id)] }))
})

const deleteMethod: Runner = onEntity({
  params: [2, 2, "[entity, id]"],
  decode: (p, entity) => idAt(p, 1, entity),
  decide: (ctx, entity) => decide(ctx, entity, "delete"),
  decideNow: decideNow("delete"),
  plan: (_ctx, _entity, id, access) => Either.right({ id, access }),
  execute: (ctx, entity, { id, access }) =>
    Effect.map(ctx.repo.remove(entity, id, access), (result) => ({ result, entity: entity.name, recordIds: [String(id)] }))
})

const listMethod: Runner = onEntity({
  params: [1, 2, "[entity, options?]"],
  decode: (p) =>
    p[1] !== undefined && p[1] !== null && !isRecord(p[1])
      ? left(new BadRequest({ reason: "params[1] must be an options object {filter, sort, page, limit}" }))
      : Either.right((p[1] ?? {}) as Record<string, unknown>),
  // Each included entity is decided as if read on its own (refused → 403, row filter → null): its
  // decision is taken in execute, once the include is known to name a relation.
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (ctx, entity, options, access) =>
    Either.gen(function* () {
      const o = yield* listOptions(ctx, entity, options)
      yield* checkReadable(access.readable, [...filterFields(o.filter), ...o.sort.map((k) => k.field)])
      return { o, access }
    }),
  execute: (ctx, entity, { o, access }, p) =>
    Effect.gen(function* () {
      const includes: Array<Include> = []
      for (const f of o.include) {
        const target = ctx.registry.entities.get(f.foreignKey!.entity)!
        includes.push({
          name: f.foreignKey!.relation,
          field: f,
          target,
          targetField: target.byName.get(f.foreignKey!.field)!,
          access: yield* decideRead(ctx, target)
        })
      }
      const page = yield* cachedRead(
        ctx,
        "list",
        p,
        [{ entity, access }, ...includes.map((i) => ({ entity: i.target, access: i.access }))],
        includes.length === 0
          ? ctx.repo.list(entity, o.filter, o.sort, o.page, o.limit, access)
          : ctx.repo.listWithIncludes(entity, o.filter, o.sort, o.page, o.limit, access, includes)
      )
      return {
        result: { data: page.data, total: page.total, page: o.page, limit: o.limit, hasMore: o.page * o.limit < page.total },
        entity: entity.name
      }
    })
})

/** A read's filter, planned: parsed, scored, and testing only fields the caller may read. */
const planFilter = (ctx: MethodContext, entity: EntityDef, raw: unknown, readable: ReadonlyArray<FieldDef>) =>
  Either.gen(function* () {
    const filter = yield* filterOf(entity, raw, "filter")
    yield* admitComplexity(ctx, { filter })
    yield* checkReadable(readable, [...filterFields(filter)])
    return filter
  })

const findFirstMethod: Runner = onEntity({
  params: [1, 2, "[entity, filter?]"],
  decode: noParams,
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (ctx, entity, _, access, p) => Either.map(planFilter(ctx, entity, p[1], access.readable), (filter) => ({ filter, access })),
  execute: (ctx, entity, { filter, access }, p) =>
    Effect.map(cachedRead(ctx, "findFirst", p, [{ entity, access }], ctx.repo.findFirst(entity, filter, access)), (result) => ({
      result,
      entity: entity.name,
      recordIds: idsOf(entity, result)
    }))
})

const findByFieldMethod: Runner = onEntity({
  params: [3, 3, "[entity, field, value]"],
  decode: (p) => stringAt(p, 1, "a field name (a string)"),
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (_ctx, entity, name, access, p) =>
    Either.map(readableLookup(entity, name, p[2], access.readable), ({ f, v }) => ({ f, v, access })),
  execute: (ctx, entity, { f, v, access }, p) =>
    v === undefined
      ? Effect.succeed({ result: null, entity: entity.name })
      : Effect.map(
          cachedRead(ctx, "findByField", p, [{ entity, access }], ctx.repo.findFirst(entity, ctx.repo.byField(f, v), access)),
          (result) => ({ result, entity: entity.name, recordIds: idsOf(entity, result) })
        )
})

const upsertMethod: Runner = onEntity({
  params: [4, 5, UPSERT_SHAPE],
  decode: decodeUpsert,
  decide: (ctx, entity) =>
    Effect.flatMap(decide(ctx, entity, "create"), (create) =>
      Effect.map(decideWrite("update")(ctx, entity), (update) => ({ create, update }))
    ),
  plan: (ctx, entity, u, { create: dc, update: { decision: du, view } }) =>
    Either.gen(function* () {
      const f = yield* upsertLookup(entity, u)
      yield* checkReadable(view.readable, [f])
      const created = isRecord(u.createData) ? { ...u.createData } : u.createData
      if (isRecord(created)) {
        if (created[f.name] !== undefined && created[f.name] !== u.value) {
          return yield* left(
            ValidationFailed.one(`createData.${f.name}`, `must equal ${u.at === "filter" ? `filter.${f.name}` : "uniqueValue"}`)
          )
        }
        created[f.name] = u.value
      }
      const createValues = yield* validateCreate(entity, created, "createData")
      const updateValues = yield* validateUpdate(entity, u.updateData, "updateData")
      yield* checkWritable(ctx, entity, dc, [createValues], [created])
      yield* checkWritable(ctx, entity, du, [updateValues])
      return { f, createValues, updateValues, update: writeAccess(du, view), create: writeAccess(dc, view) }
    }),
  execute: (ctx, entity, q) =>
    Effect.map(ctx.repo.upsert(entity, q.f, q.createValues.get(q.f), q.createValues, q.updateValues, q.update, q.create), (result) => ({
      result,
      entity: entity.name,
      recordIds: idsOf(entity, result)
    }))
})

const updateByFieldMethod: Runner = onEntity({
  params: [4, 4, "[entity, field, value, data]"],
  decode: (p) => stringAt(p, 1, "a field name (a string)"),
  decide: decideWrite("update"),
  plan: (ctx, entity, name, { decision, view }, p) =>
    Either.gen(function* () {
      const { f, v } = yield* readableLookup(entity, name, p[2], view.readable)
      const values = yield* validateUpdate(entity, p[3])
      yield* checkWritable(ctx, entity, decision, [values])
      return { f, v, values, access: writeAccess(decision, view) }
    }),
  execute: (ctx, entity, { f, v, values, access }) =>
    v === undefined
      ? Effect.fail(new NotFound({ entity: entity.name }))
      : Effect.map(ctx.repo.updateWhere(entity, ctx.repo.byField(f, v), values, access), (result) => ({
          result,
          entity: entity.name,
          recordIds: idsOf(entity, result)
        }))
})

const deleteByFieldMethod: Runner = onEntity({
  params: [3, 3, "[entity, field, value]"],
  decode: (p) => stringAt(p, 1, "a field name (a string)"),
  decide: decideWrite("delete"),
  plan: (_ctx, entity, name, { decision, view }, p) =>
    Either.map(readableLookup(entity, name, p[2], view.readable), ({ f, v }) => ({ f, v, decision })),
  execute: (ctx, entity, { f, v, decision }) =>
    v === undefined
      ? Effect.fail(new NotFound({ entity: entity.name }))
      : Effect.map(ctx.repo.deleteWhere(entity, ctx.repo.byField(f, v), decision), (result) => ({ result, entity: entity.name }))
})

const createManyMethod: Runner = onEntity({
  params: [2, 2, "[entity, data[]]"],
  decode: (p) =>
    Array.isArray(p[1])
      ? Either.right(p[1] as ReadonlyArray<unknown>)
      : left(new BadRequest({ reason: "params[1] must be an array of records" })),
  decide: (ctx, entity) => decide(ctx, entity, "create"),
  decideNow: decideNow("create"),
  plan: (ctx, entity, records, d) =>
    Either.gen(function* () {
      const max = ctx.config.performance.max_batch_size
      if (records.length > max) return yield* left(ValidationFailed.one("data", `at most ${max} records per createMany`))
      const items = yield* validateCreateMany(entity, records)
      yield* checkWritable(ctx, entity, d, items, records)
      return { items, rowFilter: d.rowFilter }
    }),
  execute: (ctx, entity, { items, rowFilter }) =>
    Effect.map(ctx.repo.createMany(entity, items, rowFilter), (result) => ({ result, entity: entity.name }))
})

/** A bulk write's filter, planned: one that tests a field, scored, and testing only fields the caller may read. */
const planBulkFilter = (ctx: MethodContext, entity: EntityDef, raw: unknown, readable: ReadonlyArray<FieldDef>) =>
  Either.gen(function* () {
    const filter = yield* requireFilter(entity, raw)
    yield* admitComplexity(ctx, { filter })
    yield* checkReadable(readable, [...filterFields(filter)])
    return filter
  })

const updateManyMethod: Runner = onEntity({
  params: [3, 3, "[entity, filter, data]"],
  decode: noParams,
  decide: decideWrite("update"),
  plan: (ctx, entity, _, { decision, view }, p) =>
    Either.gen(function* () {
      const filter = yield* planBulkFilter(ctx, entity, p[1], view.readable)
      const values = yield* validateUpdate(entity, p[2])
      for (const f of values.keys()) {
        if (f.unique) return yield* left(ValidationFailed.one(f.name, "a unique field cannot be set on many records at once"))
      }
      yield* checkWritable(ctx, entity, decision, [values])
      return { filter, values, decision }
    }),
  execute: (ctx, entity, { filter, values, decision }) =>
    Effect.map(ctx.repo.updateMany(entity, filter, values, decision), (result) => ({ result, entity: entity.name }))
})

const deleteManyMethod: Runner = onEntity({
  params: [2, 2, "[entity, filter]"],
  decode: noParams,
  decide: decideWrite("delete"),
  plan: (ctx, entity, _, { decision, view }, p) =>
    Either.map(planBulkFilter(ctx, entity, p[1], view.readable), (filter) => ({ filter, decision })),
  execute: (ctx, entity, { filter, decision }) =>
    Effect.map(ctx.repo.deleteMany(entity, filter, decision), (result) => ({ result, entity: entity.name }))
})

const countMethod: Runner = onEntity({
  params: [1, 2, "[entity, filter?]"],
  decode: noParams,
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (ctx, entity, _, access, p) => Either.map(planFilter(ctx, entity, p[1], access.readable), (filter) => ({ filter, access })),
  execute: (ctx, entity, { filter, access }, p) =>
    Effect.map(cachedRead(ctx, "count", p, [{ entity, access }], ctx.repo.count(entity, filter, access)), (result) => ({
      result,
      entity: entity.name
    }))
})

const SUBSCRIBE_OPTIONS = new Set(["filter"])

const noLive = () => new NotSupported({ feature: "subscriptions (they need a WebSocket connection to the daemon, and realtime.enabled)" })

/**
 * `subscribe [entity, {filter?}]`: the same order as a read (the read decision first, 403), then
 * the filter is checked as a list's (422, fields the caller may not read: 403, complexity).
 */
const subscribeMethod: Runner = onEntity({
  params: [1, 2, "[entity, {filter?}]"],
  decode: (p) =>
    p[1] !== undefined && p[1] !== null && !isRecord(p[1])
      ? left(new BadRequest({ reason: "params[1] must be an options object {filter}" }))
      : Either.right((p[1] ?? {}) as Record<string, unknown>),
  decide: decideRead,
  decideNow: decideNow("read"),
  plan: (ctx, entity, options, d) =>
    Either.gen(function* () {
      for (const k of Object.keys(options))
        if (!SUBSCRIBE_OPTIONS.has(k)) return yield* left(ValidationFailed.one(k, "unknown subscribe option (expected filter)"))
      return yield* planFilter(ctx, entity, options.filter, d.readable)
    }),
  execute: (ctx, entity, filter) =>
    ctx.live === undefined
      ? Effect.fail(noLive())
      : Effect.map(ctx.live.subscribe(entity, filter), (id) => ({ result: { subscription: id }, entity: entity.name }))
})

const unsubscribeMethod: Runner = (ctx, p) => {
  const id = Either.flatMap(arity(p, 1, 1, '["<subscription id>"]'), () => stringAt(p, 0, "the subscription id (a string)"))
  if (Either.isLeft(id)) return Effect.fail(id.left)
  if (ctx.live === undefined) return Effect.fail(noLive())
  return Effect.map(ctx.live.unsubscribe(id.right), (result) => ({ result }))
}

const getCapabilitiesMethod: Runner = (ctx, p) => Effect.map(arity(p, 0, 0, "[] (none)"), () => ({ result: capabilities(ctx) }))

const getSchemaMethod: Runner = (ctx, p) =>
  Effect.flatMap(arity(p, 0, 0, "[] (none)"), () => Effect.map(getSchema(ctx.acl, ctx.registry, ctx.principal), (result) => ({ result })))

const transactionMethod: Runner = (ctx, p) =>
  Effect.gen(function* () {
    yield* arity(p, 1, 1, "[ops] with ops = [{method, params}, ...]")
    const raw = p[0]
    if (!Array.isArray(raw)) return yield* new BadRequest({ reason: "params[0] must be the list of operations [{method, params}]" })
    const max = ctx.config.performance.max_transaction_ops
    if (raw.length === 0) return yield* ValidationFailed.one("ops", "a transaction needs at least one operation")
    if (raw.length > max) return yield* ValidationFailed.one("ops", `at most ${max} operations per transaction`)
    const ops: Array<{ run: Runner; params: ReadonlyArray<unknown> }> = []
    for (const [i, op] of raw.entries()) {
      if (!isRecord(op) || typeof op.method !== "string" || !(op.params === undefined || Array.isArray(op.params))) {
        return yield* new BadRequest({ reason: `ops[${i}] must be {method, params: [...]}` })
      }
      const spec = Object.hasOwn(MethodTable, op.method) ? MethodTable[op.method as Method] : undefined
      if (spec === undefined || !spec.inTransaction || spec.run === undefined) {
        return yield* new BadRequest({
          reason: `ops[${i}].method ${JSON.stringify(op.method.slice(0, 64))} cannot be part of a transaction`
        })
      }
      ops.push({ run: spec.run, params: (op.params ?? []) as ReadonlyArray<unknown> })
    }
    // All or nothing: each operation runs as if sent alone (its own access decision), inside
    // one database transaction that the first failure rolls back. No cache: reads must see
    // the transaction's own writes, and nothing uncommitted may be stored. One complexity
    // budget for all of them.
    const { cache: _cache, ...noCache } = ctx
    const inner: MethodContext = { ...noCache, spent: { score: 0 } }
    const outcomes = yield* ctx.db.sql
      .withTransaction(
        Effect.forEach(ops, (op, index) =>
          op.run(inner, op.params).pipe(Effect.mapError((error) => new TransactionOpFailed({ index, error })))
        )
      )
      .pipe(
        Effect.catchTag("SqlError", (e) =>
          Effect.fail(
            new TransactionOpFailed({
              index: ops.length - 1,
              error: new Unavailable({ reason: "the transaction could not be committed", cause: e })
            })
          )
        )
      )
    return {
      result: outcomes.map((o) => o.result),
      recordIds: outcomes.flatMap((o) => o.recordIds ?? [])
    }
  })

/** The table as written, each entry a MethodSpec: its keys are the protocol's method names. */
const methodTable = <T extends Record<string, MethodSpec>>(table: T): { readonly [M in keyof T]: MethodSpec } => table

/** Every method of the protocol: its keys are the protocol's method list (`Method`, and `Methods` in Protocol.ts). */
export const MethodTable = methodTable({
  authenticate: { writes: false, inTransaction: false },
  create: { writes: true, inTransaction: true, journaled: true, run: createMethod },
  read: { writes: false, inTransaction: true, run: readMethod },
  update: { writes: true, inTransaction: true, journaled: true, run: updateMethod },
  delete: { writes: true, inTransaction: true, journaled: true, run: deleteMethod },
  list: { writes: false, inTransaction: true, run: listMethod },
  findFirst: { writes: false, inTransaction: true, run: findFirstMethod },
  findByField: { writes: false, inTransaction: true, run: findByFieldMethod },
  upsert: { writes: true, inTransaction: true, journaled: true, run: upsertMethod },
  updateByField: { writes: true, inTransaction: true, journaled: true, run: updateByFieldMethod },
  deleteByField: { writes: true, inTransaction: true, journaled: true, run: deleteByFieldMethod },
  createMany: { writes: true, inTransaction: true, journaled: true, run: createManyMethod },
  updateMany: { writes: true, inTransaction: true, run: updateManyMethod },
  deleteMany: { writes: true, inTransaction: true, run: deleteManyMethod },
  count: { writes: false, inTransaction: true, run: countMethod },
  getCapabilities: { writes: false, inTransaction: false, run: getCapabilitiesMethod },
  getSchema: { writes: false, inTransaction: false, run: getSchemaMethod },
  transaction: { writes: true, inTransaction: false, run: transactionMethod },
  subscribe: { writes: false, inTransaction: false, run: subscribeMethod },
  unsubscribe: { writes: false, inTransaction: false, run: unsubscribeMethod }
})

/** A method of the protocol: a key of the table. */
export type Method = keyof typeof MethodTable

/** Every method, in the table's order: the protocol's method list (src/rpc/Protocol.ts). */
export const MethodNames = Object.keys(MethodTable) as ReadonlyArray<Method>

/** Methods that change data (their audit record must be written before they are answered). */
export const WriteMethods: ReadonlySet<Method> = new Set(MethodNames.filter((m) => MethodTable[m].writes))

/** Methods whose audit record may commit with their write (the audit journal). */
export const JournaledMethods: ReadonlySet<Method> = new Set(MethodNames.filter((m) => MethodTable[m].journaled === true))

/** Methods a `transaction` may hold. */
export const TransactionMethods: ReadonlySet<Method> = new Set(MethodNames.filter((m) => MethodTable[m].inTransaction))

/** Entities a request writes (a transaction's write operations included). */
export const writtenEntities = (method: Method, params: ReadonlyArray<unknown>): Array<string> => {
  if (method === "transaction") {
    const ops = Array.isArray(params[0]) ? params[0] : []
    return ops.flatMap((op: unknown) =>
      isRecord(op) &&
      typeof op.method === "string" &&
      WriteMethods.has(op.method as Method) &&
      Array.isArray(op.params) &&
      typeof op.params[0] === "string"
        ? [op.params[0].slice(0, 64)]
        : []
    )
  }
  return WriteMethods.has(method) && typeof params[0] === "string" ? [params[0].slice(0, 64)] : []
}

export const capabilities = (ctx: Pick<MethodContext, "config" | "db">) => ({
  adapter: ctx.db.adapter,
  dialect: adapterOf(ctx.db.dialect),
  features: {
    transactions: true,
    joins: true,
    fullTextSearch: false,
    ttl: false,
    jsonQueries: false,
    aggregations: false,
    relations: true,
    realtime: ctx.config.realtime.enabled
  },
  methods: [...MethodNames],
  limits: {
    defaultPageSize: ctx.config.performance.default_page_size,
    maxPageSize: ctx.config.performance.max_page_size,
    maxBatchSize: ctx.config.performance.max_batch_size,
    maxTransactionOps: ctx.config.performance.max_transaction_ops,
    maxPayloadBytes: ctx.config.server.max_payload,
    maxInFlightPerConnection: ctx.config.server.max_in_flight,
    queryTimeoutMs: ctx.config.performance.query_timeout,
    maxSubscriptionsPerConnection: ctx.config.realtime.max_subscriptions_per_connection
  }
})

export const runMethod = (
  ctx: MethodContext,
  method: Exclude<Method, "authenticate">,
  p: ReadonlyArray<unknown>
): Effect.Effect<Outcome, RequestError> => MethodTable[method].run!(ctx, p)

export const entityNameOf = (params: ReadonlyArray<unknown>): string | null =>
  typeof params[0] === "string" ? params[0].slice(0, 64) : null
