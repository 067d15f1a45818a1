/**
 * The daemon's filter language: parsed from the wire into a checked tree (`parseFilter`), then
 * compiled into a SQL fragment with bound parameters (`compileFilter`). Field names are looked up
 * in the entity definition; the column identifiers in the SQL come from the registry, never from
 * the request. An empty OR matches no rows; an empty AND matches every row.
 */
import type { Statement } from "@effect/sql"
import { Either } from "effect"
import { FieldIssue, ValidationFailed } from "../Errors.js"
import type { Dialect } from "../entity/Ddl.js"
import type { EntityDef, FieldDef } from "../entity/Model.js"
import { isoDateTimeMillis, isUuid, storableText } from "../entity/Validate.js"
import { canonicalBigInt, parseDecimal } from "../entity/Numbers.js"
import { encodeValue } from "./Codec.js"
import { isRecord } from "../Json.js"

export type CmpOp = "eq" | "ne" | "gt" | "gte" | "lt" | "lte"
export type LikeOp = "contains" | "startsWith" | "endsWith"

export type FilterNode =
  | { readonly _tag: "And"; readonly nodes: ReadonlyArray<FilterNode> }
  | { readonly _tag: "Or"; readonly nodes: ReadonlyArray<FilterNode> }
  | { readonly _tag: "Not"; readonly node: FilterNode }
  | { readonly _tag: "Cmp"; readonly field: FieldDef; readonly op: CmpOp; readonly value: unknown; readonly insensitive?: true }
  | {
      readonly _tag: "In"
      readonly field: FieldDef
      readonly values: ReadonlyArray<unknown>
      readonly negate: boolean
      readonly insensitive?: true
    }
  | { readonly _tag: "Like"; readonly field: FieldDef; readonly op: LikeOp; readonly value: string; readonly insensitive?: true }
  | { readonly _tag: "IsNull"; readonly field: FieldDef; readonly isNull: boolean }
  | { readonly _tag: "Has"; readonly field: FieldDef; readonly op: ListOp; readonly values: ReadonlyArray<string> }
  | { readonly _tag: "IsEmpty"; readonly field: FieldDef; readonly isEmpty: boolean }

/** Operators of lists of strings (Prisma's scalar list filters): one element, all of them, any of them. */
export type ListOp = "has" | "hasEvery" | "hasSome"

export const TRUE: FilterNode = { _tag: "And", nodes: [] }
export const FALSE: FilterNode = { _tag: "Or", nodes: [] }

export const and = (...nodes: ReadonlyArray<FilterNode>): FilterNode => {
  const kept = nodes.filter((n) => !(n._tag === "And" && n.nodes.length === 0))
  return kept.length === 1 ? kept[0]! : { _tag: "And", nodes: kept }
}

export interface FilterLimits {
  readonly maxDepth: number
  readonly maxNodes: number
  readonly maxInList: number
}

export const defaultFilterLimits: FilterLimits = { maxDepth: 16, maxNodes: 500, maxInList: 1000 }

const OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "notIn", "contains", "startsWith", "endsWith", "isNull", "mode"] as const
const LIST_OPERATORS = ["has", "hasEvery", "hasSome", "isEmpty", "isNull"] as const
const ORDERED_TYPES = new Set(["uuid", "string", "text", "email", "enum", "integer", "bigint", "decimal", "float", "datetime"])
const TEXT_TYPES = new Set(["string", "text", "email", "enum"])
/** Free text: what `mode: "insensitive"` applies to (enum values and ids are exact names). */
const FREE_TEXT_TYPES = new Set(["string", "text", "email"])
const INSENSITIVE_OPS = new Set(["eq", "ne", "in", "notIn", "contains", "startsWith", "endsWith"])

/**
 * The case folding of `mode: "insensitive"`: the letters A-Z become a-z, nothing else changes.
 * It is what SQLite's lower() does, and what the other dialects are made to do (see `folded`),
 * so that the three give the same rows; É and é stay different everywhere.
 */
export const foldCase = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase())

class Issues {
  readonly list: Array<FieldIssue> = []
  nodes = 0
  add(field: string, error: string) {
    if (this.list.length < 50) this.list.push(new FieldIssue({ field, error }))
  }
}

