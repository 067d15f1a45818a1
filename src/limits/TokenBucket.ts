/**
 * A token bucket per key in this process's memory, refilled at `requestsPerMinute`, holding at
 * most `burst`. Used by the rate limiter's memory store (layers/RateLimiter.ts) and by the
 * failed-authentication throttle (layers/Auth.ts). Buckets idle long enough to be full again are
 * dropped, and at most `maxKeys` are kept, so a flood of identities cannot grow the map without bound.
 */
import { Effect } from "effect"
import { RateLimited } from "../Errors.js"

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
    // Still too many live keys: drop the least recently used (the map keeps use order) down to
    // 90 %, so that a flood does not make every request scan the map again.
    const target = Math.floor(maxKeys * 0.9)
    if (buckets.size >= maxKeys) {
      for (const k of buckets.keys()) {
        if (buckets.size <= target) break
        buckets.delete(k)
      }
    }
  }
  /** Takes `cost` tokens (or, with `take: false`, only checks that they are there). */
  const check = (key: string, take: boolean, cost = 1): RateLimited | undefined => {
    const need = Math.min(Math.max(1, cost), opts.burst)
    const t = now()
    sweep(t)
    const b = buckets.get(key) ?? { tokens: opts.burst, at: t }
    b.tokens = Math.min(opts.burst, b.tokens + (t - b.at) * perMs)
    b.at = t
    buckets.delete(key)
    buckets.set(key, b)
    if (b.tokens >= need) {
      if (take) b.tokens -= need
      return undefined
    }
    return new RateLimited({ retryAfter: Math.max(1, Math.ceil((need - b.tokens) / perMs / 1000)) })
  }
  const consume = (key: string, cost = 1) =>
    Effect.suspend(() => {
      const limited = check(key, true, cost)
      return limited === undefined ? Effect.void : Effect.fail(limited)
    })
  /** Gives back a token that `check(key, true)` took for a reservation that was not needed. */
  const refund = (key: string) => {
    const b = buckets.get(key)
    if (b !== undefined) b.tokens = Math.min(opts.burst, b.tokens + 1)
  }
  return { consume, check, refund, size: () => buckets.size }
}
