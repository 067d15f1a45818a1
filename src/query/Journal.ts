/**
 * The audit journal: a write's audit record committed in the same statement as the write
 * (PostgreSQL), so that its record is durable when the write is, without a second, serial fsync
 * of the audit file. The handler gives each single-row write request its entry (a FiberRef, like
 * Capture.ts's collector); the repository adds the entry's row to the write's statement and marks
 * it committed; the audit log then appends the record to its file without waiting for the disk,
 * and removes the journal row once the file holds it durably (layers/AuditLog.ts, docs/security.md, "The journal").
 */
import { Effect, FiberRef } from "effect"

export interface JournalEntry {
  /** The journal table (`security.audit.journal_table`). */
  readonly table: string
  /** The row's key: the file sink removes the row by it once the record is on disk. */
  readonly key: string
  readonly replica: string
  /** The request's audit record as known before it runs (no outcome yet), as JSON. */
  readonly record: string
  /** Set by the repository once the write and this row committed together. */
  committed: boolean
}

export const journalRef: FiberRef.FiberRef<JournalEntry | undefined> = FiberRef.unsafeMake<JournalEntry | undefined>(undefined)

/** The current request's journal entry, if its write may carry one. */
export const currentJournal: Effect.Effect<JournalEntry | undefined> = FiberRef.get(journalRef)

/** Runs `effect` with `entry` as its journal entry. */
export const journaling = <A, E, R>(effect: Effect.Effect<A, E, R>, entry: JournalEntry): Effect.Effect<A, E, R> =>
  Effect.locally(effect, journalRef, entry)
