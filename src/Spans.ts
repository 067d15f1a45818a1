/**
 * A request's spans (`rpc.<method>` and inside it `auth`, `rate_limit`, `acl`, the SQL spans) are
 * made only when spans are exported (`tracing.enabled` with `tracing.otlp_endpoint`): nobody can
 * see them otherwise, and each costs CPU on every request (bench/handler-micro.ts). Without them
 * a request still has its own trace id (`requestTrace`) for the audit record and the log lines.
 * No span captures a stack trace: `Effect.withSpan` would otherwise create an Error (and format
 * its stack) for every span of every request. Their names say where they come from.
 */
import { Effect, FiberRef, identity, RuntimeFlags, Tracer } from "effect"
import { globalValue } from "effect/GlobalValue"
import { randomFillSync } from "node:crypto"
import type { DaemonConfig } from "./Config.js"

export const spanOptions = { captureStackTrace: false } as const

export const spansExported = (config: DaemonConfig): boolean => config.tracing.enabled && config.tracing.otlp_endpoint !== undefined

/** `Effect.withSpan(name)` when spans are exported, nothing otherwise. */
export const childSpan =
  (config: DaemonConfig) =>
  (name: string): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
    spansExported(config) ? Effect.withSpan(name, spanOptions) : identity

/** A request's trace ids when spans are not exported (`requestTrace`); inherited by its child fibers. */
export interface RequestTraceIds {
  readonly traceId: string
  readonly spanId: string
}

export const currentRequestTrace: FiberRef.FiberRef<RequestTraceIds | undefined> = globalValue(Symbol.for("dbal/currentRequestTrace"), () =>
  FiberRef.unsafeMake<RequestTraceIds | undefined>(undefined)
)

/**
 * A request's trace when spans are not exported: a trace id and span id of its own (log lines
 * carry them: layers/Logging.ts; the audit record carries the trace id), without a span to time,
 * annotate and end. The daemon then runs with the tracer off (layers/Tracing.ts), so the spans
 * made inside the request (`@effect/sql` opens one per statement) are not made either. The ids
 * are a fiber ref of the request, not a parent span in its context: adding a service to the
 * context copies all of them (~2.5 kB and a few µs per request).
 */
export const requestTrace = <A, E, R>(f: (traceId: string) => Effect.Effect<A, E, R>, caller?: TraceParent): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((_, status) => {
    const ids: RequestTraceIds = { traceId: caller?.traceId ?? randomHex(16), spanId: randomHex(8) }
    if (RuntimeFlags.interruption(status.runtimeFlags)) return Effect.locally(f(ids.traceId), currentRequestTrace, ids)
    // A fiber of the request runtime (src/query/Timeout.ts) is the request's own and ends with it:
    // the ref is set, not scoped (`locally` would restore it afterwards).
    return Effect.zipRight(FiberRef.set(currentRequestTrace, ids), f(ids.traceId))
  })

/**
 * Random bytes as lower-case hex, taken from a block filled 4 kB at a time: two `randomUUID()`
 * per request (and their `replaceAll`) were 1.5 % of a read's CPU in the daemon's profile.
 */
const RANDOM_BLOCK = 4096
const random = Buffer.alloc(RANDOM_BLOCK)
let randomUsed = RANDOM_BLOCK
export const randomHex = (bytes: number): string => {
  if (randomUsed + bytes > RANDOM_BLOCK) {
    randomFillSync(random)
    randomUsed = 0
  }
  const hex = random.toString("hex", randomUsed, randomUsed + bytes)
  randomUsed += bytes
  return hex
}

/** The caller's span, from a W3C `traceparent` (https://www.w3.org/TR/trace-context/). */
export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/**
 * `version-traceid-parentid-flags`, lower-case hex. As the specification asks, a value that is not
 * valid (version ff, an all-zero id, a version 00 value with more fields) is ignored - the request
 * starts a trace of its own - rather than refused; a later version's extra fields are ignored.
 */
export const parseTraceparent = (value: unknown): TraceParent | undefined => {
  if (typeof value !== "string" || value.length > 512) return undefined
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(value.trim())
  if (m === null) return undefined
  const [, version, traceId, spanId, flags, rest] = m
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (/^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return undefined
  return { traceId: traceId!, spanId: spanId!, sampled: (Number.parseInt(flags!, 16) & 1) === 1 }
}

/** The caller's span as the parent of the request's span (exported spans). */
export const callerSpan = (caller: TraceParent): Tracer.ExternalSpan =>
  Tracer.externalSpan({ traceId: caller.traceId, spanId: caller.spanId, sampled: caller.sampled })
