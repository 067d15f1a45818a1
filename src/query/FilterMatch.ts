/**
 * The filter language (src/query/Filter.ts) evaluated in memory on a wire record, with the
 * answers the SQL of `compileFilter` gives on the row the record was read from: realtime events
 * are checked against each subscriber's row filters and subscription filter without a query.
 *
 * SQL's three-valued logic is kept (a comparison with NULL is unknown, and NOT unknown is still
 * unknown, so `NOT (x = 1)` does not admit a row whose x is NULL), and one more value is added
 * for records that do not carry a field at all (a partial before image, see
 * src/services/Changes.ts): "missing", which no connective can turn into a yes or a no.
 *
 * Text compares as the daemon's columns do on every dialect (PostgreSQL `COLLATE "C"`, MySQL
 * `utf8mb4_bin`, SQLite BINARY): by code point. LIKE is case-sensitive everywhere (SQLite runs
 * with `case_sensitive_like`); `mode: "insensitive"` folds A-Z only (`foldCase`).
 */
import type { FieldDef } from "../entity/Model.js"
import { type CmpOp, type FilterNode, foldCase, type LikeOp } from "./Filter.js"

/** true · false · SQL unknown (NULL) · the record lacks a field the filter tests. */
export type Truth = "T" | "F" | "N" | "M"

export type WireRecord = Readonly<Record<string, unknown>>
type Test = (r: WireRecord) => Truth

/** UTF-16 code units compared as code points (surrogate pairs sort above U+E000–U+FFFF). */
export const compareCodePoints = (a: string, b: string): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x === y) continue
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000
    }
    return x < y ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

/**
 * A decimal's text as an integer of 10^-30 units (DECIMAL(65,30) is the widest the daemon serves),
 * so that "10.5" > "9.75" as numbers, exactly.
 */
const decimalUnits = (v: unknown): bigint | undefined => {
  if (typeof v !== "string" && typeof v !== "number") return undefined
  const m = /^([+-])?(\d*)(?:\.(\d*))?$/.exec(String(v).trim())
  if (m === null || ((m[2] ?? "") === "" && (m[3] ?? "") === "")) return undefined
  const n = BigInt(`${m[2] || "0"}${(m[3] ?? "").padEnd(30, "0").slice(0, 30)}`)
  return m[1] === "-" ? -n : n
}

type Comparable = number | bigint | string | boolean

/** A record's value and a filter operand (canonical, as parseFilter made it) in one comparable form. */
const comparable = (f: FieldDef, v: unknown): Comparable | undefined => {
  switch (f.type) {
    case "bigint":
      try {
        return typeof v === "string" || typeof v === "number" ? BigInt(v) : undefined
      } catch {
        return undefined
      }
    case "decimal":
      return decimalUnits(v)
    case "float":
      return typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : undefined
    case "string_list":
      return undefined
    case "datetime": {
      const ms = v instanceof Date ? v.getTime() : typeof v === "string" ? Date.parse(v) : NaN
      return Number.isNaN(ms) ? undefined : ms
    }
    case "integer":
      return typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : undefined
    case "boolean":
      return typeof v === "boolean" ? v : typeof v === "number" ? v !== 0 : undefined
    case "uuid":
      return typeof v === "string" ? v.toLowerCase() : undefined
    case "json":
      return undefined
    default:
      return typeof v === "string" ? v : undefined
  }
}

const order = (a: Comparable, b: Comparable): number =>
  typeof a === "string" && typeof b === "string" ? compareCodePoints(a, b) : a === b ? 0 : a < b ? -1 : 1

const holds = (op: CmpOp, c: number): boolean => {
  switch (op) {
    case "eq":
      return c === 0
    case "ne":
      return c !== 0
    case "gt":
      return c > 0
    case "gte":
      return c >= 0
    case "lt":
      return c < 0
    case "lte":
      return c <= 0
  }
}

const likes = (op: LikeOp, s: string, v: string): boolean =>
  op === "contains" ? s.includes(v) : op === "startsWith" ? s.startsWith(v) : s.endsWith(v)

const not = (t: Truth): Truth => (t === "T" ? "F" : t === "F" ? "T" : t)

/** The field's value in the record: undefined when the record lacks it, null for SQL NULL. */
const valueOf = (r: WireRecord, f: FieldDef): unknown => (Object.hasOwn(r, f.name) ? (r[f.name] ?? null) : undefined)

/** The value a comparison sees: folded when the node is insensitive. */
const operandOf = (f: FieldDef, v: unknown, insensitive: boolean | undefined) => {
  const c = comparable(f, v)
  return insensitive === true && typeof c === "string" ? foldCase(c) : c
}

const compileNode = (n: FilterNode): Test => {
  switch (n._tag) {
    case "And": {
      if (n.nodes.length === 0) return () => "T"
      const parts = n.nodes.map(compileNode)
      return (r) => {
        let out: Truth = "T"
        for (const p of parts) {
          const t = p(r)
          if (t === "F") return "F"
          if (t === "M") out = "M"
          else if (t === "N" && out === "T") out = "N"
        }
        return out
      }
    }
    case "Or": {
      if (n.nodes.length === 0) return () => "F"
      const parts = n.nodes.map(compileNode)
      return (r) => {
        let out: Truth = "F"
        for (const p of parts) {
          const t = p(r)
          if (t === "T") return "T"
          if (t === "M") out = "M"
          else if (t === "N" && out === "F") out = "N"
        }
        return out
      }
    }
    case "Not": {
      const inner = compileNode(n.node)
      return (r) => not(inner(r))
    }
    case "IsNull": {
      const { field, isNull } = n
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        return (v === null) === isNull ? "T" : "F"
      }
    }
    case "Cmp": {
      const { field, op, insensitive } = n
      const want = operandOf(field, n.value, insensitive)
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        if (v === null) return "N"
        const got = operandOf(field, v, insensitive)
        if (got === undefined || want === undefined) return "N"
        return holds(op, order(got, want)) ? "T" : "F"
      }
    }
    case "In": {
      const { field, negate, insensitive } = n
      if (n.values.length === 0) return () => (negate ? "T" : "F")
      const wanted = n.values.map((v) => operandOf(field, v, insensitive))
      const set = new Set(wanted)
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        if (v === null) return "N"
        const got = operandOf(field, v, insensitive)
        if (got === undefined) return "N"
        return set.has(got) !== negate ? "T" : "F"
      }
    }
    case "Has": {
      const { field, op, values } = n
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        if (!Array.isArray(v)) return "N"
        const has = (x: string) => v.includes(x)
        return (op === "has" ? has(values[0] ?? "") : op === "hasEvery" ? values.every(has) : values.some(has)) ? "T" : "F"
      }
    }
    case "IsEmpty": {
      const { field, isEmpty } = n
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        if (!Array.isArray(v)) return "N"
        return (v.length === 0) === isEmpty ? "T" : "F"
      }
    }
    case "Like": {
      const { field, op, insensitive } = n
      const want = n.value
      return (r) => {
        const v = valueOf(r, field)
        if (v === undefined) return "M"
        if (v === null) return "N"
        if (typeof v !== "string") return "N"
        return likes(op, insensitive === true ? foldCase(v) : v, want) ? "T" : "F"
      }
    }
  }
}

/** A filter tree as a test of wire records (three-valued, plus "missing"). */
export const compileMatch = (node: FilterNode): Test => compileNode(node)

/** Whether SQL would select the row: only a definite true does. */
export const matches = (node: FilterNode, record: WireRecord): boolean => compileNode(node)(record) === "T"
