/**
 * Which event one subscriber gets for one changed row, decided in memory from the row as it was
 * (the announcement's before image) and as it is (fetched once per change by the replica), by
 * the subscriber's read access (row filter, readable fields) and its subscription filter:
 *
 *   was seen │ is seen │ event
 *   ─────────┼─────────┼──────────────────────────────
 *   no       │ yes     │ create (the row moved into view)
 *   yes      │ yes     │ update
 *   yes      │ no      │ delete (the row moved out of view, or was deleted)
 *   unknown  │ yes     │ update (to be taken as an upsert)
 *   unknown  │ no      │ delete with the id only, when the subscriber's access may have
 *            │         │ admitted the row; nothing when it certainly did not
 *
 * "unknown": the before image is absent or lacks a field the subscriber's filters test (see
 * src/realtime/Announce.ts). A record holds only the subscriber's readable fields, and always the
 * id; a delete decided on an incomplete before image carries the id alone. Nothing is sent to a
 * subscriber that certainly could not read the row.
 */
import type { EntityDef, FieldDef } from "../entity/Model.js"
import type { Truth } from "../query/FilterMatch.js"
import type { RowChange, RowImage } from "../services/Changes.js"

export type Test = (r: RowImage) => Truth

/** What one principal may see of one entity: its read decision, compiled. */
export interface View {
  readonly access: Test
  readonly readable: ReadonlyArray<FieldDef>
  /** The row filter admits every row (its answer never depends on the record). */
  readonly allRows: boolean
}

export type EventName = "create" | "update" | "delete"

export type Seen = "yes" | "no" | "unknown"

const seenBy = (view: View, filter: Test, r: RowImage): Seen => {
  const a = view.access(r)
  if (a === "F" || a === "N") return "no"
  const f = filter(r)
  if (f === "F" || f === "N") return "no"
  return a === "T" && f === "T" ? "yes" : "unknown"
}

/** Whether the subscriber's access alone may have admitted the row (its own filter aside). */
const mayHaveRead = (view: View, before: RowImage | undefined): boolean => {
  if (view.allRows) return true
  if (before === undefined) return true
  const a = view.access(before)
  return a === "T" || a === "M"
}

/** The event's record: the readable fields (and the id), or the id alone. */
export const project = (entity: EntityDef, view: View, r: RowImage): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  const pk = entity.primaryKey.name
  out[pk] = r[pk] ?? null
  for (const f of view.readable) if (Object.hasOwn(r, f.name)) out[f.name] = r[f.name] ?? null
  return out
}

export type Decided =
  undefined | { readonly event: EventName; readonly from: "after" | "before" } | { readonly event: "delete"; readonly from: "id" }

/**
 * The event for one subscriber. `after`: the row as fetched after the change (undefined: it is
 * not there). A create or update whose row is gone gives nothing (its delete is announced too);
 * a delete whose row is still there gives nothing (the write did not happen, e.g. rolled back).
 */
export const decide = (view: View, filter: Test, change: RowChange, after: RowImage | undefined): Decided => {
  const complete = change.before !== undefined && change.partial !== true
  if (change.op === "delete") {
    if (after !== undefined) return undefined
    const was = change.before === undefined ? "unknown" : seenBy(view, filter, change.before)
    if (was === "yes") return { event: "delete", from: complete ? "before" : "id" }
    if (was === "unknown" && mayHaveRead(view, change.before)) return { event: "delete", from: "id" }
    return undefined
  }
  if (after === undefined) return undefined
  const now = seenBy(view, filter, after)
  if (change.op === "create") return now === "yes" ? { event: "create", from: "after" } : undefined
  const was = change.before === undefined ? "unknown" : seenBy(view, filter, change.before)
  if (now === "yes") return { event: was === "no" ? "create" : "update", from: "after" }
  if (was === "yes") return { event: "delete", from: complete ? "before" : "id" }
  if (was === "unknown" && mayHaveRead(view, change.before)) return { event: "delete", from: "id" }
  return undefined
}
