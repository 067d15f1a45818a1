/**
 * The access policy as pure functions: the rules file parsed into rules, and the decision for a
 * principal × entity × operation (row filter, readable and writable fields) or the reason for a
 * refusal. No I/O: layers/Acl.ts loads and reloads the rules and counts the decisions.
 *
 * Defaults come from each entity's `acl:` block (docs/security.md, "Access rules"): `public` admits any
 * authenticated principal, a role admits that role and every role above it, `self` admits the
 * rows the caller owns (a row filter on the owner field), `system` admits the service role only.
 * When any rule of the rules file matches, the rules alone decide (a deny wins; allowed row
 * filters are OR-ed, field lists joined).
 */
import { Either } from "effect"
import {
  type AclOperation,
  AclOperations,
  isAclOperation,
  type EntityDef,
  type EntityRegistryShape,
  type FieldDef
} from "../entity/Model.js"
import { FALSE, type FilterNode, parseFilter, TRUE } from "../query/Filter.js"
import type { Decision } from "../services/Acl.js"
import { atLeast, isUserRole, type Principal, type Role, roleRank } from "../services/Principal.js"
import { isRecord } from "../Json.js"

const PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"

export interface Rule {
  readonly roles: ReadonlySet<string> | "*"
  readonly entities: ReadonlySet<string> | "*"
  readonly operations: ReadonlySet<AclOperation>
  readonly effect: "allow" | "deny"
  /** The wire filter, with `$user.id` / `$user.role` still in it. */
  readonly filter?: unknown
  /** The filter names `$user.*`, so it differs per principal. */
  readonly bindsUser: boolean
  readonly readFields?: ReadonlyArray<string>
  readonly writeFields?: ReadonlyArray<string>
}

const names = (raw: unknown, at: string, problems: Array<string>): ReadonlyArray<string> | undefined => {
  if (raw === undefined) return undefined
  const list = Array.isArray(raw) ? raw : [raw]
  if (!list.every((x): x is string => typeof x === "string")) {
    problems.push(`${at}: expected a name or a list of names`)
    return undefined
  }
  return list
}

/** Replaces "$user.id" and "$user.role" anywhere in a filter. */
export const bindUser = (filter: unknown, principal: Pick<Principal, "userId" | "role">): unknown => {
  if (filter === "$user.id") return principal.userId
  if (filter === "$user.role") return principal.role
  if (Array.isArray(filter)) return filter.map((f) => bindUser(f, principal))
  if (isRecord(filter)) return Object.fromEntries(Object.entries(filter).map(([k, v]) => [k, bindUser(v, principal)]))
  return filter
}

/** Parses and checks a rules document against the registry; every problem names its rule. */
export const parseRules = (doc: unknown, registry: EntityRegistryShape): { rules: Array<Rule>; problems: Array<string> } => {
  const problems: Array<string> = []
  const rules: Array<Rule> = []
  if (doc === null || doc === undefined) return { rules, problems }
  if (!isRecord(doc) || (doc.rules !== undefined && !Array.isArray(doc.rules))) {
    return { rules, problems: ["expected a mapping with a list `rules:`"] }
  }
  for (const k of Object.keys(doc)) if (k !== "rules") problems.push(`${k}: unknown key (expected rules)`)
  const list = (doc.rules ?? []) as Array<unknown>
  list.forEach((raw, i) => {
    const at = `rules[${i}]`
    if (!isRecord(raw)) return void problems.push(`${at}: expected a mapping`)
    const known = new Set([
      "role",
      "roles",
      "entity",
      "entities",
      "operation",
      "operations",
      "effect",
      "filter",
      "read_fields",
      "write_fields",
      "description"
    ])
    for (const k of Object.keys(raw)) if (!known.has(k)) problems.push(`${at}.${k}: unknown key`)
    const roles = names(raw.roles ?? raw.role, `${at}.roles`, problems)
    const entities = names(raw.entities ?? raw.entity, `${at}.entities`, problems)
    const ops = names(raw.operations ?? raw.operation, `${at}.operations`, problems)
    if (roles === undefined || entities === undefined || ops === undefined) {
      return void problems.push(`${at}: roles, entities and operations are required`)
    }
    for (const r of roles) if (r !== "*" && !isUserRole(r)) problems.push(`${at}.roles: unknown role ${r}`)
    for (const e of entities) if (e !== "*" && !registry.entities.has(e)) problems.push(`${at}.entities: unknown entity ${e}`)
    for (const o of ops)
      if (o !== "*" && !isAclOperation(o)) problems.push(`${at}.operations: unknown operation ${o} (create, read, update, delete, *)`)
    const effect = raw.effect ?? "allow"
    if (effect !== "allow" && effect !== "deny") problems.push(`${at}.effect: expected allow or deny`)
    const scope = entities.includes("*")
      ? [...registry.entities.values()]
      : entities.map((e) => registry.entities.get(e)).filter((e): e is EntityDef => e !== undefined)
    if (raw.filter !== undefined) {
      const bound = bindUser(raw.filter, { userId: PLACEHOLDER_ID, role: "user" })
      for (const e of scope) {
        const parsed = parseFilter(e, bound, `${at}.filter`)
        if (Either.isLeft(parsed)) problems.push(...parsed.left.fields.map((f) => `${f.field} (${e.name}): ${f.error}`))
      }
    }
    const fieldList = (key: "read_fields" | "write_fields") => {
      const l = names(raw[key], `${at}.${key}`, problems)
      for (const f of l ?? []) for (const e of scope) if (!e.byName.has(f)) problems.push(`${at}.${key}: ${e.name} has no field ${f}`)
      return l
    }
    const readFields = fieldList("read_fields")
    const writeFields = fieldList("write_fields")
    rules.push({
      roles: roles.includes("*") ? "*" : new Set(roles),
      entities: entities.includes("*") ? "*" : new Set(entities),
      operations: new Set(ops.includes("*") ? AclOperations : (ops as Array<AclOperation>)),
      effect: effect === "deny" ? "deny" : "allow",
      bindsUser: raw.filter !== undefined && JSON.stringify(raw.filter).includes('"$user.'),
      ...(raw.filter === undefined ? {} : { filter: raw.filter }),
      ...(readFields === undefined ? {} : { readFields }),
      ...(writeFields === undefined ? {} : { writeFields })
    })
  })
  return { rules, problems }
}

