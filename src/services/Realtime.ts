/**
 * Live changes (docs/realtime.md): subscriptions of connections to an entity's changes, each
 * event checked in memory against the subscriber's read access. Implemented by layers/Realtime.ts.
 */
import { Context, type Effect } from "effect"
import type { NotFound, RateLimited } from "../Errors.js"
import type { EntityDef } from "../entity/Model.js"
import type { FilterNode } from "../query/Filter.js"
import type { Credentials } from "./Auth.js"
import type { Principal } from "./Principal.js"

/** sent · closed: the connection is gone · slow: it was just dropped for leaving too much unread. */
export type PushResult = "sent" | "closed" | "slow"

/** The side of a connection that takes pushed frames (layers/WebSocketServer.ts). */
export interface PushChannel {
  /**
   * Queues a frame the daemon pushes (no request asked for it), whose UTF-8 text is `head` then
   * `tail`, until `flush` (or the next tick); "slow" when this frame took the connection past
   * `realtime.max_buffered_bytes` unread, which drops it (close code 4008).
   */
  readonly push: (head: Uint8Array, tail: Uint8Array) => PushResult
  /** Writes the queued frames now (before the pusher yields to other work). */
  readonly flush: () => void
  /** Calls `f` once when the connection ends (at once if it has already). */
  readonly onClose: (f: () => void) => void
}

export interface Subscriber {
  readonly channel: PushChannel
  readonly principal: Principal
  /** What the subscriber authenticated with: checked again while the subscription lives. */
  readonly credentials: Credentials
}

export interface RealtimeShape {
  /** A new subscription's id. 429 past the per-connection or per-principal limit. */
  readonly subscribe: (who: Subscriber, entity: EntityDef, filter: FilterNode) => Effect.Effect<string, RateLimited>
  /** Ends a subscription of this connection; 404 when it has none by that id. */
  readonly unsubscribe: (channel: PushChannel, id: string) => Effect.Effect<true, NotFound>
  /**
   * Whether a write to the entity should capture its rows' before images (src/query/Capture.ts):
   * when this replica has subscriptions to it, or when other replicas may (cluster.changes).
   * Without them a write announces its row ids only.
   */
  readonly wantsBeforeImages: (entity: string) => boolean
}

export class Realtime extends Context.Tag("dbal/Realtime")<Realtime, RealtimeShape>() {}
