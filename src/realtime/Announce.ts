/**
 * The announcement of a write between replicas, as text: `{origin, entity, rows}` with each row
 * `[op, id]`, `[op, id, before]` or `[op, id, before, 1]` (1: the before image is partial).
 *
 * PostgreSQL refuses NOTIFY payloads of 8000 bytes or more, so a write is cut into as many
 * announcements as its rows need, each under `maxBytes`. Ids always travel; a row's before image
 * travels whole when it fits, else with its largest values left out (marked partial: the
 * receiving replica treats the missing fields as unknown), else not at all. Sensitive and
 * never_expose fields never travel (`private`): announcements may be read by anyone who can
 * LISTEN on the database or SUBSCRIBE on Redis.
 */
import { isRecord } from "../Json.js"
import type { RowChange, RowImage, RowOp } from "../services/Changes.js"

export interface Announcement {
  readonly origin: string
  readonly entity: string
  readonly rows?: ReadonlyArray<RowChange>
}

const OPS: ReadonlySet<string> = new Set<RowOp>(["create", "update", "delete"])

const bytes = (s: string): number => Buffer.byteLength(s, "utf8")

/** The before image without the fields that must not leave the process. */
const withoutPrivate = (before: RowImage, hidden: ReadonlySet<string>): { image: Record<string, unknown>; dropped: boolean } => {
  const image: Record<string, unknown> = {}
  let dropped = false
  for (const [k, v] of Object.entries(before)) {
    if (hidden.has(k)) dropped = true
    else image[k] = v
  }
  return { image, dropped }
}

/** Leaves out the largest values until the image's text is at most `budget` bytes (undefined: even `{}`-ish does not fit). */
const shrink = (image: Record<string, unknown>, budget: number, keep: string): Record<string, unknown> | undefined => {
  const sizes = Object.entries(image)
    .filter(([k]) => k !== keep)
    .map(([k, v]) => [k, bytes(JSON.stringify(v) ?? "null") + bytes(k) + 4] as const)
    .sort((a, b) => b[1] - a[1])
  const out = { ...image }
  let size = bytes(JSON.stringify(out))
  for (const [k, n] of sizes) {
    if (size <= budget) break
    delete out[k]
    size -= n
  }
  size = bytes(JSON.stringify(out))
  return size <= budget ? out : undefined
}

const entryOf = (r: RowChange, hidden: ReadonlySet<string>, budget: number): unknown => {
  if (r.before === undefined) return [r.op, r.id]
  const { image, dropped } = withoutPrivate(r.before, hidden)
  const whole = JSON.stringify([r.op, r.id, image, ...(dropped || r.partial === true ? [1] : [])])
  if (bytes(whole) <= budget) return JSON.parse(whole) as unknown
  const small = shrink(image, budget - bytes(JSON.stringify([r.op, r.id, {}, 1])), "id")
  return small === undefined ? [r.op, r.id] : [r.op, r.id, small, 1]
}

/**
 * The announcements of one write, each at most `maxBytes` of UTF-8. `hidden`: the entity's
 * fields that never travel (sensitive, never_expose).
 */
export const encodeAnnouncements = (
  origin: string,
  entity: string,
  rows: ReadonlyArray<RowChange> | undefined,
  maxBytes: number,
  hidden: ReadonlySet<string> = new Set()
): Array<string> => {
  if (rows === undefined || rows.length === 0) return [JSON.stringify({ origin, entity })]
  const head = bytes(JSON.stringify({ origin, entity, rows: [] }))
  const budget = maxBytes - head
  const out: Array<string> = []
  let batch: Array<string> = []
  let size = 0
  const flush = () => {
    if (batch.length === 0) return
    out.push(`${JSON.stringify({ origin, entity }).slice(0, -1)},"rows":[${batch.join(",")}]}`)
    batch = []
    size = 0
  }
  for (const r of rows) {
    const text = JSON.stringify(entryOf(r, hidden, budget))
    const n = bytes(text) + 1
    if (size + n > budget) flush()
    batch.push(text)
    size += n
  }
  flush()
  return out
}

const rowOf = (raw: unknown): RowChange | undefined => {
  if (!Array.isArray(raw) || typeof raw[0] !== "string" || !OPS.has(raw[0]) || typeof raw[1] !== "string") return undefined
  const op = raw[0] as RowOp
  if (raw.length < 3 || !isRecord(raw[2])) return { op, id: raw[1] }
  return { op, id: raw[1], before: raw[2], ...(raw[3] === 1 ? { partial: true } : {}) }
}

/** Parses an announcement; undefined when it is not one (other traffic on the channel). */
export const decodeAnnouncement = (payload: string): Announcement | undefined => {
  let m: unknown
  try {
    m = JSON.parse(payload)
  } catch {
    return undefined
  }
  if (!isRecord(m) || typeof m.origin !== "string" || typeof m.entity !== "string") return undefined
  if (!Array.isArray(m.rows)) return { origin: m.origin, entity: m.entity }
  const rows: Array<RowChange> = []
  for (const raw of m.rows) {
    const r = rowOf(raw)
    if (r !== undefined) rows.push(r)
  }
  return { origin: m.origin, entity: m.entity, rows }
}
