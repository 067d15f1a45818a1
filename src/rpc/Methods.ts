/**
 * The methods of the protocol: positional params checked (400 for the wrong shape, 422 for
 * values the entity refuses), the access decision taken, then the repository called.
 */
import { Effect, Either } from "effect"
import type { DaemonConfig } from "../Config.js"
import { BadRequest, Forbidden, NotFound, type RequestError, TransactionOpFailed, Unavailable, ValidationFailed } from "../Errors.js"
import type { AclOperation, EntityDef, EntityRegistryShape, FieldDef } from "../entity/Model.js"
import { isUuid, validateCreate, validateCreateMany, validateUpdate, type Values } from "../entity/Validate.js"
import { checkComplexity } from "../query/Complexity.js"
import { type FilterNode, hasFieldCondition, operand, parseFilter } from "../query/Filter.js"
import type { Access, Include, Repository, SortKey } from "../query/Repository.js"
import type { ResultCacheShape } from "../services/ResultCache.js"
import type { AclShape, Decision } from "../services/Acl.js"
import type { DatabaseShape } from "../services/Database.js"
import type { Principal } from "../services/Principal.js"
import { checkNoRoleEscalation } from "./Guards.js"
import { Methods, type Method } from "./Protocol.js"
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
}

/** What makes two decisions give the same answer: the row filter (values included) and the fields. */
const decisionKey = (d: Access) => ({
  f: JSON.stringify(d.rowFilter, (k, v: unknown) => (k === "field" && v !== null && typeof v === "object" && "name" in v ? (v as FieldDef).name : v)),
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

/** Methods that change data (their audit record must be written before they are answered). */
export const WriteMethods: ReadonlySet<Method> = new Set([
  "create", "update", "delete", "upsert", "updateByField", "deleteByField", "createMany", "updateMany", "deleteMany", "transaction"
])

/** Methods a `transaction` may hold. */
const TransactionMethods: ReadonlySet<string> = new Set([
  "create", "read", "update", "delete", "list", "findFirst", "findByField", "upsert", "updateByField", "deleteByField",
  "createMany", "updateMany", "deleteMany", "count"
])

/** Entities a request writes (a transaction's write operations included). */
export const writtenEntities = (method: Method, params: ReadonlyArray<unknown>): Array<string> => {
  if (method === "transaction") {
    const ops = Array.isArray(params[0]) ? params[0] : []
    return ops.flatMap((op: unknown) =>
      isRecord(op) && typeof op.method === "string" && WriteMethods.has(op.method as Method) && Array.isArray(op.params) && typeof op.params[0] === "string"
        ? [op.params[0].slice(0, 64)]
        : []
    )
  }
  return WriteMethods.has(method) && typeof params[0] === "string" ? [params[0].slice(0, 64)] : []
}

const arity = (params: ReadonlyArray<unknown>, min: number, max: number, shape: string): Effect.Effect<void, BadRequest> =>
  params.length < min || params.length > max
    ? Effect.fail(new BadRequest({ reason: `expected params ${shape}` }))
    : Effect.void

const entityOf = (ctx: MethodContext, raw: unknown): Effect.Effect<EntityDef, RequestError> => {
  if (typeof raw !== "string") return Effect.fail(new BadRequest({ reason: "params[0] must be the entity name (a string)" }))
  const e = ctx.registry.entities.get(raw)
  return e === undefined
    ? Effect.fail(ValidationFailed.one("entity", `unknown entity (known: ${[...ctx.registry.entities.keys()].join(", ")})`))
    : Effect.succeed(e)
}

const fromEither = <A>(e: Either.Either<A, ValidationFailed>): Effect.Effect<A, ValidationFailed> =>
  Either.isLeft(e) ? Effect.fail(e.left) : Effect.succeed(e.right)

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
): Effect.Effect<void, Forbidden> => {
  const writable = new Set(decision.writable)
  for (const [i, v] of values.entries()) {
    const given = sent?.[i]
    for (const f of v.keys()) {
      if (isRecord(given) && !Object.hasOwn(given, f.name)) continue
      if (!writable.has(f)) return Effect.fail(new Forbidden({ reason: `field '${f.name}' may not be written by this principal` }))
    }
  }
  return checkNoRoleEscalation(ctx.principal, entity, values)
}

const decide = (ctx: MethodContext, entity: EntityDef, op: AclOperation) => ctx.acl.decide(ctx.principal, entity, op)

const fieldsOf = (node: FilterNode): ReadonlyArray<FieldDef> => {
  switch (node._tag) {
    case "And":
    case "Or":
      return node.nodes.flatMap(fieldsOf)
    case "Not":
      return fieldsOf(node.node)
    default:
      return [node.field]
  }
}

/**
 * A field the principal may not see (read_fields, security.never_expose) cannot be tested by a
 * filter, sort or lookup either: its values would leak through counts and matches.
 */
const checkReadable = (decision: Decision, fields: ReadonlyArray<FieldDef>): Effect.Effect<void, Forbidden> => {
  const readable = new Set(decision.readable)
  const hidden = fields.find((f) => !readable.has(f))
  return hidden === undefined
    ? Effect.void
    : Effect.fail(new Forbidden({ reason: `field '${hidden.name}' may not be read by this principal, so it cannot be filtered, sorted or looked up by` }))
}

const filterOf = (entity: EntityDef, raw: unknown, at: string) => fromEither(parseFilter(entity, raw, at))

const requireFilter = (entity: EntityDef, raw: unknown) =>
  Effect.flatMap(filterOf(entity, raw, "filter"), (node: FilterNode) =>
    raw === undefined || raw === null || !hasFieldCondition(node)
      ? Effect.fail(ValidationFailed.one("filter", "bulk writes need a filter that tests at least one field"))
      : Effect.succeed(node)
  )

const uniqueField = (entity: EntityDef, raw: unknown, at: string): Effect.Effect<FieldDef, RequestError> => {
  if (typeof raw !== "string") return Effect.fail(new BadRequest({ reason: `${at} must be a field name (a string)` }))
  const f = entity.byName.get(raw)
  if (f === undefined || f.neverExpose) return Effect.fail(ValidationFailed.one(at, `unknown field of ${entity.name}`))
  if (!f.unique) return Effect.fail(ValidationFailed.one(at, `${raw} is not a unique field of ${entity.name}`))
  return Effect.succeed(f)
}

/** A lookup value for a unique field (type-checked; a malformed id finds nothing, as `read` does). */
const lookupValue = (f: FieldDef, raw: unknown): Effect.Effect<unknown, ValidationFailed> => {
  if (f.type === "uuid" && typeof raw === "string" && !isUuid(raw)) return Effect.succeed(undefined)
  const r = operand(f, raw)
  return Either.isLeft(r) ? Effect.fail(ValidationFailed.one("value", r.left)) : Effect.succeed(r.right)
}

const parseSort = (entity: EntityDef, raw: unknown): Effect.Effect<Array<SortKey>, ValidationFailed> => {
  if (raw === undefined || raw === null) return Effect.succeed([])
  const items = Array.isArray(raw) ? raw : [raw]
  const keys: Array<SortKey> = []
  const issues: Array<{ field: string; error: string }> = []
  items.forEach((item, i) => {
    const at = Array.isArray(raw) ? `sort[${i}]` : "sort"
    if (!isRecord(item)) return void issues.push({ field: at, error: 'must be an object {field: "asc" | "desc"}' })
    for (const [name, dir] of Object.entries(item)) {
      const f = entity.byName.get(name)
      if (f === undefined || f.neverExpose) issues.push({ field: `${at}.${name}`, error: `unknown field of ${entity.name}` })
      else if (f.type === "json") issues.push({ field: `${at}.${name}`, error: "JSON fields cannot be sorted" })
      else if (dir !== "asc" && dir !== "desc") issues.push({ field: `${at}.${name}`, error: 'must be "asc" or "desc"' })
      else if (!keys.some((k) => k.field === f)) keys.push({ field: f, direction: dir })
    }
  })
  if (keys.length > 8) issues.push({ field: "sort", error: "at most 8 sort keys" })
  return issues.length > 0 ? Effect.fail(ValidationFailed.one(issues[0]!.field, issues[0]!.error)) : Effect.succeed(keys)
}

const LIST_OPTIONS = new Set(["filter", "sort", "page", "limit", "include"])

/** `include: ["page"]` or `{page: true}` → the foreign-key fields whose records come along. */
const parseInclude = (entity: EntityDef, raw: unknown): Effect.Effect<Array<FieldDef>, ValidationFailed> => {
  if (raw === undefined || raw === null) return Effect.succeed([])
  const names = Array.isArray(raw)
    ? raw
    : isRecord(raw)
      ? Object.entries(raw).filter(([, v]) => v === true).map(([k]) => k)
      : undefined
  if (names === undefined || !names.every((n): n is string => typeof n === "string")) {
    return Effect.fail(ValidationFailed.one("include", 'must be a list of relation names, e.g. ["page"]'))
  }
  const relations = entity.fields.filter((f) => f.foreignKey !== undefined)
  const out: Array<FieldDef> = []
  for (const n of names) {
    const f = relations.find((r) => r.foreignKey!.relation === n)
    if (f === undefined) {
      const known = relations.map((r) => r.foreignKey!.relation)
      return Effect.fail(ValidationFailed.one(`include.${n}`, `unknown relation of ${entity.name}${known.length > 0 ? ` (known: ${known.join(", ")})` : " (it has none)"}`))
    }
    if (!out.includes(f)) out.push(f)
  }
  return Effect.succeed(out)
}

const listOptions = (ctx: MethodContext, entity: EntityDef, raw: unknown) =>
  Effect.gen(function* () {
    if (raw !== undefined && raw !== null && !isRecord(raw)) return yield* new BadRequest({ reason: "params[1] must be an options object {filter, sort, page, limit}" })
    const o = (raw ?? {}) as Record<string, unknown>
    for (const k of Object.keys(o)) if (!LIST_OPTIONS.has(k)) return yield* ValidationFailed.one(k, "unknown list option (expected filter, sort, page, limit, include)")
    const max = ctx.config.performance.max_page_size
    const page = o.page ?? 1
    const limit = o.limit ?? ctx.config.performance.default_page_size
    if (typeof page !== "number" || !Number.isSafeInteger(page) || page < 1) return yield* ValidationFailed.one("page", "must be an integer >= 1")
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1 || limit > max) {
      return yield* ValidationFailed.one("limit", `must be an integer between 1 and ${max}`)
    }
    if ((page - 1) * limit > 1_000_000_000) return yield* ValidationFailed.one("page", "is too deep")
    const filter = yield* filterOf(entity, o.filter, "filter")
    const sort = yield* parseSort(entity, o.sort)
    yield* checkComplexity({ filter, sortKeys: sort.length, page, limit }, ctx.config.performance.max_query_complexity)
    const include = yield* parseInclude(entity, o.include)
    return { page, limit, filter, sort, include }
  })

