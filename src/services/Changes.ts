/**
 * Writes made through the daemon, announced so that what remembers data (the session cache, the
 * result cache) can forget it, and so that realtime subscribers hear of them
 * (docs/realtime.md). Every announcement names its entity; a write's announcement also carries
 * the rows it touched: operation, id and, for updates and deletes, the row as it was before.
 * Implemented by layers/Changes.ts.
 */
import { Context, type Effect } from "effect"

export type RowOp = "create" | "update" | "delete"

/** A record in wire form (camelCase keys, JSON values), as answers carry it. */
export type RowImage = Readonly<Record<string, unknown>>

export interface RowChange {
  readonly op: RowOp
  readonly id: string
  /**
   * Updates and deletes: the row as it was before the write (its exposed fields). Absent when it
   * is not known; `partial` when fields were left out of it (to fit an announcement to another
   * replica, or because they are sensitive): a field it lacks is unknown, not null.
   */
  readonly before?: RowImage
  readonly partial?: boolean
}

/** The rows of one entity that one write touched, as heard by one replica. */
export interface EntityChange {
  readonly entity: string
  readonly rows: ReadonlyArray<RowChange>
  /** Written through this replica (its own before images, complete) or through another one. */
  readonly local: boolean
}

export interface ChangesShape {
  /** Announces a write to `entity`, with the rows it touched when they are known. */
  readonly publish: (entity: string, rows?: ReadonlyArray<RowChange>) => Effect.Effect<void>
  /** Registers a listener of entity names for the life of the application. */
  readonly subscribe: (listener: (entity: string) => void) => Effect.Effect<void>
  /** Registers a listener of the rows announced (local and remote), for the life of the application. */
  readonly subscribeRows: (listener: (change: EntityChange) => void) => Effect.Effect<void>
}

export class Changes extends Context.Tag("dbal/Changes")<Changes, ChangesShape>() {}
