/**
 * Rate limiter layer: a token bucket per principal, refilled at `requests_per_minute`, holding
 * at most `burst` (per-role values in `roles:` replace both). Over it: 429 with `retryAfter`.
 * A request takes as many tokens as its weight (src/rpc/Methods.ts `requestWeight`), at most a
 * full bucket: a request heavier than `burst` is admitted when the bucket is full, and empties it.
 *
 * Stores:
 * - memory: this process only. Buckets idle long enough to be full again are dropped, and at
 *   most `max_keys` are kept, so a flood of identities cannot grow the map without bound.
 * - redis: one bucket per principal shared by every replica, updated atomically by a Lua script
 *   on Redis's own clock; keys expire once they would be full again.
 *   When Redis cannot be reached, `on_store_error` decides: `local` falls back to this
 *   process's memory buckets (still limited, per replica), `open` admits, `closed` answers 503.
 */
import { Effect, Layer, Redacted } from "effect"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { RateLimited, Unavailable } from "../src/Errors.js"
import type { Role } from "../src/services/Principal.js"
import { makeMemory } from "../src/limits/TokenBucket.js"
import { RateLimiter, type RateLimiterShape } from "../src/services/RateLimiter.js"

/** Token bucket on Redis's clock. Returns {allowed, tokens left}. */
const BUCKET_LUA = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = math.min(math.max(1, tonumber(ARGV[3]) or 1), burst)
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {allowed, tostring(tokens), tostring(cost)}
`

interface BucketRedis {
  dbalBucket(key: string, ratePerMs: string, burst: string, cost: string): Promise<[number, string, string]>
}

export interface Limits {
  readonly requestsPerMinute: number
  readonly burst: number
}

export const limitsFor = (cfg: DaemonConfig["security"]["rate_limit"], role: Role): Limits => {
  const r = cfg.roles[role]
  return r === undefined
    ? { requestsPerMinute: cfg.requests_per_minute, burst: cfg.burst }
    : { requestsPerMinute: r.requests_per_minute, burst: r.burst }
}

const memoryStore = (cfg: DaemonConfig["security"]["rate_limit"]) => {
  const perRole = new Map<Role, ReturnType<typeof makeMemory>>()
  const bucketsOf = (role: Role) => {
    let m = perRole.get(role)
    if (m === undefined) {
      const l = limitsFor(cfg, role)
      m = makeMemory({ requestsPerMinute: l.requestsPerMinute, burst: l.burst, maxKeys: cfg.max_keys })
      perRole.set(role, m)
    }
    return m
  }
  const take = (key: string, role: Role, cost = 1): RateLimited | undefined => bucketsOf(role).check(key, true, cost)
  const consume = (key: string, role: Role, cost = 1): Effect.Effect<void, RateLimited> =>
    Effect.suspend(() => {
      const limited = take(key, role, cost)
      return limited === undefined ? Effect.void : Effect.fail(limited)
    })
  return { consume, take }
}

export const makeRedis = (cfg: DaemonConfig["security"]["rate_limit"]) =>
  Effect.gen(function* () {
    // ioredis is loaded only when a Redis store is configured.
    const { Redis } = yield* Effect.promise(() => import("ioredis"))
    const redis = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new Redis(Redacted.value(cfg.redis_url), {
            // Fail fast while Redis is away instead of queueing requests behind it.
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            connectTimeout: 1000,
            retryStrategy: (times) => Math.min(times * 200, 2000)
          })
      ),
      (r) => Effect.sync(() => r.disconnect())
    )
    redis.on("error", () => {
      // Reported per request through on_store_error; the client reconnects by itself.
    })
    redis.defineCommand("dbalBucket", { numberOfKeys: 1, lua: BUCKET_LUA })
    // Without the offline queue, a command sent before the connection is ready fails at once:
    // the first requests after start would all go to on_store_error (with `local`, every replica
    // admitting its own burst). Wait for the first connection attempt to settle, bounded.
    yield* Effect.async<void>((resume) => {
      if (redis.status === "ready") return resume(Effect.void)
      const events = ["ready", "error", "end"] as const
      const off = () => {
        for (const e of events) redis.off(e, settled)
      }
      const settled = () => {
        off()
        resume(Effect.void)
      }
      for (const e of events) redis.on(e, settled)
      return Effect.sync(off)
    }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
    const bucket = redis as unknown as BucketRedis
    const local = memoryStore(cfg).consume
    let degraded = false
    const policy = (key: string, role: Role, cost: number): Effect.Effect<void, RateLimited | Unavailable> => {
      switch (cfg.on_store_error) {
        case "open":
          return Effect.void
        case "closed":
          return Effect.fail(new Unavailable({ reason: "the rate-limit store does not answer" }))
        case "local":
          return local(key, role, cost)
      }
    }
    const consume = (key: string, role: Role, cost = 1): Effect.Effect<void, RateLimited | Unavailable> => {
      const l = limitsFor(cfg, role)
      const perMs = l.requestsPerMinute / 60_000
      return Effect.tryPromise(() =>
        bucket.dbalBucket(`${cfg.key_prefix}${role}:${key}`, String(perMs), String(l.burst), String(cost))
      ).pipe(
        Effect.timeout("500 millis"),
        Effect.matchEffect({
          onSuccess: ([allowed, tokens, charged]): Effect.Effect<void, RateLimited | Unavailable> => {
            const recovered = degraded ? Effect.logInfo("rate-limit store answers again: limits are shared again") : Effect.void
            degraded = false
            return Effect.zipRight(
              recovered,
              allowed === 1
                ? Effect.void
                : Effect.fail(new RateLimited({ retryAfter: Math.max(1, Math.ceil((Number(charged) - Number(tokens)) / perMs / 1000)) }))
            )
          },
          onFailure: (): Effect.Effect<void, RateLimited | Unavailable> => {
            // Logged once per outage, not per request.
            const warn = degraded
              ? Effect.void
              : Effect.logWarning(`rate-limit store does not answer: on_store_error=${cfg.on_store_error}`)
            degraded = true
            return Effect.zipRight(warn, policy(key, role, cost))
          }
        })
      )
    }
    return { consume } satisfies RateLimiterShape
  })

export const layer = Layer.scoped(
  RateLimiter,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    const rl = cfg.security.rate_limit
    if (!rl.enabled) return { consume: () => Effect.void, take: () => undefined } satisfies RateLimiterShape
    if (rl.store === "redis") return yield* makeRedis(rl)
    return memoryStore(rl) satisfies RateLimiterShape
  })
)
