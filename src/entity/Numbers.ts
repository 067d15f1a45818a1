/**
 * Exact numbers that travel as strings (BigInt and Decimal, beyond a double's 53 bits): their
 * canonical text, the same whatever form a caller sent or a driver answered ("12.340" from a
 * DECIMAL column, "1.0e+20" from SQLite, 120 or "0120" from a caller all have one text).
 */

const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n }

/** A BigInt value's canonical text, or why it is not one (64-bit signed, as every dialect's BIGINT). */
export const canonicalBigInt = (v: unknown): { ok: string } | { error: string } => {
  let n: bigint
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) return { error: "must be an integer (as a string of digits beyond 2^53)" }
    n = BigInt(v)
  } else if (typeof v === "string" && /^[+-]?\d{1,40}$/.test(v)) n = BigInt(v)
  else return { error: 'must be an integer as a string of digits, e.g. "9007199254740993"' }
  if (n < INT64.min || n > INT64.max) return { error: "must be between -9223372036854775808 and 9223372036854775807" }
  return { ok: n.toString() }
}

export interface DecimalText {
  /** The canonical text: no exponent, no leading zeros, no trailing zeros after the point. */
  readonly text: string
  /** Digits before the point (0 for |v| < 1). */
  readonly intDigits: number
  /** Digits after the point. */
  readonly fracDigits: number
  /** Digits from the first non-zero one to the last non-zero one. */
  readonly significant: number
}

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?$/

/** A decimal number's canonical text and digit counts, or undefined when `s` is not one. */
export const parseDecimal = (s: string): DecimalText | undefined => {
  if (s.length > 200) return undefined
  const m = DECIMAL.exec(s)
  if (m === null) return undefined
  const [, sign, intPart = "", fracPart = "", exp = "0"] = m
  if (intPart === "" && fracPart === "") return undefined
  const e = Number(exp)
  if (Math.abs(e) > 200) return undefined
  // All digits, and where the point falls among them.
  const digits = intPart + fracPart
  const point = intPart.length + e
  const padded = point < 0 ? "0".repeat(-point) + digits : point > digits.length ? digits + "0".repeat(point - digits.length) : digits
  const at = Math.max(point, 0)
  const int = padded.slice(0, at).replace(/^0+/, "")
  const frac = padded.slice(at).replace(/0+$/, "")
  const body = `${int === "" ? "0" : int}${frac === "" ? "" : `.${frac}`}`
  const zero = /^0(\.0*)?$/.test(body)
  const allDigits = (int + frac).replace(/^0+/, "").replace(/0+$/, "")
  return {
    text: zero || sign !== "-" ? body : `-${body}`,
    intDigits: int.length,
    fracDigits: frac.length,
    significant: allDigits.length
  }
}

/** A Decimal value (a string, or a finite number) checked against DECIMAL(precision, scale). */
export const canonicalDecimal = (
  v: unknown,
  limits: { readonly precision?: number; readonly scale?: number; readonly significantDigits?: number }
): { ok: string } | { error: string } => {
  const text = typeof v === "string" ? v.trim() : typeof v === "number" && Number.isFinite(v) ? String(v) : undefined
  const d = text === undefined ? undefined : parseDecimal(text)
  if (d === undefined) return { error: 'must be a decimal number as a string, e.g. "12.50"' }
  const scale = limits.scale ?? 30
  const precision = limits.precision ?? 65
  if (d.fracDigits > scale) return { error: `must have at most ${scale} digits after the decimal point` }
  if (d.intDigits > precision - scale) return { error: `must have at most ${precision - scale} digits before the decimal point` }
  // An integer of up to 18 digits is kept exactly (SQLite stores it as a 64-bit INTEGER).
  if (limits.significantDigits !== undefined && d.significant > limits.significantDigits && !(d.fracDigits === 0 && d.intDigits <= 18)) {
    return { error: `must have at most ${limits.significantDigits} significant digits (what the database stores exactly)` }
  }
  return { ok: d.text }
}