/**
 * Checks a filter operand for the field's type. Lengths and patterns are not applied: a value
 * that no record could have simply matches nothing. Types are, because the databases disagree
 * on comparing values of the wrong type.
 */
export const operand = (f: FieldDef, v: unknown): Either.Either<unknown, string> => {
  switch (f.type) {
    case "uuid":
      return typeof v === "string" && isUuid(v) ? Either.right(v.toLowerCase()) : Either.left("must be a UUID")
    case "string":
    case "text":
    case "email":
    case "enum":
      return typeof v === "string" && storableText(v) ? Either.right(v) : Either.left("must be a string")
    case "integer":
      // The column is a 32-bit integer everywhere; PostgreSQL refuses to compare with more.
      return typeof v === "number" && Number.isInteger(v) && v >= -2147483648 && v <= 2147483647
        ? Either.right(v)
        : Either.left("must be an integer between -2147483648 and 2147483647")
    case "bigint": {
      const r = canonicalBigInt(v)
      return "ok" in r ? Either.right(r.ok) : Either.left(r.error)
    }
    case "decimal": {
      const d =
        typeof v === "string" ? parseDecimal(v.trim()) : typeof v === "number" && Number.isFinite(v) ? parseDecimal(String(v)) : undefined
      return d === undefined ? Either.left('must be a decimal number as a string, e.g. "12.50"') : Either.right(d.text)
    }
    case "float":
      return typeof v === "number" && Number.isFinite(v) ? Either.right(v) : Either.left("must be a finite number")
    case "string_list":
      return typeof v === "string" && storableText(v) ? Either.right(v) : Either.left("must be a string")
    case "boolean":
      return typeof v === "boolean" ? Either.right(v) : Either.left("must be true or false")
    case "datetime":
      return typeof v === "string" && !Number.isNaN(isoDateTimeMillis(v))
        ? Either.right(new Date(v))
        : Either.left("must be an ISO-8601 date-time with a time zone")
    case "json":
      return Either.left("JSON fields can only be tested with isNull")
  }
}

/** A condition on a list of strings: {has}, {hasEvery}, {hasSome}, {isEmpty}, {isNull}, or null. */
const parseListField = (f: FieldDef, spec: unknown, at: string, issues: Issues): FilterNode | undefined => {
  const expected = `expected operators of a list (${LIST_OPERATORS.join(", ")})`
  if (!isRecord(spec) || Object.keys(spec).length === 0) return void issues.add(at, expected)
  const nodes: Array<FilterNode> = []
  for (const [op, arg] of Object.entries(spec)) {
    const here = `${at}.${op}`
    issues.nodes++
    switch (op) {
      case "has": {
        const v = operand(f, arg)
        if (Either.isLeft(v)) issues.add(here, v.left)
        else nodes.push({ _tag: "Has", field: f, op, values: [v.right as string] })
        break
      }
      case "hasEvery":
      case "hasSome": {
        if (!Array.isArray(arg) || arg.length > defaultFilterLimits.maxInList) {
          issues.add(here, `must be a list of at most ${defaultFilterLimits.maxInList} strings`)
          break
        }
        const values: Array<string> = []
        arg.forEach((x, i) => {
          const v = operand(f, x)
          if (Either.isLeft(v)) issues.add(`${here}[${i}]`, v.left)
          else values.push(v.right as string)
        })
        issues.nodes += values.length
        nodes.push({ _tag: "Has", field: f, op, values })
        break
      }
      case "isEmpty":
      case "isNull":
        if (typeof arg !== "boolean") issues.add(here, "must be true or false")
        else nodes.push(op === "isEmpty" ? { _tag: "IsEmpty", field: f, isEmpty: arg } : { _tag: "IsNull", field: f, isNull: arg })
        break
      default:
        issues.add(here, `unknown operator: ${expected}`)
    }
  }
  return nodes.length === 1 ? nodes[0] : { _tag: "And", nodes }
}