/**
 * A rule's filter as a tree. One without `$user.*` placeholders is the same for every principal:
 * it is parsed once per entity (the rules are re-created on reload, so nothing goes stale).
 */
const fixedFilters = new WeakMap<Rule, Map<string, FilterNode>>()
const ruleFilter = (r: Rule, entity: EntityDef, principal: Principal): FilterNode => {
  const parse = (): FilterNode => {
    const parsed = parseFilter(entity, bindUser(r.filter, principal), "rule.filter")
    // A rule whose filter cannot apply to this principal admits nothing.
    return Either.isRight(parsed) ? parsed.right : FALSE
  }
  if (r.bindsUser) return parse()
  let byEntity = fixedFilters.get(r)
  if (byEntity === undefined) fixedFilters.set(r, (byEntity = new Map()))
  let node = byEntity.get(entity.name)
  if (node === undefined) byEntity.set(entity.name, (node = parse()))
  return node
}

export const writableFields = (entity: EntityDef) => entity.fields.filter((f) => !f.generated && !f.primary)

export const systemDecision = (entity: EntityDef): Decision => ({
  rowFilter: TRUE,
  readable: entity.exposed,
  writable: writableFields(entity)
})

const or = (nodes: ReadonlyArray<FilterNode>): FilterNode =>
  nodes.some((n) => n._tag === "And" && n.nodes.length === 0) ? TRUE : nodes.length === 1 ? nodes[0]! : { _tag: "Or", nodes }

/**
 * Users may not touch accounts ranked above their own: writes to an entity with a role field are
 * narrowed to rows whose role is at most the caller's.
 */
const rankGuard = (entity: EntityDef, principal: Principal, op: AclOperation): FilterNode => {
  const role = entity.byName.get("role")
  if (role === undefined || role.type !== "enum" || (op !== "update" && op !== "delete")) return TRUE
  const allowed = (role.values ?? []).filter((v) => isUserRole(v) && roleRank(v) <= roleRank(principal.role))
  return { _tag: "In", field: role, values: allowed, negate: false }
}

/** The decision for a non-system principal, or the reason it is refused. */
export const decideFor = (
  rules: ReadonlyArray<Rule>,
  principal: Principal,
  entity: EntityDef,
  op: AclOperation,
  hidden: ReadonlySet<FieldDef>
): Decision | string => {
  const denial = `Insufficient permissions for operation '${op}' on entity '${entity.name}'`
  const readableOf = (names?: ReadonlyArray<string>) =>
    entity.exposed.filter((f) => !hidden.has(f) && (names === undefined || names.includes(f.name)))
  const writableOf = (names?: ReadonlyArray<string>) => writableFields(entity).filter((f) => names === undefined || names.includes(f.name))
  const guard = rankGuard(entity, principal, op)
  const narrow = (n: FilterNode): FilterNode => (guard === TRUE ? n : n === TRUE ? guard : { _tag: "And", nodes: [n, guard] })

  const matching = rules.filter(
    (r) => (r.roles === "*" || r.roles.has(principal.role)) && (r.entities === "*" || r.entities.has(entity.name)) && r.operations.has(op)
  )
  if (matching.length > 0) {
    if (matching.some((r) => r.effect === "deny")) return denial
    const filters: Array<FilterNode> = []
    for (const r of matching) {
      if (r.filter === undefined) filters.push(TRUE)
      else {
        filters.push(ruleFilter(r, entity, principal))
      }
    }
    const reads = matching.map((r) => r.readFields)
    const writes = matching.map((r) => r.writeFields)
    return {
      rowFilter: narrow(or(filters)),
      readable: readableOf(reads.some((x) => x === undefined) ? undefined : reads.flatMap((x) => x ?? [])),
      writable: writableOf(writes.some((x) => x === undefined) ? undefined : writes.flatMap((x) => x ?? []))
    }
  }

  const d = entity.acl[op]
  if (d === undefined) return denial
  const byRole = d.public || d.roles.some((r) => atLeast(principal.role, r as Role))
  if (byRole) return { rowFilter: narrow(TRUE), readable: readableOf(), writable: writableOf() }
  if (d.self && entity.ownerField !== undefined) {
    return {
      rowFilter: narrow({ _tag: "Cmp", field: entity.ownerField, op: "eq", value: principal.userId }),
      readable: readableOf(),
      writable: writableOf()
    }
  }
  return denial
}
