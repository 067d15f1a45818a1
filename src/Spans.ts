/**
 * Spans inside a request (`auth`, `rate_limit`, `acl`). The request's own `rpc.<method>` span is
 * always made: its trace id is written into the audit record and the log lines. Its children are
 * made only when spans are exported (`tracing.enabled` with `tracing.otlp_endpoint`): nobody can
 * see them otherwise, and each costs about 10 µs of CPU per request (bench/handler-micro.ts).
 * No span captures a stack trace: `Effect.withSpan` would otherwise create an Error (and format
 * its stack) for every span of every request. Their names say where they come from.
 */
import { Effect, identity } from "effect"
import type { DaemonConfig } from "./Config.js"

export const spanOptions = { captureStackTrace: false } as const

export const spansExported = (config: DaemonConfig): boolean => config.tracing.enabled && config.tracing.otlp_endpoint !== undefined

/** `Effect.withSpan(name)` when spans are exported, nothing otherwise. */
export const childSpan =
  (config: DaemonConfig) =>
  (name: string): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
    spansExported(config) ? Effect.withSpan(name, spanOptions) : identity
