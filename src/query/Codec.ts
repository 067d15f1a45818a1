/**
 * Values between the daemon and each dialect: what is bound as a parameter, and how a row read
 * back becomes a wire record (camelCase keys, booleans, ISO-8601 UTC strings, JSON values).
 */
import type { Dialect } from "../entity/Ddl.js"
import type { EntityDef, FieldDef } from "../entity/Model.js"
import { parseDecimal } from "../entity/Numbers.js"

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
      // PostgreSQL gets the UTC text: a Date would be sent in the process's local time, which a
      // TIMESTAMP column (Prisma's, without time zone) keeps as its wall-clock value.
      if (dialect === "sqlite") return f.epochMillis === true ? d.getTime() : d.toISOString()
      return dialect === "pg" ? d.toISOString() : d
    }
    case "json":
      return JSON.stringify(value)
    case "string_list":
      return Array.isArray(value) ? pgArrayLiteral(value.map(String)) : value
    default:
      return value
  }
}

/** A PostgreSQL array literal of strings (every element quoted, so NULL, commas and braces are text). */
export const pgArrayLiteral = (items: ReadonlyArray<string>): string =>
  `{${items.map((s) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(",")}}`

/** Date-time text SQLite's CURRENT_TIMESTAMP and Prisma's defaults write: UTC without a "T". */
const SQL_DATETIME = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(Z|[+-]\d{2}:?\d{2})?$/

/**
 * A stored date-time → ISO-8601 UTC. Besides Dates and ISO text, what other writers leave in a
 * column: integer milliseconds since the epoch (Prisma on SQLite) and "YYYY-MM-DD HH:MM:SS" (UTC).
 */
/**
 * ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` prints it (layers/db/Pg.ts reads
 * timestamptz so), on a day and hour a Date keeps as they are: it would turn "02-30" into "03-02"
 * and "T24:00" into the next day, so those still go through a Date.
 */
const CANONICAL_INSTANT = /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/

const toDate = (raw: unknown): string => {
  if (typeof raw === "string" && raw.length === 24 && CANONICAL_INSTANT.test(raw)) return raw
  let d: Date
  if (raw instanceof Date) d = raw
  else if (typeof raw === "number" || typeof raw === "bigint" || (typeof raw === "string" && /^-?\d+$/.test(raw))) d = new Date(Number(raw))
  else {
    const text = String(raw)
    const m = SQL_DATETIME.exec(text)
    d = new Date(m === null ? text : `${m[1]}T${m[2]}${m[3] ?? "Z"}`)
  }
  return Number.isNaN(d.getTime()) ? String(raw) : d.toISOString()
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
    case "float":
      return typeof raw === "number" ? raw : Number(raw)
    case "bigint":
      return String(raw)
    case "decimal":
      return parseDecimal(String(raw))?.text ?? String(raw)
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