const parseField = (f: FieldDef, spec: unknown, at: string, issues: Issues): FilterNode | undefined => {
  issues.nodes++
  if (spec === null) return { _tag: "IsNull", field: f, isNull: true }
  if (f.type === "string_list") return parseListField(f, spec, at, issues)
  if (Array.isArray(spec)) {
    issues.add(at, "a list is not a value: use {in: [...]}")
    return undefined
  }
  if (!isRecord(spec)) {
    const v = operand(f, spec)
    if (Either.isLeft(v)) return void issues.add(at, v.left)
    return { _tag: "Cmp", field: f, op: "eq", value: v.right }
  }
  const keys = Object.keys(spec)
  if (keys.length === 0) {
    issues.add(at, `expected a value or operators (${OPERATORS.join(", ")})`)
    return undefined
  }
  const nodes: Array<FilterNode> = []
  const mode = spec.mode
  let insensitive = false
  if (mode !== undefined) {
    if (mode !== "insensitive" && mode !== "default") issues.add(`${at}.mode`, `must be "insensitive" or "default"`)
    else if (mode === "insensitive") {
      if (!FREE_TEXT_TYPES.has(f.type)) issues.add(`${at}.mode`, `only applies to string, text and email fields`)
      else if (!keys.some((k) => INSENSITIVE_OPS.has(k)))
        issues.add(`${at}.mode`, `needs one of eq, ne, in, notIn, contains, startsWith, endsWith`)
      else insensitive = true
    }
    if (keys.length === 1) {
      if (mode === "default") issues.add(`${at}.mode`, `needs one of eq, ne, in, notIn, contains, startsWith, endsWith`)
      return undefined
    }
  }
  /** The flag for nodes whose values are folded (`foldCase`) here and whose column is folded in SQL. */
  const folding = insensitive ? ({ insensitive: true } as const) : {}
  const fold = (v: unknown): unknown => (insensitive && typeof v === "string" ? foldCase(v) : v)
  for (const op of keys) {
    const arg = spec[op]
    const here = `${at}.${op}`
    if (op === "mode") continue
    issues.nodes++
    switch (op) {
      case "eq":
      case "ne":
      case "gt":
      case "gte":
      case "lt":
      case "lte": {
        if (arg === null && (op === "eq" || op === "ne")) {
          nodes.push({ _tag: "IsNull", field: f, isNull: op === "eq" })
          break
        }
        if (op !== "eq" && op !== "ne" && !ORDERED_TYPES.has(f.type)) {
          issues.add(here, `${f.type} fields cannot be ordered`)
          break
        }
        if (op !== "eq" && op !== "ne" && insensitive) {
          issues.add(here, `mode "insensitive" does not apply to ${op}`)
          break
        }
        const v = operand(f, arg)
        if (Either.isLeft(v)) issues.add(here, v.left)
        else nodes.push({ _tag: "Cmp", field: f, op, value: fold(v.right), ...folding })
        break
      }
      case "in":
      case "notIn": {
        if (f.type === "json") {
          issues.add(here, "JSON fields can only be tested with isNull")
          break
        }
        if (!Array.isArray(arg)) {
          issues.add(here, "must be a list of values")
          break
        }
        if (arg.length > defaultFilterLimits.maxInList) {
          issues.add(here, `must have at most ${defaultFilterLimits.maxInList} values`)
          break
        }
        const values: Array<unknown> = []
        arg.forEach((x, i) => {
          const v = operand(f, x)
          if (Either.isLeft(v)) issues.add(`${here}[${i}]`, v.left)
          else values.push(fold(v.right))
        })
        issues.nodes += values.length
        nodes.push({ _tag: "In", field: f, values, negate: op === "notIn", ...folding })
        break
      }
      case "contains":
      case "startsWith":
      case "endsWith": {
        if (!TEXT_TYPES.has(f.type)) {
          issues.add(here, `only applies to text fields`)
          break
        }
        const v = operand(f, arg)
        if (Either.isLeft(v)) issues.add(here, v.left)
        else nodes.push({ _tag: "Like", field: f, op, value: fold(v.right) as string, ...folding })
        break
      }
      case "isNull":
        if (typeof arg !== "boolean") issues.add(here, "must be true or false")
        else nodes.push({ _tag: "IsNull", field: f, isNull: arg })
        break
      default:
        issues.add(here, `unknown operator (expected one of ${OPERATORS.join(", ")})`)
    }
  }
  return nodes.length === 1 ? nodes[0] : { _tag: "And", nodes }
}

