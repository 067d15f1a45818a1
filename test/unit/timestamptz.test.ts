/**
 * layers/db/Pg.ts reads UTC `timestamptz` text straight into the ISO-8601 text the wire carries;
 * what it gives must be what pg's own parser (a Date) printed with toISOString gives, for every
 * fraction length, and anything else must go to that parser.
 */
import pg from "pg"
import { describe, expect, it } from "vitest"
import { timestamptzOf } from "../../layers/db/Pg.js"

const driver = pg.types.getTypeParser(1184, "text") as (text: string) => unknown
const viaDate = (text: string): string => {
  const d = driver(text)
  return d instanceof Date ? d.toISOString() : String(d)
}

describe("timestamptz read as ISO text", () => {
  const parse = timestamptzOf(driver)

  it("gives what a Date would print, milliseconds truncated, for UTC values", () => {
    for (const text of [
      "2026-12-02 17:20:28+00",
      "2026-12-02 17:20:28.1+00",
      "2026-12-02 17:20:28.12+00",
      "2026-12-02 17:20:28.123+00",
      "2026-12-02 17:20:28.1239+00",
      "2026-12-02 17:20:28.12399+00",
      "2026-12-02 17:20:28.999999+00",
      "0999-01-01 00:00:00+00",
      "2024-02-29 23:59:59.5+00"
    ]) {
      const out = parse(text)
      expect(typeof out, text).toBe("string")
      expect(out, text).toBe(viaDate(text))
    }
  })

  it("leaves other offsets, BC dates and infinity to the driver's parser", () => {
    for (const text of [
      "2026-12-02 17:20:28.123456+05:30",
      "2026-12-02 17:20:28-08",
      "0044-03-15 12:00:00+00 BC",
      "infinity",
      "-infinity"
    ]) {
      const out = parse(text)
      expect(typeof out, text).not.toBe("string")
      expect(out, text).toEqual(driver(text))
    }
  })
})
