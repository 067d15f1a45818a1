/**
 * dbal-daemon/client/effect: the types of the client's Effect API. Import it (for its types:
 * `import type {} from "dbal-daemon/client/effect"`, or `import "dbal-daemon/client/effect"`) to
 * have `client.effect.users.create(...)` and the other members of `client.effect` typed as
 * Effects that fail with DbalError, `DBALClient.scoped(config)` as a scoped Effect, and DbalError
 * as an Effect error (`yield*`-able).
 *
 *   import { Effect } from "effect"
 *   import type {} from "dbal-daemon/client/effect"
 *   const ada = await Effect.runPromise(db.effect.users.create({ username: "ada", email: "ada@example.com" }))
 *
 * Why a module of its own: effect's declarations are most of what a type checker reads for a
 * program that uses the client (with `skipLibCheck: false`, over half of its time). The Promise
 * API does not need them, so "dbal-daemon/client" leaves them out and this module adds them.
 * Nothing changes at run time: the members are there either way.
 */
import type { YieldableError } from "effect/Cause"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"

declare module "./core.js" {
  interface EffectTypes<A, E, R> {
    readonly effect: Effect.Effect<A, E, R>
  }
  interface StreamTypes<A, E> {
    readonly stream: Stream.Stream<A, E>
  }
  interface ScopeTypes {
    readonly scope: Scope.Scope
  }
}

declare module "./errors.js" {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- adds YieldableError to the class's type, nothing else
  interface DbalError extends YieldableError {}
}

export type { ClientEffect, ClientScope, ClientStream, EffectClient, EntityEffectApi } from "./core.js"