const parseNode = (entity: EntityDef, spec: unknown, at: string, depth: number, issues: Issues): FilterNode | undefined => {
  if (depth > defaultFilterLimits.maxDepth) {
    issues.add(at, `must not nest deeper than ${defaultFilterLimits.maxDepth} levels`)
    return undefined
  }
  if (!isRecord(spec)) {
    issues.add(at, "must be an object of field conditions")
    return undefined
  }
  const nodes: Array<FilterNode> = []
  for (const [key, value] of Object.entries(spec)) {
    if (issues.nodes > defaultFilterLimits.maxNodes) {
      issues.add(at, `has more than ${defaultFilterLimits.maxNodes} conditions`)
      return undefined
    }
    const here = `${at}.${key}`
    if (key === "AND" || key === "OR") {
      const list = Array.isArray(value) ? value : key === "AND" && isRecord(value) ? [value] : undefined
      if (list === undefined) {
        issues.add(here, "must be a list of filters")
        continue
      }
      const children = list.map((c, i) => parseNode(entity, c, `${here}[${i}]`, depth + 1, issues))
      if (children.every((c): c is FilterNode => c !== undefined)) nodes.push({ _tag: key === "AND" ? "And" : "Or", nodes: children })
    } else if (key === "NOT") {
      const list = Array.isArray(value) ? value : [value]
      const children = list.map((c, i) => parseNode(entity, c, Array.isArray(value) ? `${here}[${i}]` : here, depth + 1, issues))
      if (children.every((c): c is FilterNode => c !== undefined)) {
        nodes.push({ _tag: "Not", node: children.length === 1 ? children[0]! : { _tag: "And", nodes: children } })
      }
    } else {
      const f = entity.byName.get(key)
      if (f === undefined || f.neverExpose) {
        issues.add(here, `unknown field of ${entity.name}`)
        continue
      }
      const n = parseField(f, value, here, issues)
      if (n !== undefined) nodes.push(n)
    }
  }
  return nodes.length === 1 ? nodes[0] : { _tag: "And", nodes }
}

/** Wire filter → checked tree. `undefined` and `null` mean "no filter". */
export const parseFilter = (entity: EntityDef, spec: unknown, at = "filter"): Either.Either<FilterNode, ValidationFailed> => {
  if (spec === undefined || spec === null) return Either.right(TRUE)
  const issues = new Issues()
  const node = parseNode(entity, spec, at, 0, issues)
  if (issues.list.length > 0 || node === undefined) {
    return Either.left(
      new ValidationFailed({
        fields: issues.list.length > 0 ? issues.list : [new FieldIssue({ field: at, error: "is not a valid filter" })]
      })
    )
  }
  return Either.right(node)
}

/** Every field a filter tests, in the order they first appear. */
export const filterFields = (node: FilterNode, into: Set<FieldDef> = new Set()): Set<FieldDef> => {
  switch (node._tag) {
    case "And":
    case "Or":
      for (const n of node.nodes) filterFields(n, into)
      return into
    case "Not":
      return filterFields(node.node, into)
    default:
      into.add(node.field)
      return into
  }
}

/** True when the filter tests at least one field (bulk writes refuse filters that do not). */
export const hasFieldCondition = (node: FilterNode): boolean => {
  switch (node._tag) {
    case "And":
    case "Or":
      return node.nodes.some(hasFieldCondition)
    case "Not":
      return hasFieldCondition(node.node)
    default:
      return true
  }
}

/** `!` escapes LIKE wildcards: it has no special meaning in any dialect's string literals. */
const likePattern = (op: LikeOp, v: string): string => {
  const escaped = v.replace(/[!%_]/g, (c) => `!${c}`)
  return op === "contains" ? `%${escaped}%` : op === "startsWith" ? `${escaped}%` : `%${escaped}`
}

const CMP: Record<CmpOp, string> = { eq: "=", ne: "<>", gt: ">", gte: ">=", lt: "<", lte: "<=" }

const UPPER_ASCII = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"]