const ids = (r: unknown): ReadonlyArray<string> => (isRecord(r) && typeof r.id === "string" ? [r.id] : [])

export const capabilities = (ctx: Pick<MethodContext, "config" | "db">) => ({
  adapter: ctx.db.adapter,
  dialect: ctx.db.dialect === "pg" ? "postgresql" : ctx.db.dialect,
  features: {
    transactions: true,
    joins: true,
    fullTextSearch: false,
    ttl: false,
    jsonQueries: false,
    aggregations: false,
    relations: true
  },
  methods: [...Methods],
  limits: {
    defaultPageSize: ctx.config.performance.default_page_size,
    maxPageSize: ctx.config.performance.max_page_size,
    maxBatchSize: ctx.config.performance.max_batch_size,
    maxTransactionOps: ctx.config.performance.max_transaction_ops,
    maxPayloadBytes: ctx.config.server.max_payload,
    maxInFlightPerConnection: ctx.config.server.max_in_flight,
    queryTimeoutMs: ctx.config.performance.query_timeout
  }
})

export const runMethod = (ctx: MethodContext, method: Exclude<Method, "authenticate">, p: ReadonlyArray<unknown>): Effect.Effect<Outcome, RequestError> =>
  Effect.gen(function* () {
    const { repo } = ctx
    switch (method) {
      case "transaction": {
        yield* arity(p, 1, 1, "[ops] with ops = [{method, params}, ...]")
        const raw = p[0]
        if (!Array.isArray(raw)) return yield* new BadRequest({ reason: "params[0] must be the list of operations [{method, params}]" })
        const max = ctx.config.performance.max_transaction_ops
        if (raw.length === 0) return yield* ValidationFailed.one("ops", "a transaction needs at least one operation")
        if (raw.length > max) return yield* ValidationFailed.one("ops", `at most ${max} operations per transaction`)
        const ops: Array<{ method: Exclude<Method, "authenticate" | "transaction">; params: ReadonlyArray<unknown> }> = []
        for (const [i, op] of raw.entries()) {
          if (!isRecord(op) || typeof op.method !== "string" || !(op.params === undefined || Array.isArray(op.params))) {
            return yield* new BadRequest({ reason: `ops[${i}] must be {method, params: [...]}` })
          }
          if (!TransactionMethods.has(op.method)) return yield* new BadRequest({ reason: `ops[${i}].method ${JSON.stringify(op.method.slice(0, 64))} cannot be part of a transaction` })
          ops.push({ method: op.method as Exclude<Method, "authenticate" | "transaction">, params: (op.params ?? []) as ReadonlyArray<unknown> })
        }
        // All or nothing: each operation runs as if sent alone (its own access decision), inside
        // one database transaction that the first failure rolls back. No cache: reads must see
        // the transaction's own writes, and nothing uncommitted may be stored.
        const { cache: _cache, ...noCache } = ctx
        const outcomes = yield* ctx.db.sql.withTransaction(
          Effect.forEach(ops, (op, index) =>
            runMethod(noCache, op.method, op.params).pipe(Effect.mapError((error) => new TransactionOpFailed({ index, error })))
          )
        ).pipe(
          Effect.catchTag("SqlError", (e) =>
            Effect.fail(new TransactionOpFailed({ index: ops.length - 1, error: new Unavailable({ reason: "the transaction could not be committed", cause: e }) }))
          )
        )
        return {
          result: outcomes.map((o) => o.result),
          recordIds: outcomes.flatMap((o) => o.recordIds ?? [])
        }
      }
      case "getCapabilities": {
        yield* arity(p, 0, 0, "[] (none)")
        return { result: capabilities(ctx) }
      }
      case "create": {
        yield* arity(p, 2, 2, "[entity, data]")
        const entity = yield* entityOf(ctx, p[0])
        const d = yield* decide(ctx, entity, "create")
        const values = yield* fromEither(validateCreate(entity, p[1]))
        yield* checkWritable(ctx, entity, d, [values], [p[1]])
        const result = yield* repo.create(entity, values, d)
        return { result, entity: entity.name, recordIds: ids(result) }
      }
      case "read": {
        yield* arity(p, 2, 2, "[entity, id]")
        const entity = yield* entityOf(ctx, p[0])
        if (typeof p[1] !== "string") return yield* new BadRequest({ reason: "params[1] must be the record id (a string)" })
        const d = yield* decide(ctx, entity, "read")
        const result = yield* cachedRead(ctx, method, p, [{ entity, access: d }], repo.read(entity, p[1], d))
        return { result, entity: entity.name, recordIds: [p[1]] }
      }
      case "update": {
        yield* arity(p, 3, 3, "[entity, id, data]")
        const entity = yield* entityOf(ctx, p[0])
        if (typeof p[1] !== "string") return yield* new BadRequest({ reason: "params[1] must be the record id (a string)" })
        const d = yield* decide(ctx, entity, "update")
        const values = yield* fromEither(validateUpdate(entity, p[2]))
        yield* checkWritable(ctx, entity, d, [values])
        const result = yield* repo.update(entity, p[1], values, d)
        return { result, entity: entity.name, recordIds: [p[1]] }
      }
      case "delete": {
        yield* arity(p, 2, 2, "[entity, id]")
        const entity = yield* entityOf(ctx, p[0])
        if (typeof p[1] !== "string") return yield* new BadRequest({ reason: "params[1] must be the record id (a string)" })
        const d = yield* decide(ctx, entity, "delete")
        const result = yield* repo.remove(entity, p[1], d)
        return { result, entity: entity.name, recordIds: [p[1]] }
      }
      case "list": {
        yield* arity(p, 1, 2, "[entity, options?]")
        const entity = yield* entityOf(ctx, p[0])
        const o = yield* listOptions(ctx, entity, p[1])
        const d = yield* decide(ctx, entity, "read")
        yield* checkReadable(d, [...fieldsOf(o.filter), ...o.sort.map((k) => k.field)])
        // Each included entity is decided as if read on its own: refused → 403, row filter → null.
        const includes: Array<Include> = []
        for (const f of o.include) {
          const target = ctx.registry.entities.get(f.foreignKey!.entity)!
          includes.push({
            name: f.foreignKey!.relation,
            field: f,
            target,
            targetField: target.byName.get(f.foreignKey!.field)!,
            access: yield* decide(ctx, target, "read")
          })
        }
        const page = yield* cachedRead(
          ctx,
          method,
          p,
          [{ entity, access: d }, ...includes.map((i) => ({ entity: i.target, access: i.access }))],
          includes.length === 0
            ? repo.list(entity, o.filter, o.sort, o.page, o.limit, d)
            : repo.listWithIncludes(entity, o.filter, o.sort, o.page, o.limit, d, includes)
        )
        return {
          result: { data: page.data, total: page.total, page: o.page, limit: o.limit, hasMore: o.page * o.limit < page.total },
          entity: entity.name
        }
      }
      case "findFirst": {
        yield* arity(p, 1, 2, "[entity, filter?]")
        const entity = yield* entityOf(ctx, p[0])
        const filter = yield* filterOf(entity, p[1], "filter")
        yield* checkComplexity({ filter }, ctx.config.performance.max_query_complexity)
        const d = yield* decide(ctx, entity, "read")
        yield* checkReadable(d, fieldsOf(filter))
        const result = yield* cachedRead(ctx, method, p, [{ entity, access: d }], repo.findFirst(entity, filter, d))
        return { result, entity: entity.name, recordIds: ids(result) }
      }
      case "findByField": {
        yield* arity(p, 3, 3, "[entity, field, value]")
        const entity = yield* entityOf(ctx, p[0])
        const f = yield* uniqueField(entity, p[1], "field")
        const v = yield* lookupValue(f, p[2])
        const d = yield* decide(ctx, entity, "read")
        yield* checkReadable(d, [f])
        if (v === undefined) return { result: null, entity: entity.name }
        const result = yield* cachedRead(ctx, method, p, [{ entity, access: d }], repo.findFirst(entity, repo.byField(f, v), d))
        return { result, entity: entity.name, recordIds: ids(result) }
      }
      case "upsert": {
        yield* arity(p, 5, 5, "[entity, uniqueField, uniqueValue, createData, updateData]")
        const entity = yield* entityOf(ctx, p[0])
        const f = yield* uniqueField(entity, p[1], "uniqueField")
        if (f.primary) return yield* ValidationFailed.one("uniqueField", "ids are generated by the daemon: upsert by another unique field")
        const created = isRecord(p[3]) ? { ...p[3] } : p[3]
        if (isRecord(created)) {
          if (created[f.name] !== undefined && created[f.name] !== p[2]) {
            return yield* ValidationFailed.one(`createData.${f.name}`, "must equal uniqueValue")
          }
          created[f.name] = p[2]
        }
        const dc = yield* decide(ctx, entity, "create")
        const du = yield* decide(ctx, entity, "update")
        yield* checkReadable(du, [f])
        const createValues = yield* fromEither(validateCreate(entity, created, "createData"))
        const updateValues = yield* fromEither(validateUpdate(entity, p[4], "updateData"))
        yield* checkWritable(ctx, entity, dc, [createValues], [created])
        yield* checkWritable(ctx, entity, du, [updateValues])
        const value = createValues.get(f)
        const result = yield* repo.upsert(entity, f, value, createValues, updateValues, du, dc)
        return { result, entity: entity.name, recordIds: ids(result) }
      }
      case "updateByField": {
        yield* arity(p, 4, 4, "[entity, field, value, data]")
        const entity = yield* entityOf(ctx, p[0])
        const f = yield* uniqueField(entity, p[1], "field")
        const v = yield* lookupValue(f, p[2])
        const d = yield* decide(ctx, entity, "update")
        yield* checkReadable(d, [f])
        const values = yield* fromEither(validateUpdate(entity, p[3]))
        yield* checkWritable(ctx, entity, d, [values])
        if (v === undefined) return yield* new NotFound({ entity: entity.name })
        const result = yield* repo.updateWhere(entity, repo.byField(f, v), values, d)
        return { result, entity: entity.name, recordIds: ids(result) }
      }
      case "deleteByField": {
        yield* arity(p, 3, 3, "[entity, field, value]")
        const entity = yield* entityOf(ctx, p[0])
        const f = yield* uniqueField(entity, p[1], "field")
        const v = yield* lookupValue(f, p[2])
        const d = yield* decide(ctx, entity, "delete")
        yield* checkReadable(d, [f])
        if (v === undefined) return yield* new NotFound({ entity: entity.name })
        const result = yield* repo.deleteWhere(entity, repo.byField(f, v), d)
        return { result, entity: entity.name }
      }
      case "createMany": {
        yield* arity(p, 2, 2, "[entity, data[]]")
        const entity = yield* entityOf(ctx, p[0])
        if (!Array.isArray(p[1])) return yield* new BadRequest({ reason: "params[1] must be an array of records" })
        const max = ctx.config.performance.max_batch_size
        if (p[1].length > max) return yield* ValidationFailed.one("data", `at most ${max} records per createMany`)
        const d = yield* decide(ctx, entity, "create")
        const items = yield* fromEither(validateCreateMany(entity, p[1]))
        yield* checkWritable(ctx, entity, d, items, p[1])
        const result = yield* repo.createMany(entity, items, d.rowFilter)
        return { result, entity: entity.name }
      }
      case "updateMany": {
        yield* arity(p, 3, 3, "[entity, filter, data]")
        const entity = yield* entityOf(ctx, p[0])
        const filter = yield* requireFilter(entity, p[1])
        yield* checkComplexity({ filter }, ctx.config.performance.max_query_complexity)
        const d = yield* decide(ctx, entity, "update")
        yield* checkReadable(d, fieldsOf(filter))
        const values = yield* fromEither(validateUpdate(entity, p[2]))
        for (const f of values.keys()) {
          if (f.unique) return yield* ValidationFailed.one(f.name, "a unique field cannot be set on many records at once")
        }
        yield* checkWritable(ctx, entity, d, [values])
        const result = yield* repo.updateMany(entity, filter, values, d)
        return { result, entity: entity.name }
      }
      case "deleteMany": {
        yield* arity(p, 2, 2, "[entity, filter]")
        const entity = yield* entityOf(ctx, p[0])
        const filter = yield* requireFilter(entity, p[1])
        yield* checkComplexity({ filter }, ctx.config.performance.max_query_complexity)
        const d = yield* decide(ctx, entity, "delete")
        yield* checkReadable(d, fieldsOf(filter))
        const result = yield* repo.deleteMany(entity, filter, d)
        return { result, entity: entity.name }
      }
      case "count": {
        yield* arity(p, 1, 2, "[entity, filter?]")
        const entity = yield* entityOf(ctx, p[0])
        const filter = yield* filterOf(entity, p[1], "filter")
        yield* checkComplexity({ filter }, ctx.config.performance.max_query_complexity)
        const d = yield* decide(ctx, entity, "read")
        yield* checkReadable(d, fieldsOf(filter))
        const result = yield* cachedRead(ctx, method, p, [{ entity, access: d }], repo.count(entity, filter, d))
        return { result, entity: entity.name }
      }
    }
  })

export const entityNameOf = (params: ReadonlyArray<unknown>): string | null => (typeof params[0] === "string" ? params[0].slice(0, 64) : null)
