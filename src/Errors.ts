/**
 * The one error table of the daemon. Every failure a request can meet is one of these tagged
 * errors; `toWireError` maps it to `{code, message, details}` once, at the edge. Messages are
 * those of metabuilder's error table (docs/protocol.md, "Errors"); details help the caller fix
 * the request and never carry SQL, driver messages or stack traces. Details quote the request
 * (field paths, names, values in messages): `toWireError` bounds them (src/Echo.ts), so that no
 * request gets an answer, or an audit record, as large as itself.
 */
import { Schema } from "effect"
import { clipDeep, type ClipLimits, DEFAULT_LIMITS, jsonBytes } from "./Echo.js"

export class FieldIssue extends Schema.Class<FieldIssue>("FieldIssue")({
  field: Schema.String,
  error: Schema.String
}) {}

/** 400: malformed frame, unknown method, params of the wrong shape. */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  reason: Schema.String
}) {}

/** 401: no credentials, unknown or expired credentials, user mismatch. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  reason: Schema.String
}) {}

/** 403: the principal may not perform this operation. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  reason: Schema.String
}) {}

/** 404: no such record (or none the caller may see). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  entity: Schema.String
}) {}

/** 409: a unique constraint, or a row still referenced by others. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  entity: Schema.String,
  fields: Schema.Array(Schema.String),
  reason: Schema.String
}) {}

/** 422: the input does not satisfy the entity's definition or the method's rules. */
export class ValidationFailed extends Schema.TaggedError<ValidationFailed>()("ValidationFailed", {
  fields: Schema.Array(FieldIssue)
}) {
  static one(field: string, error: string): ValidationFailed {
    return new ValidationFailed({ fields: [new FieldIssue({ field, error })] })
  }
}

/** 429: too many requests for this principal (or this connection). */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  retryAfter: Schema.Number,
  reason: Schema.optional(Schema.String)
}) {}

/** 500: a bug or an unexpected driver answer. Details stay in the server log. */
export class Internal extends Schema.TaggedError<Internal>()("Internal", {
  cause: Schema.optional(Schema.Defect)
}) {}

/** 501: the configured adapter cannot do this. */
export class NotSupported extends Schema.TaggedError<NotSupported>()("NotSupported", {
  feature: Schema.String
}) {}

/** 503: the database cannot be reached (or the audit log cannot record a write). */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** 504: the request ran past `performance.query_timeout`. */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  timeoutMs: Schema.Number
}) {}

/** An operation of a `transaction` failed; the whole transaction was rolled back. */
export class TransactionOpFailed extends Schema.TaggedError<TransactionOpFailed>()("TransactionOpFailed", {
  /** Position of the failed operation in the transaction's list. */
  index: Schema.Number,
  error: Schema.Unknown
}) {}

export type RequestError =
  | TransactionOpFailed
  | BadRequest
  | Unauthorized
  | Forbidden
  | NotFound
  | Conflict
  | ValidationFailed
  | RateLimited
  | Internal
  | NotSupported
  | Unavailable
  | Timeout

export interface WireError {
  readonly code: number
  readonly message: string
  readonly details?: Record<string, unknown>
}

/** Machine-readable names (docs/protocol.md, "Errors"); used by the audit log and metrics. */
export const errorName = (e: RequestError): string => {
  switch (e._tag) {
    case "TransactionOpFailed":
      return errorName(e.error as RequestError)
    case "BadRequest":
      return "BAD_REQUEST"
    case "Unauthorized":
      return "UNAUTHORIZED"
    case "Forbidden":
      return "FORBIDDEN"
    case "NotFound":
      return "NOT_FOUND"
    case "Conflict":
      return "CONFLICT"
    case "ValidationFailed":
      return "VALIDATION_ERROR"
    case "RateLimited":
      return "RATE_LIMIT_EXCEEDED"
    case "Internal":
      return "INTERNAL_ERROR"
    case "NotSupported":
      return "CAPABILITY_NOT_SUPPORTED"
    case "Unavailable":
      return "DATABASE_ERROR"
    case "Timeout":
      return "TIMEOUT"
  }
}

/** The wire form of `e`, details as built (unbounded: `toWireError` bounds them). */
const wireOf = (e: RequestError): WireError => {
  switch (e._tag) {
    case "TransactionOpFailed": {
      const inner = wireOf(e.error as RequestError)
      return { ...inner, details: { ...(inner.details ?? {}), operation: e.index, rolledBack: true } }
    }
    case "BadRequest":
      return { code: 400, message: "Bad request", details: { reason: e.reason } }
    case "Unauthorized":
      return { code: 401, message: "Authentication required", details: { reason: e.reason } }
    case "Forbidden":
      return { code: 403, message: "Access forbidden", details: { reason: e.reason } }
    case "NotFound":
      return { code: 404, message: "Resource not found", details: { entity: e.entity } }
    case "Conflict":
      return {
        code: 409,
        message: "Resource conflict",
        details: { entity: e.entity, fields: e.fields, reason: e.reason }
      }
    case "ValidationFailed":
      return {
        code: 422,
        message: "Validation failed",
        details: { fields: e.fields.map((f) => ({ field: f.field, error: f.error })) }
      }
    case "RateLimited":
      return {
        code: 429,
        message: "Rate limit exceeded",
        details: e.reason === undefined ? { retryAfter: e.retryAfter } : { retryAfter: e.retryAfter, reason: e.reason }
      }
    case "Internal":
      return { code: 500, message: "Internal server error" }
    case "NotSupported":
      return { code: 501, message: "Feature not supported", details: { feature: e.feature } }
    case "Unavailable":
      return { code: 503, message: "Database unavailable", details: { reason: e.reason } }
    case "Timeout":
      return { code: 504, message: "Operation timeout", details: { timeoutMs: e.timeoutMs } }
  }
}

/** Largest `details` answered, in UTF-8 bytes of its JSON (so an error answer stays under 4 KiB). */
export const DETAILS_MAX_BYTES = 2048
/** Field issues (or conflicting fields) listed at most; `moreFields` counts the others. */
export const MAX_LISTED_FIELDS = 10

/** The second pass's limits, for details whose strings are long after the first (escapes, many issues). */
const SHORT_LIMITS: ClipLimits = { name: 32, text: 128 }

/**
 * `details` with every string clipped and the `fields` list shortened until the whole fits
 * DETAILS_MAX_BYTES: first fewer list entries (at least one), then shorter strings.
 */
const boundDetails = (details: Record<string, unknown>): Record<string, unknown> => {
  const list = Array.isArray(details.fields) ? (details.fields as ReadonlyArray<unknown>) : undefined
  const shaped = (n: number, limits: ClipLimits): Record<string, unknown> => {
    const d = clipDeep(list === undefined ? details : { ...details, fields: list.slice(0, n) }, limits) as Record<string, unknown>
    return list !== undefined && list.length > n ? { ...d, moreFields: list.length - n } : d
  }
  const most = Math.min(list?.length ?? 0, MAX_LISTED_FIELDS)
  const fewest = Math.min(most, 1)
  for (const limits of [DEFAULT_LIMITS, SHORT_LIMITS]) {
    for (let n = most; n >= fewest; n--) {
      const d = shaped(n, limits)
      if (jsonBytes(d) <= DETAILS_MAX_BYTES) return d
    }
  }
  return shaped(fewest, SHORT_LIMITS)
}

/** The answer's `error` for `e`: code, fixed message and bounded details. */
export const toWireError = (e: RequestError): WireError => {
  const w = wireOf(e)
  return w.details === undefined ? w : { ...w, details: boundDetails(w.details) }
}
