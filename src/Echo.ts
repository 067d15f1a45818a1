/**
 * Bounds on what the daemon repeats of a request. A request chooses names (fields, operators,
 * relations, list options, `data` keys, the entity), ids and values that reach error details,
 * audit records and log lines; without a bound a 1 MB field name would make a 1 MB answer, a 1 MB
 * fsynced audit record and a 1 MB log line. The edges cut every string with these functions:
 * src/Errors.ts (answers), src/services/AuditLog.ts (audit records), layers/Logging.ts (log lines).
 */

/** Longest name or id echoed (a field path, an entity, a record id, a user id, …), in characters. */
export const NAME_MAX_CHARS = 128
/** Longest sentence echoed (an error's `reason` or `error`, which may quote a name), in characters. */
export const TEXT_MAX_CHARS = 512

/**
 * `s` cut to at most `max` characters (UTF-16 code units, never inside a surrogate pair), its end
 * replaced by "…(+N chars)" saying how many were cut. The marker counts within `max`, so cutting
 * twice changes nothing. `max` must leave room for the marker (at least 32).
 */
export const clip = (s: string, max: number): string => {
  if (s.length <= max) return s
  // The marker's length for N = s.length bounds its length for the N it will show.
  let keep = Math.max(0, max - `…(+${s.length} chars)`.length)
  const last = s.charCodeAt(keep - 1)
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep--
  return `${s.slice(0, keep)}…(+${s.length - keep} chars)`
}

/** Keys whose strings are sentences (TEXT_MAX_CHARS); every other string is a name (NAME_MAX_CHARS). */
const SENTENCE_KEYS: ReadonlySet<string> = new Set(["reason", "error", "message"])

/** Limits of one pass of `clipDeep`. */
export interface ClipLimits {
  readonly name: number
  readonly text: number
}

export const DEFAULT_LIMITS: ClipLimits = { name: NAME_MAX_CHARS, text: TEXT_MAX_CHARS }

/**
 * A copy of `v` (plain JSON data: objects, arrays, scalars) with every string clipped: values of
 * `reason`, `error` and `message` to `limits.text`, all others to `limits.name`. Objects' keys are
 * the daemon's own (details are built by src/Errors.ts), but they are clipped as names too. Beyond
 * `depth` levels a value is replaced by "…".
 */
export const clipDeep = (v: unknown, limits: ClipLimits = DEFAULT_LIMITS, key = "", depth = 8): unknown => {
  if (typeof v === "string") return clip(v, SENTENCE_KEYS.has(key) ? limits.text : limits.name)
  if (v === null || typeof v !== "object") return v
  if (depth <= 0) return "…"
  if (Array.isArray(v)) return v.map((x) => clipDeep(x, limits, key, depth - 1))
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) out[clip(k, limits.name)] = clipDeep(x, limits, k, depth - 1)
  return out
}

/** UTF-8 bytes of `v` as JSON. */
export const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v) ?? "", "utf8")
