/**
 * Options and states of the client that its public types name. Kept apart from the transports,
 * whose declarations name effect's types: a consumer that uses the Promise API then type-checks
 * without reading effect's declarations (see effect.ts).
 */

export interface CallOptions {
  /** Client-side bound on this request, milliseconds (default: the client's `requestTimeoutMs`). */
  readonly timeoutMs?: number
}

/**
 * idle: not connected and not trying (before the first request, or after the reconnect attempts
 * ran out or authentication was refused; the next request connects again) · connecting: first
 * connection or authentication in progress · ready · reconnecting: the connection dropped, a
 * new one is being tried with backoff · closed: `close()` was called.
 */
export type ConnectionState = "idle" | "connecting" | "ready" | "reconnecting" | "closed"

export interface ReconnectOptions {
  /** First delay after a drop, milliseconds (default 200). */
  readonly initialDelayMs?: number
  /** Largest delay between attempts (default 10 000). */
  readonly maxDelayMs?: number
  /** Growth of the delay per failed attempt (default 2). */
  readonly factor?: number
  /** Attempts in a row before giving up until the next request (default: unbounded). */
  readonly maxAttempts?: number
}

/** Options of `ws`'s WebSocket (Node only): given, the client uses `ws` rather than the platform's WebSocket. */
export interface SocketOptions {
  readonly ca?: unknown
  readonly cert?: unknown
  readonly key?: unknown
  readonly servername?: string
  readonly rejectUnauthorized?: boolean
  readonly headers?: Readonly<Record<string, string>>
  readonly [option: string]: unknown
}

/** One change, as the subscriber may see it. A delete's record holds at least the id. */
export type SubscriptionEvent<R, I = string> =
  | { readonly event: "create" | "update"; readonly record: R }
  | { readonly event: "delete"; readonly record: Partial<R> & { readonly id: I } }

export interface SubscribeOptions<W> {
  /** Only rows matching this filter (the same language as `list`'s). */
  readonly filter?: W
  /**
   * Called when the subscription is live again after the connection dropped and the client
   * reconnected (it subscribes again by itself). Changes made while it was not live are not
   * replayed: re-read what you show from here.
   */
  readonly onResubscribed?: () => void
}

/** A subscription as an AsyncIterable (`for await`); breaking out of the loop or `close()` ends it. */
export interface Subscription<E> extends AsyncIterable<E> {
  readonly close: () => Promise<void>
}

/** Names a generated accessor may not take: they are the client's own members (ClientBase). */
export const reservedAccessors: ReadonlyArray<string> = [
  "effect",
  "mode",
  "entity",
  "getCapabilities",
  "getSchema",
  "transaction",
  "connect",
  "close",
  "connectionState",
  "onConnectionStateChange",
  "transport",
  "constructor",
  "scoped",
  "then"
]
