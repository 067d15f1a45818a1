/**
 * JSON log lines (one object per line on stdout) with the fields of Effect's `Logger.json`
 * (message, logLevel, timestamp, cause, annotations, spans, fiberId) plus `traceId` and `spanId`
 * of the tracing span the line was logged in, so that a log line, a trace and an audit record
 * (which carries the same `traceId`) can be found from one another. Lines logged outside any
 * span have neither key.
 *
 * Every string of a line (message parts, the values of errors logged, the cause, annotations) is
 * cut to LOG_STRING_MAX_CHARS: a line that quotes a request (a driver message with a value, say)
 * cannot be as large as the request.
 */
import { Context, FiberRef, FiberRefs, Inspectable, Layer, Logger, Option, Tracer } from "effect"
import { clip } from "../src/Echo.js"
import { currentRequestTrace } from "../src/Spans.js"

/** Longest string of a log line, in characters (a stack trace fits; a 1 MB value does not). */
export const LOG_STRING_MAX_CHARS = 4096

/**
 * As Inspectable.stringifyCircular (circular references left out, redactable values redacted),
 * with every string clipped. JSON.stringify calls `toJSON` before the replacer sees a value, so
 * the strings of an error's JSON form are clipped too.
 */
const stringifyBounded = (obj: unknown): string => {
  const seen = new WeakSet<object>()
  return JSON.stringify(obj, (_key, value: unknown) => {
    if (typeof value === "string") return clip(value, LOG_STRING_MAX_CHARS)
    if (typeof value !== "object" || value === null) return value
    if (seen.has(value)) return undefined
    seen.add(value)
    return Inspectable.redact(value)
  })
}

const errorToJSON = (u: unknown): unknown => (u instanceof Error && !("toJSON" in u) ? { ...u, name: u.name, message: u.message } : u)

/**
 * With the tracer off (spans not exported), a span opened inside a request is a placeholder with
 * the ids "noop": a line logged in it carries the ids of the nearest span that was made, else the
 * request's own (src/Spans.ts, `requestTrace`).
 */
const isPlaceholder = (s: Tracer.AnySpan): s is Tracer.Span => s._tag === "Span" && s.spanId === "noop"

const madeSpan = (span: Tracer.AnySpan): Tracer.AnySpan => {
  let s = span
  while (isPlaceholder(s) && Option.isSome(s.parent)) s = s.parent.value
  return s
}

export const jsonWithTrace: Logger.Logger<unknown, string> = Logger.make((options) => {
  const log = Logger.structuredLogger.log(options)
  const span = Option.getOrUndefined(
    Option.map(Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan), madeSpan)
  )
  // A span that was made, else the request's own ids (src/Spans.ts, `requestTrace`).
  const ids = span !== undefined && !isPlaceholder(span) ? span : FiberRefs.getOrDefault(options.context, currentRequestTrace)
  return stringifyBounded({
    ...log,
    message: Array.isArray(log.message) ? log.message.map(errorToJSON) : errorToJSON(log.message),
    ...(ids === undefined ? {} : { traceId: ids.traceId, spanId: ids.spanId })
  })
})

/** Replaces the default logger with these JSON lines, written with console.log (as Logger.json). */
export const layer: Layer.Layer<never> = Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(jsonWithTrace))
