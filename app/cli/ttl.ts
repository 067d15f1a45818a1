/** Durations of the command line: `90` (seconds), `30s`, `15m`, `24h`, `7d`. */
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }

/** At most one year. */
export const MAX_TTL_SECONDS = 366 * 86400

/** Seconds, or the reason the text is not a duration. */
export const parseTtl = (text: string): number | string => {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim())
  if (m === null) return `expected a duration such as 3600, 30m, 24h or 7d, got ${JSON.stringify(text)}`
  const seconds = Number(m[1]) * UNITS[m[2] === "" ? "s" : m[2]!]!
  if (seconds <= 0) return "expected a duration greater than 0"
  if (seconds > MAX_TTL_SECONDS) return "expected a duration of at most 366 days"
  return seconds
}