/**
 * A text column with A-Z folded to a-z and nothing else (`foldCase`), on each dialect:
 * - SQLite: lower() (it knows only A-Z);
 * - PostgreSQL: lower() under the "C" collation (only A-Z there too, whatever the column's
 *   collation; the cast also covers enum types);
 * - MySQL/MariaDB: LOWER() knows every alphabet and compares with the column's collation
 *   (case-insensitive in tables the daemon did not make), so the column is taken as bytes and
 *   A-Z replaced one by one; bytes compare without collation or trailing-space padding.
 */
const folded = (sql: Statement.Constructor, dialect: Dialect, column: Statement.Fragment): Statement.Fragment => {
  if (dialect === "sqlite") return sql`lower(${column})`
  if (dialect === "pg") return sql`lower(CAST(${column} AS text) COLLATE "C")`
  let expr = sql`CAST(${column} AS BINARY)`
  for (const c of UPPER_ASCII) expr = sql`REPLACE(${expr}, ${sql.literal(`'${c}'`)}, ${sql.literal(`'${c.toLowerCase()}'`)})`
  return expr
}

/**
 * Tree → SQL fragment. `qualify` prefixes columns with a table alias (for joins). Every value
 * is a bound parameter; every identifier comes from the field definitions.
 */
export const compileFilter = (sql: Statement.Constructor, dialect: Dialect, node: FilterNode, qualify?: string): Statement.Fragment => {
  const plain = (f: FieldDef) => (qualify === undefined ? sql(f.column) : sql`${sql(qualify)}.${sql(f.column)}`)
  const col = (f: FieldDef, insensitive?: true) => (insensitive === true ? folded(sql, dialect, sql`${plain(f)}`) : plain(f))
  /**
   * A bound value. MySQL compares a number column with a string as doubles (53 bits), so BigInt
   * and Decimal values, which travel as strings, are cast to the column's kind there.
   */
  const casts = (f: FieldDef) => dialect === "mysql" && (f.type === "bigint" || f.type === "decimal")
  const param = (f: FieldDef, v: unknown): Statement.Fragment => {
    const encoded = encodeValue(dialect, f, v)
    if (!casts(f)) return sql`${encoded}`
    return f.type === "bigint" ? sql`CAST(${encoded} AS SIGNED)` : sql`CAST(${encoded} AS DECIMAL(65,30))`
  }
  const go = (n: FilterNode): Statement.Fragment => {
    switch (n._tag) {
      case "And":
        return n.nodes.length === 0 ? sql.literal("1=1") : sql.join(" AND ", true, "1=1")(n.nodes.map(go))
      case "Or":
        // Guarded on purpose: an empty OR must match nothing (sql.or([]) would be 1=1).
        return n.nodes.length === 0 ? sql.literal("1=0") : sql.join(" OR ", true, "1=0")(n.nodes.map(go))
      case "Not":
        return sql`NOT (${go(n.node)})`
      case "Cmp":
        return sql`${col(n.field, n.insensitive)} ${sql.literal(CMP[n.op])} ${param(n.field, n.value)}`
      case "In": {
        if (n.values.length === 0) return sql.literal(n.negate ? "1=1" : "1=0")
        const list = casts(n.field)
          ? sql`(${sql.join(", ", false)(n.values.map((v) => param(n.field, v)))})`
          : sql.in(n.values.map((v) => encodeValue(dialect, n.field, v)))
        return sql`${col(n.field, n.insensitive)} ${sql.literal(n.negate ? "NOT IN" : "IN")} ${list}`
      }
      // Lists of strings are PostgreSQL arrays (the loader refuses them on the other dialects).
      case "Has":
        if (n.op === "has") return sql`${n.values[0] ?? ""} = ANY(${plain(n.field)})`
        return sql`${plain(n.field)} ${sql.literal(n.op === "hasEvery" ? "@>" : "&&")} CAST(${encodeValue(dialect, n.field, n.values)} AS text[])`
      case "IsEmpty":
        return sql`cardinality(${plain(n.field)}) ${sql.literal(n.isEmpty ? "= 0" : "> 0")}`
      case "Like":
        return sql`${col(n.field, n.insensitive)} LIKE ${likePattern(n.op, n.value)} ESCAPE '!'`
      case "IsNull":
        return sql`${col(n.field)} ${sql.literal(n.isNull ? "IS NULL" : "IS NOT NULL")}`
    }
  }
  return go(node)
}
