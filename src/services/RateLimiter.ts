/** Rate limiting contract: one token per request, per principal. Implemented by layers/RateLimiter.ts. */
import { Context, type Effect } from "effect"
import type { RateLimited } from "../Errors.js"

export interface RateLimiterShape {
  readonly consume: (key: string) => Effect.Effect<void, RateLimited>
}

export class RateLimiter extends Context.Tag("dbal/RateLimiter")<RateLimiter, RateLimiterShape>() {}
