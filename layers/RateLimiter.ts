/**
 * Rate limiter layer (memory store): a token bucket per principal, refilled at
 * `requests_per_minute`, holding at most `burst`. Buckets idle long enough to be full again are
 * dropped, so a flood of identities cannot grow the map without bound.
 */
import { Effect, Layer } from "effect"
import { AppConfig } from "../src/Config.js"
import { RateLimited } from "../src/Errors.js"
import { RateLimiter } from "../src/services/RateLimiter.js"

interface Bucket {
  tokens: number
  at: number
}

export const makeMemory = (opts: { requestsPerMinute: number; burst: number; now?: () => number; maxKeys?: number }) => {
  const perMs = opts.requestsPerMinute / 60_000
  const now = opts.now ?? (() => performance.now())
  const maxKeys = opts.maxKeys ?? 100_000
  const buckets = new Map<string, Bucket>()
  const fullAfterMs = opts.burst / perMs
  let lastSweep = now()
  const sweep = (t: number) => {
    if (t - lastSweep < 10_000 && buckets.size < maxKeys) return
    lastSweep = t
    for (const [k, b] of buckets) if (t - b.at >= fullAfterMs) buckets.delete(k)
    // Still too many live keys: drop the oldest (insertion order), they are the least active.
    for (const k of buckets.keys()) {
      if (buckets.size < maxKeys) break
      buckets.delete(k)
    }
  }
  const consume = (key: string) =>
    Effect.suspend(() => {
      const t = now()
      sweep(t)
      const b = buckets.get(key) ?? { tokens: opts.burst, at: t }
      b.tokens = Math.min(opts.burst, b.tokens + (t - b.at) * perMs)
      b.at = t
      buckets.delete(key)
      buckets.set(key, b)
      if (b.tokens >= 1) {
        b.tokens -= 1
        return Effect.void
      }
      return Effect.fail(new RateLimited({ retryAfter: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) }))
    })
  return { consume, size: () => buckets.size }
}

export const layer = Layer.effect(
  RateLimiter,
  Effect.map(AppConfig, (cfg) => {
    const rl = cfg.security.rate_limit
    if (!rl.enabled) return { consume: () => Effect.void }
    return makeMemory({ requestsPerMinute: rl.requests_per_minute, burst: rl.burst })
  })
)

/** For tests that are about something else. */
export const unlimited = Layer.succeed(RateLimiter, { consume: () => Effect.void })
