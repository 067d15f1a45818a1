/**
 * Subscriptions of the client (docs/client.md, "Live changes"): `subscribe` on the wire, the
 * pushed events routed by the transport, as an Effect Stream and as an AsyncIterable. A
 * subscription outlives its connection: when the transport reconnects, it subscribes again and
 * keeps feeding the same stream (changes made meanwhile are not replayed; `onResubscribed` tells
 * the caller when to re-read). It fails with kind ConnectionLost only when the transport does not
 * reconnect (closed, reconnecting off or given up). An error frame from the daemon (credentials
 * expired, access withdrawn) or a refused re-subscription fails it with the daemon's error.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { DbalError } from "./errors.js"
import type { CallOptions, PushWatcher, Transport } from "./transport.js"

import type { SubscribeOptions, Subscription } from "./options.js"

export type { SubscribeOptions, Subscription, SubscriptionEvent } from "./options.js"

interface Sink<E> {
  readonly event: (e: E) => void
  readonly fail: (e: DbalError) => void
}

const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

/** Transport kinds that say nothing about the subscription itself: worth subscribing again. */
const retryable = (e: DbalError) => e.kind === "ConnectionLost" || e.kind === "NotConnected" || e.kind === "Timeout"

/**
 * Subscribes and routes the events to `sink`; succeeds with the effect that ends it. When the
 * connection drops and the transport reconnects, it subscribes again with the same entity and
 * filter and keeps routing to the same sink (calling `onResubscribed` once it is live again).
 */
const open = <E>(
  t: Transport,
  entity: string,
  options: SubscribeOptions<unknown> | undefined,
  callOptions: CallOptions | undefined,
  sink: Sink<E>
) =>
  Effect.gen(function* () {
    const watch = t.watch
    if (watch === undefined) {
      return yield* Effect.fail(
        DbalError.server("subscribe", 501, "Feature not supported", {
          feature: "subscriptions need a WebSocket connection (production mode)"
        })
      )
    }
    // Only the filter goes on the wire; the callbacks stay here.
    const params = options?.filter === undefined ? [entity] : [entity, { filter: options.filter }]
    const subscribe = Effect.flatMap(t.request("subscribe", params, callOptions), (answer) =>
      isRecord(answer) && typeof answer.subscription === "string"
        ? Effect.succeed(answer.subscription)
        : Effect.fail(DbalError.protocol("subscribe", "an answer without a subscription id"))
    )
    /** The subscription's id on the current connection; undefined while it is being made again. */
    let id: string | undefined = yield* subscribe
    let ended = false
    let stop = () => {}
    const fail = (e: DbalError) => {
      if (ended) return
      ended = true
      sink.fail(e)
    }
    const watcher: PushWatcher = {
      frame: (f) => {
        if (ended) return
        if (isRecord(f.error)) {
          const e = f.error
          return fail(
            DbalError.server(
              "subscribe",
              typeof e.code === "number" ? e.code : 500,
              typeof e.message === "string" ? e.message : "Unknown error",
              isRecord(e.details) ? e.details : undefined
            )
          )
        }
        if ((f.event === "create" || f.event === "update" || f.event === "delete") && isRecord(f.record))
          sink.event({ event: f.event, record: f.record } as E)
      },
      lost: (reason, reconnecting) => {
        if (ended) return
        id = undefined
        if (!reconnecting) return fail(DbalError.connectionLost("subscribe", reason))
        resubscribe()
      }
    }
    // The request waits for the next connection (bounded by its timeout); while the transport is
    // still trying to connect, a request that found none is made again.
    const resubscribe = (): void =>
      void Effect.runPromise(Effect.either(subscribe)).then((r) => {
        if (r._tag === "Right") {
          if (ended) return void Effect.runPromise(Effect.ignore(t.request("unsubscribe", [r.right])))
          id = r.right
          stop = watch(r.right, watcher)
          try {
            options?.onResubscribed?.()
          } catch {
            // the callback's problem is its own
          }
          return
        }
        if (ended) return
        const s = t.state()
        if (retryable(r.left) && (s === "connecting" || s === "reconnecting" || s === "ready")) return resubscribe()
        fail(r.left.kind === "Server" ? r.left : DbalError.connectionLost("subscribe", String(r.left.details?.reason ?? r.left.message)))
      })
    stop = watch(id, watcher)
    return Effect.suspend(() => {
      stop()
      if (ended) return Effect.void
      ended = true
      return id === undefined ? Effect.void : Effect.ignore(t.request("unsubscribe", [id]))
    })
  })

/** The events of a subscription as a Stream; it subscribes when run and unsubscribes when it ends. */
export const subscriptionStream = <E>(
  t: Transport,
  entity: string,
  options?: SubscribeOptions<unknown>,
  callOptions?: CallOptions
): Stream.Stream<E, DbalError> =>
  Stream.asyncScoped<E, DbalError>((emit) =>
    Effect.acquireRelease(
      open<E>(t, entity, options, callOptions, {
        event: (e) => void emit.single(e),
        fail: (e) => void emit.fail(e)
      }),
      (end) => end
    )
  )

/** The events of a subscription as an AsyncIterable; it subscribes at once. */
export const subscriptionIterable = <E>(
  t: Transport,
  entity: string,
  options?: SubscribeOptions<unknown>,
  callOptions?: CallOptions
): Subscription<E> => {
  const queue: Array<E> = []
  const waiters: Array<{ readonly ok: (r: IteratorResult<E>) => void; readonly fail: (e: DbalError) => void }> = []
  let failure: DbalError | undefined
  let done = false
  const settle = () => {
    while (waiters.length > 0) {
      if (queue.length > 0) waiters.shift()!.ok({ value: queue.shift()!, done: false })
      else if (failure !== undefined) waiters.shift()!.fail(failure)
      else if (done) waiters.shift()!.ok({ value: undefined, done: true })
      else return
    }
  }
  const started = Effect.runPromise(
    Effect.either(
      open<E>(t, entity, options, callOptions, {
        event: (e) => {
          queue.push(e)
          settle()
        },
        fail: (e) => {
          failure = e
          settle()
        }
      })
    )
  ).then((r) => {
    if (r._tag === "Left") {
      failure = r.left
      settle()
      return undefined
    }
    return r.right
  })
  const close = async () => {
    if (done) return
    done = true
    queue.length = 0
    settle()
    const end = await started
    if (end !== undefined) await Effect.runPromise(end)
  }
  return {
    close,
    [Symbol.asyncIterator]: () => ({
      next: () =>
        new Promise<IteratorResult<E>>((ok, fail) => {
          waiters.push({ ok, fail })
          settle()
        }),
      return: async () => {
        await close()
        return { value: undefined, done: true }
      }
    })
  }
}
