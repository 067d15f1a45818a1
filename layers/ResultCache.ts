/**
 * Result cache layer: a byte-bounded LRU of read answers (`performance.cache_size_mb`). An entry
 * is filed under every entity its answer was read from; any write to one of them through the
 * daemon (announced by the Changes service, also from other replicas) drops those entries. A
 * read that overlaps a write to its entities is answered but not stored, so a stale answer can
 * never be cached after the write's announcement. Keys carry the caller's effective row filter
 * and field lists, so an answer is only ever served to callers who could have read it.
 */
import { Effect, Layer, Metric } from "effect"
import { AppConfig } from "../src/Config.js"
import { cacheLookupsOf } from "../src/Metrics.js"
import { Changes } from "../src/services/Changes.js"
import { ResultCache, type ResultCacheShape } from "../src/services/ResultCache.js"

interface Entry {
  readonly value: unknown
  readonly bytes: number
  readonly entities: ReadonlyArray<string>
}

/** An approximation of an entry's memory: its JSON text twice (UTF-16) plus the key. */
const sizeOf = (key: string, value: unknown): number => (key.length + (JSON.stringify(value) ?? "").length) * 2 + 64

export const makeLru = (maxBytes: number) => {
  const entries = new Map<string, Entry>()
  const byEntity = new Map<string, Set<string>>()
  const generation = new Map<string, number>()
  let bytes = 0
  const drop = (key: string) => {
    const e = entries.get(key)
    if (e === undefined) return
    entries.delete(key)
    bytes -= e.bytes
    for (const name of e.entities) byEntity.get(name)?.delete(key)
  }
  return {
    get: (key: string): Entry | undefined => {
      const e = entries.get(key)
      if (e === undefined) return undefined
      entries.delete(key)
      entries.set(key, e)
      return e
    },
    set: (key: string, value: unknown, names: ReadonlyArray<string>) => {
      const size = sizeOf(key, value)
      if (size > maxBytes / 4) return
      drop(key)
      entries.set(key, { value, bytes: size, entities: names })
      bytes += size
      for (const name of names) {
        let keys = byEntity.get(name)
        if (keys === undefined) byEntity.set(name, (keys = new Set()))
        keys.add(key)
      }
      for (const oldest of entries.keys()) {
        if (bytes <= maxBytes) break
        drop(oldest)
      }
    },
    invalidate: (name: string) => {
      generation.set(name, (generation.get(name) ?? 0) + 1)
      for (const key of [...(byEntity.get(name) ?? [])]) drop(key)
    },
    generationOf: (names: ReadonlyArray<string>) => names.map((n) => generation.get(n) ?? 0).join(","),
    stats: () => ({ entries: entries.size, bytes })
  }
}

export const layer = Layer.effect(
  ResultCache,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    const changes = yield* Changes
    if (!cfg.performance.cache_enabled) {
      return { through: (_key, _entities, compute) => compute } satisfies ResultCacheShape
    }
    const lru = makeLru(cfg.performance.cache_size_mb * 1024 * 1024)
    yield* changes.subscribe((entity) => lru.invalidate(entity))
    const hits = cacheLookupsOf("hit")
    const misses = cacheLookupsOf("miss")
    const through: ResultCacheShape["through"] = (key, entities, compute) =>
      Effect.suspend(() => {
        const k = key()
        const hit = lru.get(k)
        if (hit !== undefined) return Effect.as(Metric.increment(hits), hit.value as Effect.Effect.Success<typeof compute>)
        const before = lru.generationOf(entities)
        return compute.pipe(
          Effect.tap((value) =>
            Effect.zipRight(
              Metric.increment(misses),
              Effect.sync(() => {
                if (lru.generationOf(entities) === before) lru.set(k, value, entities)
              })
            )
          )
        )
      })
    return { through } satisfies ResultCacheShape
  })
)
