/**
 * Writes made through the daemon, announced by entity name, so that what remembers data (the
 * session cache, later the result cache) can forget it. Implemented by layers/Changes.ts.
 */
import { Context, type Effect } from "effect"

export interface ChangesShape {
  readonly publish: (entity: string) => Effect.Effect<void>
  /** Registers a listener for the life of the application. */
  readonly subscribe: (listener: (entity: string) => void) => Effect.Effect<void>
}

export class Changes extends Context.Tag("dbal/Changes")<Changes, ChangesShape>() {}
