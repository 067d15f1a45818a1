/**
 * The one error type of the client. An error answered by the daemon keeps its wire form
 * (`code`, `message`, `details`, kind "Server"); failures of the client itself have their own
 * kinds, so that a caller can tell "the daemon said no" from "no answer came":
 *
 * | kind           | code | meaning                                                              |
 * | -------------- | ---- | -------------------------------------------------------------------- |
 * | Server         | the daemon's (400…504) | the daemon answered with an error                  |
 * | ConnectionLost | 503  | the request was sent, then the connection dropped: it may or may not have run |
 * | Timeout        | 504  | the request was sent and no answer came within the client's timeout  |
 * | NotConnected   | 503  | the request was never sent (no connection in time, or the client is closed) |
 * | Protocol       | 502  | the daemon sent an answer the client cannot read                     |
 */
import * as Data from "effect/Data"

export type DbalErrorKind = "Server" | "ConnectionLost" | "Timeout" | "NotConnected" | "Protocol"

export interface FieldError {
  readonly field: string
  readonly error: string
}

interface DbalErrorFields {
  readonly kind: DbalErrorKind
  /** The daemon's error code (docs/protocol.md, "Errors") for kind "Server"; 502/503/504 for the client's own kinds. */
  readonly code: number
  readonly message: string
  /** The daemon's `details` (e.g. `fields` for 422, `retryAfter` for 429, `reason` for client errors). */
  readonly details?: Readonly<Record<string, unknown>>
  /** The protocol method of the failed request. */
  readonly method?: string
}

/**
 * Data.TaggedError at run time (an Effect error: `yield*`-able in Effect.gen, compared by value),
 * declared without effect's types so that a consumer's type check does not read them; importing
 * "dbal-daemon/client/effect" declares it as effect's YieldableError again (effect.ts).
 */
const TaggedError = Data.TaggedError("DbalError") as unknown as new (
  fields: DbalErrorFields
) => Error & { readonly _tag: "DbalError" } & Readonly<DbalErrorFields>

export class DbalError extends TaggedError {
  /** 422: the fields the daemon refused; 409: the conflicting field names (as `{field, error: "conflict"}`). */
  get fields(): ReadonlyArray<FieldError> {
    const raw = this.details?.fields
    if (!Array.isArray(raw)) return []
    return raw.map((f: unknown): FieldError =>
      typeof f === "string"
        ? { field: f, error: "conflict" }
        : f !== null && typeof f === "object"
          ? { field: String((f as Record<string, unknown>).field), error: String((f as Record<string, unknown>).error) }
          : { field: String(f), error: "" }
    )
  }

  /** True when nothing reached the daemon, so that sending the request again is always safe. */
  get notSent(): boolean {
    return this.kind === "NotConnected"
  }

  /** The same error, attributed to another method. */
  withMethod(method: string): DbalError {
    if (this.method === method) return this
    return new DbalError({
      kind: this.kind,
      code: this.code,
      message: this.message,
      method,
      ...(this.details === undefined ? {} : { details: this.details })
    })
  }

  static server(method: string, code: number, message: string, details?: Readonly<Record<string, unknown>>): DbalError {
    return new DbalError({ kind: "Server", code, message, method, ...(details === undefined ? {} : { details }) })
  }

  static connectionLost(method: string, reason: string): DbalError {
    return new DbalError({ kind: "ConnectionLost", code: 503, message: "Connection lost", method, details: { reason } })
  }

  static timeout(method: string, timeoutMs: number): DbalError {
    return new DbalError({ kind: "Timeout", code: 504, message: "Request timeout", method, details: { timeoutMs } })
  }

  static notConnected(method: string, reason: string): DbalError {
    return new DbalError({ kind: "NotConnected", code: 503, message: "Not connected", method, details: { reason } })
  }

  static protocol(method: string, reason: string): DbalError {
    return new DbalError({ kind: "Protocol", code: 502, message: "Unreadable answer", method, details: { reason } })
  }
}

export const isDbalError = (u: unknown): u is DbalError => u instanceof DbalError
