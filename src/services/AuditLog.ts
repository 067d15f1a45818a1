/**
 * Audit contract: one record per operation, success or failure, denials included. Records carry
 * no secrets (no tokens, no sensitive or never_expose values). Implemented by layers/AuditLog.ts.
 */
import { Context, type Effect } from "effect"
import { clip, clipDeep, type ClipLimits, DEFAULT_LIMITS, NAME_MAX_CHARS } from "../Echo.js"
import type { Unavailable } from "../Errors.js"

export interface AuditRecord {
  readonly timestamp: string
  /** The replica that handled the request (cluster.replica_name, default the host name). */
  readonly replica?: string
  readonly requestId: string | number | null
  readonly traceId?: string
  readonly userId: string | null
  readonly role: string | null
  readonly operation: string
  readonly entity: string | null
  readonly recordIds?: ReadonlyArray<string>
  readonly success: boolean
  readonly errorCode?: number
  readonly error?: string
  readonly details?: Record<string, unknown>
  readonly durationMs: number
  readonly remoteAddress?: string
  /**
   * A write's record taken from the audit journal after a crash (src/query/Journal.ts): the write
   * committed, its record had not yet reached the file; its duration is not known (0).
   */
  readonly recovered?: true
  /** Present when the record was larger than `security.audit.max_record_bytes` (see `boundAuditRecord`). */
  readonly summarized?: AuditSummary
}

export interface AuditSummary {
  /** UTF-8 bytes of the record's JSON before it was summarized. */
  readonly originalBytes: number
  /** How many record ids the operation had (`recordIds` keeps the first that fit). */
  readonly recordIdCount: number
  /** Whether `details` were dropped. */
  readonly detailsDropped: boolean
}

/** The protocol's longest request id (src/rpc/Protocol.ts): kept whole, so that records and answers match. */
const REQUEST_ID_MAX_CHARS = 256
/** The smallest `security.audit.max_record_bytes` accepted: a summary always fits it. */
export const MIN_RECORD_BYTES = 4096

const clipIdentity = (rec: AuditRecord, name: number, requestId: number): AuditRecord => {
  const c = (s: string) => clip(s, name)
  return {
    ...rec,
    requestId: typeof rec.requestId === "string" ? clip(rec.requestId, requestId) : rec.requestId,
    ...(rec.traceId === undefined ? {} : { traceId: c(rec.traceId) }),
    ...(rec.replica === undefined ? {} : { replica: c(rec.replica) }),
    userId: rec.userId === null ? null : c(rec.userId),
    role: rec.role === null ? null : c(rec.role),
    operation: c(rec.operation),
    entity: rec.entity === null ? null : c(rec.entity),
    ...(rec.recordIds === undefined ? {} : { recordIds: rec.recordIds.map(c) }),
    ...(rec.error === undefined ? {} : { error: c(rec.error) }),
    ...(rec.remoteAddress === undefined ? {} : { remoteAddress: c(rec.remoteAddress) })
  }
}

const needsClipping = (rec: AuditRecord): boolean =>
  (typeof rec.requestId === "string" && rec.requestId.length > REQUEST_ID_MAX_CHARS) ||
  [rec.traceId, rec.replica, rec.userId, rec.role, rec.operation, rec.entity, rec.error, rec.remoteAddress].some(
    (s) => typeof s === "string" && s.length > NAME_MAX_CHARS
  ) ||
  (rec.recordIds?.some((id) => id.length > NAME_MAX_CHARS) ?? false)

/**
 * The record as written, and its JSON line (without the newline), bounded in two steps:
 * - every string a client can choose is clipped (src/Echo.ts): request id to 256 characters (the
 *   protocol's own limit), names and ids to 128, sentences in `details` to 512;
 * - a record whose JSON is still larger than `maxBytes` (a bulk write's many ids, long details) is
 *   summarized: the identity, method, entity and outcome stay, `details` stay if they fit, then as
 *   many of the first record ids as fit, and `summarized` says how large it was and what was left out.
 */
export const boundAuditRecord = (entry: AuditRecord, maxBytes: number): { readonly record: AuditRecord; readonly json: string } => {
  let rec = needsClipping(entry) ? clipIdentity(entry, NAME_MAX_CHARS, REQUEST_ID_MAX_CHARS) : entry
  if (rec.details !== undefined) rec = { ...rec, details: clipDeep(rec.details, DEFAULT_LIMITS) as Record<string, unknown> }
  const json = JSON.stringify(rec)
  // A string's UTF-8 form is at most 3 bytes per UTF-16 unit: most records need no byte count.
  if (json.length * 3 <= maxBytes) return { record: rec, json }
  const bytes = Buffer.byteLength(json, "utf8")
  if (bytes <= maxBytes) return { record: rec, json }
  return summarize(rec, bytes, Math.max(maxBytes, MIN_RECORD_BYTES))
}

const SHORT: ClipLimits = { name: 32, text: 128 }

const summarize = (rec: AuditRecord, originalBytes: number, maxBytes: number): { readonly record: AuditRecord; readonly json: string } => {
  const ids = rec.recordIds ?? []
  const summary = (detailsDropped: boolean): AuditSummary => ({ originalBytes, recordIdCount: ids.length, detailsDropped })
  const { details, recordIds: _ids, ...identity } = rec
  let base: AuditRecord = { ...identity, ...(details === undefined ? {} : { details }), summarized: summary(false) }
  if (details !== undefined && Buffer.byteLength(JSON.stringify(base)) > maxBytes) base = { ...identity, summarized: summary(true) }
  // Strings full of escapes (\u0000 is six bytes) can make even the identity large: shorter then.
  if (Buffer.byteLength(JSON.stringify(base)) > maxBytes) base = clipIdentity(base, SHORT.name, SHORT.name)
  let room = maxBytes - Buffer.byteLength(JSON.stringify(base))
  const kept: Array<string> = []
  for (const id of ids) {
    const cost = Buffer.byteLength(JSON.stringify(id)) + 1
    if (cost > room) break
    room -= cost
    kept.push(id)
  }
  const record: AuditRecord = rec.recordIds === undefined ? base : { ...base, recordIds: kept }
  return { record, json: JSON.stringify(record) }
}

export interface AuditLogShape {
  /**
   * Records one operation. With `durable`, waits until the record is on disk and fails with 503
   * when it cannot be written (the write is then not acknowledged).
   */
  readonly record: (entry: AuditRecord, durable: boolean, journalKey?: string) => Effect.Effect<void, Unavailable>
  /**
   * Where single-row writes commit their record with the write (PostgreSQL, `security.audit.journal`);
   * absent when every durable record waits for the file's fsync. A record passed with the key of
   * its committed journal row (`journalKey`) is already durable: it is appended without waiting,
   * and the row is removed once the file holds the record on disk.
   */
  readonly journal?: { readonly table: string; readonly replica: string }
  /** Fails with 503 when the log cannot take records: always for writes, for reads by policy. */
  readonly ready: (write: boolean) => Effect.Effect<void, Unavailable>
}

export class AuditLog extends Context.Tag("dbal/AuditLog")<AuditLog, AuditLogShape>() {}
