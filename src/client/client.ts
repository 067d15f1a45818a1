/**
 * DBALClient: the generated client of the shipped entities (entities.ts, written by
 * `dbal-daemon generate` from config/entities), as a class so that `new DBALClient(config)` and
 * `DBALClient.scoped(config)` work as before. For other entities generate a module of your own.
 */
import * as Effect from "effect/Effect"
import { ClientBase, type ClientEffect, type ClientScope, type DBALClientConfig, type PromiseAccessors } from "./core.js"
import { accessors, type Entities } from "./entities.js"

// The accessors (users, pages, …) are set by ClientBase's constructor; this declares their types
// (a class cannot declare members that its base class's constructor assigns from a table).
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface DBALClient extends PromiseAccessors<Entities, typeof accessors> {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- see the interface above
export class DBALClient extends ClientBase<Entities, typeof accessors> {
  constructor(config: DBALClientConfig) {
    super(config, accessors)
  }

  /** A client closed when the scope closes (an Effect: typed with "dbal-daemon/client/effect" imported). */
  static scoped(config: DBALClientConfig): ClientEffect<DBALClient, never, ClientScope> {
    return Effect.acquireRelease(
      Effect.sync(() => new DBALClient(config)),
      (c) => Effect.promise(() => c.close())
    ) as unknown as ClientEffect<DBALClient, never, ClientScope>
  }
}
