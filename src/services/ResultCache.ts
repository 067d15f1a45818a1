/**
 * Result cache contract (`performance.cache_enabled`): answers of reads, keyed by everything
 * that shapes them, forgotten when the daemon writes any entity they were read from.
 * Implemented by layers/ResultCache.ts.
 */
import { Context, type Effect } from "effect"

export interface ResultCacheShape {
  /**
   * The cached answer for `key`, or `compute`'s, stored unless one of `entities` was written
   * while it ran. `key` is a thunk: a disabled cache never pays for building it.
   */
  readonly through: <A, E>(key: () => string, entities: ReadonlyArray<string>, compute: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

export class ResultCache extends Context.Tag("dbal/ResultCache")<ResultCache, ResultCacheShape>() {}
