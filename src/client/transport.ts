/**
 * What both modes of the client provide: send one request, get its result or a DbalError. The
 * in-process transport (development) and the WebSocket transport (production) both speak the
 * wire frames of docs/protocol.md, so the typed API above them is one implementation.
 */
import * as Effect from "effect/Effect"
import { DbalError } from "./errors.js"
import type { CallOptions, ConnectionState } from "./options.js"

export type { CallOptions, ConnectionState } from "./options.js"

/** A plain JSON object (not null, not an array). The client keeps its own copy: it ships without the daemon's sources. */
const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

/** Receives the frames the daemon pushes for one subscription. */
export interface PushWatcher {
  /** An event or the subscription's ending error, as sent (`{subscription, event, record}` or `{subscription, error}`). */
  readonly frame: (frame: Readonly<Record<string, unknown>>) => void
  /**
   * The connection dropped: the subscription is gone with it. `reconnecting`: the transport is
   * reconnecting by itself (a request made now waits for that connection); otherwise it is not
   * (the client was closed, reconnecting is off or the credentials were refused).
   */
  readonly lost: (reason: string, reconnecting: boolean) => void
}

export interface Transport {
  readonly request: (method: string, params: ReadonlyArray<unknown>, options?: CallOptions) => Effect.Effect<unknown, DbalError>
  /**
   * Routes the frames pushed for subscription `id` to `watcher` (frames that came before the call
   * included: an event may overtake the answer to `subscribe`); returns the function that stops.
   * Absent where nothing is pushed (the in-process transport).
   */
  readonly watch?: (id: string, watcher: PushWatcher) => () => void
  /** Connects (and authenticates) now instead of at the first request. */
  readonly connect: Effect.Effect<void, DbalError>
  readonly close: Effect.Effect<void>
  readonly state: () => ConnectionState
  readonly onStateChange: (listener: (state: ConnectionState) => void) => () => void
}

export interface Answer {
  readonly id: unknown
  /** The result, or the daemon's error as a DbalError. */
  readonly outcome: { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: DbalError }
}

/** Parses one answer frame; `undefined` when it is not an answer at all. */
export const decodeAnswer = (method: string, text: string): Answer | undefined => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isRecord(raw) || !("id" in raw)) return undefined
  const id = raw.id
  if (isRecord(raw.error)) {
    const e = raw.error
    const code = typeof e.code === "number" ? e.code : 500
    const message = typeof e.message === "string" ? e.message : "Unknown error"
    const details = isRecord(e.details) ? e.details : undefined
    return { id, outcome: { ok: false, error: DbalError.server(method, code, message, details) } }
  }
  if (!("result" in raw))
    return { id, outcome: { ok: false, error: DbalError.protocol(method, "an answer with neither result nor error") } }
  return { id, outcome: { ok: true, value: raw.result } }
}

export const encodeRequest = (
  id: number | string,
  method: string,
  params: ReadonlyArray<unknown>,
  auth?: { token: string; user_id?: string }
): string => JSON.stringify({ id, method, params, ...(auth === undefined ? {} : { auth }) })

/** Listeners of state changes; a throwing listener does not break the transport. */
export class StateCell {
  private current: ConnectionState
  private readonly listeners = new Set<(s: ConnectionState) => void>()
  constructor(initial: ConnectionState) {
    this.current = initial
  }
  get(): ConnectionState {
    return this.current
  }
  set(next: ConnectionState): void {
    if (next === this.current) return
    this.current = next
    for (const l of [...this.listeners]) {
      try {
        l(next)
      } catch {
        // a listener's problem is its own
      }
    }
  }
  subscribe(l: (s: ConnectionState) => void): () => void {
    this.listeners.add(l)
    return () => void this.listeners.delete(l)
  }
}

/** Fails with the Timeout kind when `effect` has not finished within `ms`. */
export const withTimeout = <A>(method: string, ms: number, effect: Effect.Effect<A, DbalError>): Effect.Effect<A, DbalError> =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => DbalError.timeout(method, ms) })
