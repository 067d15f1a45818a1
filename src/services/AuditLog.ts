/**
 * Audit contract: one record per operation, success or failure, denials included. Records carry
 * no secrets (no tokens, no sensitive or never_expose values). Implemented by layers/AuditLog.ts.
 */
import { Context, type Effect } from "effect"
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
}

export interface AuditLogShape {
  /**
   * Records one operation. With `durable`, waits until the record is on disk and fails with 503
   * when it cannot be written (the write is then not acknowledged).
   */
  readonly record: (entry: AuditRecord, durable: boolean) => Effect.Effect<void, Unavailable>
  /** Fails with 503 when the log cannot take records: always for writes, for reads by policy. */
  readonly ready: (write: boolean) => Effect.Effect<void, Unavailable>
}

export class AuditLog extends Context.Tag("dbal/AuditLog")<AuditLog, AuditLogShape>() {}
