/**
 * The rows a request's writes touched, collected for the change announcement (realtime events,
 * src/services/Changes.ts). The handler gives each write request its own collector (a FiberRef,
 * so that a transaction's operations share it and nothing else sees it); the repository notes
 * each committed write's rows in it, with the row as it was before for updates and deletes.
 * Without a collector (realtime off) the repository takes its shorter paths and notes nothing.
 */
import { Effect, FiberRef } from "effect"
import type { EntityDef } from "../entity/Model.js"
import type { RowChange } from "../services/Changes.js"

export interface Captured {
  readonly entity: string
  readonly rows: Array<RowChange>
}

export type Collector = Array<Captured>

export const collector: FiberRef.FiberRef<Collector | undefined> = FiberRef.unsafeMake<Collector | undefined>(undefined)

/**
 * Whether the collector wants the rows' before images (false: their ids are enough, as when no
 * one subscribes to the entity; see RealtimeShape.wantsBeforeImages).
 */
export const beforeImages: FiberRef.FiberRef<boolean> = FiberRef.unsafeMake<boolean>(true)

/** Whether the current request collects its changes with their before images (the repository then reads whole rows). */
export const capturing: Effect.Effect<boolean> = FiberRef.getWith(collector, (c) =>
  c === undefined ? Effect.succeed(false) : FiberRef.get(beforeImages)
)

/** Notes rows written to `entity` (no-op without a collector). */
export const note = (entity: EntityDef, rows: ReadonlyArray<RowChange>): Effect.Effect<void> =>
  FiberRef.getWith(collector, (c) =>
    Effect.sync(() => {
      if (c === undefined || rows.length === 0) return
      const last = c[c.length - 1]
      if (last !== undefined && last.entity === entity.name) last.rows.push(...rows)
      else c.push({ entity: entity.name, rows: [...rows] })
    })
  )

/** Runs `effect` collecting its changes into a new collector (with before images unless `images` is false). */
export const collecting = <A, E, R>(effect: Effect.Effect<A, E, R>, into: Collector, images = true): Effect.Effect<A, E, R> =>
  images ? Effect.locally(effect, collector, into) : Effect.locally(Effect.locally(effect, beforeImages, false), collector, into)
