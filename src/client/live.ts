/**
 * Subscriptions of the client (docs/client.md, "Live changes"): `subscribe` on the wire, the
 * pushed events routed by the transport, as an Effect Stream and as an AsyncIterable. A
 * subscription lives on one connection: when it drops, the stream fails (kind ConnectionLost)
 * and the caller subscribes again (and re-reads what it shows, since changes made meanwhile were
 * not delivered). An error frame from the daemon (credentials expired, access withdrawn) fails
 * it with the daemon's error.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { DbalError } from "./errors.js"
import type { CallOptions, Transport } from "./transport.js"

import type { SubscribeOptions, Subscription } from "./options.js"

export type { SubscribeOptions, Subscription, SubscriptionEvent } from "./options.js"

interface Sink<E> {
  readonly event: (e: E) => void
  readonly fail: (e: DbalError) => void
}

const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

/** Subscribes and routes the events to `sink`; succeeds with the effect that ends it. */
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
    const answer = yield* t.request("subscribe", options === undefined ? [entity] : [entity, options], callOptions)
    if (!isRecord(answer) || typeof answer.subscription !== "string")
      return yield* Effect.fail(DbalError.protocol("subscribe", "an answer without a subscription id"))
    const id = answer.subscription
    let ended = false
    const stop = watch(id, {
      frame: (f) => {
        if (ended) return
        if (isRecord(f.error)) {
          ended = true
          const e = f.error
          return sink.fail(
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
      lost: (reason) => {
        if (ended) return
        ended = true
        sink.fail(DbalError.connectionLost("subscribe", reason))
      }
    })
    return Effect.suspend(() => {
      stop()
      if (ended) return Effect.void
      ended = true
      return Effect.ignore(t.request("unsubscribe", [id]))
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
