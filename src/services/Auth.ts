/**
 * Authentication contract: credentials of a request (or of the connection) → a principal.
 * Implemented by layers/Auth.ts.
 */
import { Context, type Effect } from "effect"
import type { RateLimited, Unauthorized, Unavailable } from "../Errors.js"
import type { Principal } from "./Principal.js"

export interface Credentials {
  readonly token: string
  /** `auth.user_id` (alias `userId`); must name the principal when given. */
  readonly userId?: string
}

export interface AuthShape {
  readonly authenticate: (
    credentials: Credentials,
    remoteAddress: string
  ) => Effect.Effect<Principal, Unauthorized | RateLimited | Unavailable>
  /**
   * Checks credentials accepted before, again (a live subscription's): the same checks as
   * `authenticate`, without the failed-authentication throttle (nobody is guessing a token here).
   */
  readonly recheck: (credentials: Credentials) => Effect.Effect<Principal, Unauthorized | Unavailable>
  /**
   * `authenticate` as a plain function when it needs no I/O and accepts (a service token, a
   * remembered session): the same principal, the same throttle. Undefined: ask `authenticate`.
   */
  readonly known?: (credentials: Credentials, remoteAddress: string) => Principal | undefined
}

export class Auth extends Context.Tag("dbal/Auth")<Auth, AuthShape>() {}
