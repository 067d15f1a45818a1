/**
 * Values between the daemon and each dialect: what is bound as a parameter, and how a row read
 * back becomes a wire record (camelCase keys, booleans, ISO-8601 UTC strings, JSON values).
 */
import type { Dialect } from "../entity/Ddl.js"
import type { EntityDef, FieldDef } from "../entity/Model.js"

export type Row = Record<string, unknown>
export type WireRecord = Record<string, unknown>

/** A canonical value (as produced by validation) → a bound parameter. */
export const encodeValue = (dialect: Dialect, f: FieldDef, value: unknown): unknown => {
  if (value === null || value === undefined) return null
  switch (f.type) {
    case "boolean":
      return dialect === "pg" ? value : value ? 1 : 0
    case "datetime": {
      const d = value instanceof Date ? value : new Date(String(value))
      return dialect === "sqlite" ? d.toISOString() : d
    }
    case "json":
      return JSON.stringify(value)
    default:
      return value
  }
}

const toDate = (raw: unknown): string => {
  const d = raw instanceof Date ? raw : new Date(String(raw))
  return d.toISOString()
}

/** A value read from the database → its wire form. */
export const decodeValue = (dialect: Dialect, f: FieldDef, raw: unknown): unknown => {
  if (raw === null || raw === undefined) return null
  switch (f.type) {
    case "boolean":
      return dialect === "pg" ? raw === true : Number(raw) !== 0
    case "datetime":
      return toDate(raw)
    case "integer":
      return typeof raw === "number" ? raw : Number(raw)
    case "json":
      return typeof raw === "string" && dialect !== "pg" ? JSON.parse(raw) : raw
    default:
      return raw
  }
}

/** A row with snake_case columns → a record with the fields the caller may see. */
export const decodeRow = (dialect: Dialect, entity: EntityDef, row: Row, fields: ReadonlyArray<FieldDef> = entity.exposed): WireRecord => {
  const out: WireRecord = {}
  for (const f of fields) {
    if (f.neverExpose) continue
    out[f.name] = decodeValue(dialect, f, row[f.column])
  }
  return out
}

/**
 * The wire record of values just written (canonical values, as validation produced them), for
 * when the row cannot be read back: same keys and forms as `decodeRow`.
 */
export const wireOfValues = (values: ReadonlyMap<FieldDef, unknown>, fields: ReadonlyArray<FieldDef>): WireRecord => {
  const out: WireRecord = {}
  for (const f of fields) {
    if (f.neverExpose) continue
    const v = values.get(f)
    out[f.name] = v === undefined || v === null ? null : f.type === "datetime" ? toDate(v) : v
  }
  return out
}
