/** Types the test helpers share: a parsed answer of the protocol and a plain JSON object. */

/** A plain JSON object (a record, a config section, params). */
export type Rec = Record<string, unknown>

/** The `error` of an answer: `{code, message, details?}` (src/Errors.ts `toWireError`). */
export interface WireError {
  readonly code: number
  readonly message: string
  readonly details?: Record<string, unknown>
}

/** One parsed answer: `{id, result}` or `{id, error}`. */
export interface Answer {
  readonly id: unknown
  readonly result?: unknown
  readonly error?: WireError
}
