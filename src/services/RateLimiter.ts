/** Rate limiting contract: tokens per request (its weight), per principal. Implemented by layers/RateLimiter.ts. */
import { Context, type Effect } from "effect"
import type { RateLimited, Unavailable } from "../Errors.js"
import type { Role } from "./Principal.js"

export interface RateLimiterShape {
  /**
   * Takes `cost` tokens (default 1; at most a full bucket) from the principal's allowance
   * (limits may differ per role).
   */
  readonly consume: (key: string, role: Role, cost?: number) => Effect.Effect<void, RateLimited | Unavailable>
  /** `consume` as a plain function, where the store answers without I/O (memory, or no limit). */
  readonly take?: (key: string, role: Role, cost?: number) => RateLimited | undefined
}

export class RateLimiter extends Context.Tag("dbal/RateLimiter")<RateLimiter, RateLimiterShape>() {}
