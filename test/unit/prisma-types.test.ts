/**
 * The types a database that Prisma made needs, below the wire: canonical BigInt and Decimal
 * text, cuid ids, the definition keys (auto_increment, default_fn, precision/scale,
 * sqlite_datetime, string_list) and their problems, validation, filters on lists and numbers,
 * and how stored values of other writers are decoded.
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { cuid, generate } from "../../src/entity/Generate.js"
import { buildRegistry } from "../../src/entity/Load.js"
import type { EntityDef } from "../../src/entity/Model.js"
import { canonicalBigInt, canonicalDecimal, parseDecimal } from "../../src/entity/Numbers.js"
import { validateCreate } from "../../src/entity/Validate.js"
import { decodeValue, encodeValue, pgArrayLiteral } from "../../src/query/Codec.js"
import { parseFilter } from "../../src/query/Filter.js"
import { pkValue } from "../../src/query/Repository.js"

const build = (fields: Record<string, unknown>, dialect?: "pg" | "mysql" | "sqlite") =>
  buildRegistry([{ file: "/defs/shop.yaml", doc: { entity: "Shop", fields } }], dialect === undefined ? {} : { dialect })

const shop = (dialect?: "pg" | "mysql" | "sqlite"): EntityDef => {
  const built = build(
    {
      id: { type: "integer", primary: true, auto_increment: true },
      visits: { type: "bigint", required: true },
      price: { type: "decimal", precision: 10, scale: 2, required: true },
      ratio: { type: "decimal" },
      score: { type: "float" },
      ...(dialect === undefined || dialect === "pg" ? { tags: { type: "string_list", default: [] } } : {}),
      code: { type: "string", default_fn: "cuid" },
      ref: { type: "uuid", default_fn: "uuid" },
      seen_at: { type: "datetime", sqlite_datetime: "epoch_ms" }
    },
    dialect
  )
  expect(built.problems).toEqual([])
  return built.registry!.entities.get("Shop")!
}

describe("exact numbers as text", () => {
  it("gives one canonical text per decimal value, with its digit counts", () => {
    expect(parseDecimal("12.340")).toEqual({ text: "12.34", intDigits: 2, fracDigits: 2, significant: 4 })
    expect(parseDecimal("-0.00120")).toEqual({ text: "-0.0012", intDigits: 0, fracDigits: 4, significant: 2 })
    expect(parseDecimal("1.0e+20")?.text).toBe("100000000000000000000")
    expect(parseDecimal("1e-3")?.text).toBe("0.001")
    expect(parseDecimal("-0.000")?.text).toBe("0")
    expect(parseDecimal(".5")?.text).toBe("0.5")
    expect(parseDecimal("0120")?.text).toBe("120")
    for (const bad of ["", ".", "1.2.3", "abc", "1e", "NaN", "Infinity", "1e999", "0x10"]) expect(parseDecimal(bad), bad).toBeUndefined()
  })

  it("checks decimals against precision, scale and the digits a column keeps", () => {
    expect(canonicalDecimal("12.50", { precision: 10, scale: 2 })).toEqual({ ok: "12.5" })
    expect(canonicalDecimal(0.1, {})).toEqual({ ok: "0.1" })
    expect(canonicalDecimal("1.005", { precision: 10, scale: 2 })).toEqual({ error: "must have at most 2 digits after the decimal point" })
    expect(canonicalDecimal("123456789", { precision: 10, scale: 2 })).toEqual({
      error: "must have at most 8 digits before the decimal point"
    })
    expect(canonicalDecimal("1234567890.1234567", { significantDigits: 15 })).toHaveProperty("error")
    expect(canonicalDecimal("123456789012345678", { significantDigits: 15 })).toEqual({ ok: "123456789012345678" })
    expect(canonicalDecimal("12", {})).toEqual({ ok: "12" })
    expect(canonicalDecimal(Number.NaN, {})).toHaveProperty("error")
    expect(canonicalDecimal(true, {})).toHaveProperty("error")
  })

  it("keeps BigInt values exact over the 64-bit range", () => {
    expect(canonicalBigInt("9007199254740993")).toEqual({ ok: "9007199254740993" })
    expect(canonicalBigInt("-9223372036854775808")).toEqual({ ok: "-9223372036854775808" })
    expect(canonicalBigInt("+007")).toEqual({ ok: "7" })
    expect(canonicalBigInt(42)).toEqual({ ok: "42" })
    expect(canonicalBigInt("9223372036854775808")).toHaveProperty("error")
    expect(canonicalBigInt(2 ** 53)).toHaveProperty("error")
    expect(canonicalBigInt("1.5")).toHaveProperty("error")
  })
})

describe("values the daemon makes", () => {
  it("makes cuids of 25 characters, all different, and UUID v4", () => {
    const made = Array.from({ length: 2000 }, cuid)
    for (const c of made) expect(c).toMatch(/^c[0-9a-z]{24}$/)
    expect(new Set(made).size).toBe(made.length)
    expect(generate("uuid")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })

  it("fills default_fn fields on create when none is sent, keeps a value sent", () => {
    const e = shop()
    const r = validateCreate(e, { visits: "1", price: "2" })
    expect(Either.isRight(r)).toBe(true)
    const values = Either.getOrThrow(r)
    expect(values.get(e.byName.get("code")!)).toMatch(/^c[0-9a-z]{24}$/)
    expect(values.get(e.byName.get("ref")!)).toMatch(/^[0-9a-f-]{36}$/)
    expect(values.get(e.byName.get("tags")!)).toEqual([])
    expect(values.has(e.primaryKey)).toBe(false)
    const given = Either.getOrThrow(validateCreate(e, { visits: "1", price: "2", code: "mine" }))
    expect(given.get(e.byName.get("code")!)).toBe("mine")
  })
})

describe("definition keys", () => {
  it("builds numbered ids and the new types", () => {
    const e = shop()
    expect(e.primaryKey).toMatchObject({ type: "integer", autoIncrement: true, generated: true, required: false, nullable: false })
    expect(e.byName.get("price")).toMatchObject({ type: "decimal", precision: 10, scale: 2 })
    expect(e.byName.get("ratio")).toMatchObject({ precision: 65, scale: 30 })
    expect(e.byName.get("seenAt")).toMatchObject({ epochMillis: true })
    expect(shop("sqlite").byName.get("price")).toMatchObject({ significantDigits: 15 })
    expect(shop("pg").byName.get("price")?.significantDigits).toBeUndefined()
  })

  it("reports misuse of each key, and lists on a dialect that has none", () => {
    const { problems } = build({
      id: { type: "integer", primary: true },
      n: { type: "integer", auto_increment: true },
      a: { type: "integer", default_fn: "uuid" },
      b: { type: "uuid", default_fn: "cuid" },
      c: { type: "string", default_fn: "snowflake" },
      d: { type: "string", default_fn: "uuid", default: "x" },
      e: { type: "decimal", precision: 70 },
      f: { type: "decimal", precision: 4, scale: 5 },
      g: { type: "float", scale: 2 },
      h: { type: "string", sqlite_datetime: "epoch_ms" },
      i: { type: "datetime", sqlite_datetime: "julian" }
    })
    expect(problems).toEqual([
      "/defs/shop.yaml: fields.id.type: a primary key is a uuid (the daemon makes UUID v4 ids), an integer with auto_increment (the database numbers the rows) or a string with default_fn (uuid or cuid)",
      "/defs/shop.yaml: fields.n.auto_increment: applies to an integer primary key only",
      "/defs/shop.yaml: fields.a.default_fn: uuid makes uuid, string or text values, not integer",
      "/defs/shop.yaml: fields.b.default_fn: cuid makes string or text values, not uuid",
      "/defs/shop.yaml: fields.c.default_fn: expected one of uuid, cuid",
      "/defs/shop.yaml: fields.d: default and default_fn cannot both be given",
      "/defs/shop.yaml: fields.e.precision: expected 1 to 65 digits",
      "/defs/shop.yaml: fields.f.scale: expected 0 to 30 digits, at most the precision",
      "/defs/shop.yaml: fields.g: precision and scale apply to decimal fields only",
      "/defs/shop.yaml: fields.h.sqlite_datetime: applies to datetime fields only",
      "/defs/shop.yaml: fields.i.sqlite_datetime: expected iso or epoch_ms"
    ])
    const lists = { id: { type: "uuid", primary: true, generated: true }, tags: { type: "string_list" } }
    expect(build(lists, "mysql").problems).toEqual([
      "/defs/shop.yaml: fields.tags: lists of strings (string_list, Prisma's String[]) are stored on PostgreSQL only, not on MySQL/MariaDB"
    ])
    expect(build(lists, "sqlite").problems).toHaveLength(1)
    expect(build(lists, "pg").problems).toEqual([])
  })
})

describe("validation, filters and stored values", () => {
  const e = shop()
  const f = (name: string) => e.byName.get(name)!

  it("validates each type, naming the field", () => {
    const r = validateCreate(e, { visits: 1.5, price: "1.234", score: "1", tags: ["a", 1] })
    const issues = Either.isLeft(r) ? r.left.fields.map((i) => [i.field, i.error]) : []
    expect(issues.map(([field]) => field).sort()).toEqual(["price", "score", "tags", "visits"])
    expect(Object.fromEntries(issues)).toMatchObject({
      price: "must have at most 2 digits after the decimal point",
      score: "must be a number"
    })
    expect(
      Either.isRight(validateCreate(e, { visits: "9223372036854775807", price: "-12345678.99", score: 1e-300, tags: ["a", ""] }))
    ).toBe(true)
  })

  it("parses list operators and refuses the others on lists", () => {
    expect(Either.getOrThrow(parseFilter(e, { tags: { has: "a", hasSome: ["b", "c"], isEmpty: false } }))).toMatchObject({
      _tag: "And",
      nodes: [
        { _tag: "Has", op: "has", values: ["a"] },
        { _tag: "Has", op: "hasSome", values: ["b", "c"] },
        { _tag: "IsEmpty", isEmpty: false }
      ]
    })
    for (const bad of [
      { tags: "a" },
      { tags: { eq: ["a"] } },
      { tags: { has: 1 } },
      { tags: { hasEvery: "a" } },
      { tags: { contains: "a" } }
    ]) {
      expect(Either.isLeft(parseFilter(e, bad)), JSON.stringify(bad)).toBe(true)
    }
    expect(Either.getOrThrow(parseFilter(e, { visits: { gt: "9007199254740993" }, price: "1.50" }))).toMatchObject({
      nodes: [
        { _tag: "Cmp", op: "gt", value: "9007199254740993" },
        { _tag: "Cmp", op: "eq", value: "1.5" }
      ]
    })
    expect(Either.isLeft(parseFilter(e, { visits: 1.5 }))).toBe(true)
    expect(Either.isLeft(parseFilter(e, { score: { eq: 1, mode: "insensitive" } }))).toBe(true)
  })

  it("encodes lists as PostgreSQL array literals, date-times per dialect", () => {
    expect(pgArrayLiteral(["a", 'q"uote', "back\\slash", "NULL", "{x,y}"])).toBe('{"a","q\\"uote","back\\\\slash","NULL","{x,y}"}')
    const at = new Date("2024-01-15T10:30:00.123Z")
    expect(encodeValue("sqlite", f("seenAt"), at)).toBe(1705314600123)
    expect(encodeValue("pg", f("seenAt"), at)).toBe("2024-01-15T10:30:00.123Z")
  })

  it("decodes what other writers store", () => {
    const seen = f("seenAt")
    expect(decodeValue("sqlite", seen, 1705314600123)).toBe("2024-01-15T10:30:00.123Z")
    expect(decodeValue("sqlite", seen, "1705314600123")).toBe("2024-01-15T10:30:00.123Z")
    expect(decodeValue("sqlite", seen, "2024-01-15 10:30:00")).toBe("2024-01-15T10:30:00.000Z")
    expect(decodeValue("sqlite", seen, "2024-01-15 10:30:00 +02:00")).toBe("2024-01-15T08:30:00.000Z")
    expect(decodeValue("sqlite", seen, "garbage")).toBe("garbage")
    expect(decodeValue("pg", f("price"), "12.340000000000000000000000000000")).toBe("12.34")
    expect(decodeValue("sqlite", f("price"), "1.0e+20")).toBe("100000000000000000000")
    expect(decodeValue("mysql", f("visits"), 42)).toBe("42")
    expect(decodeValue("pg", f("score"), "0.5")).toBe(0.5)
  })

  it("takes record ids in the primary key's form", () => {
    expect(pkValue(e, 7)).toBe(7)
    expect(pkValue(e, "7")).toBe(7)
    for (const none of [1.5, "x", "99999999999", 2 ** 31, null]) expect(pkValue(e, none), String(none)).toBeUndefined()
  })
})
