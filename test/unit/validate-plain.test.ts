/**
 * checkValue answers most values without the field's Schema (a plain check per field, compiled
 * once): for every field type and a set of edge values, its answer (the value or the message)
 * must be the one the Schema gives alone.
 */
import { Either, ParseResult, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { buildRegistry } from "../../src/entity/Load.js"
import { checkValue, fieldSchema, validateCreateMany } from "../../src/entity/Validate.js"

const built = buildRegistry(
  [
    {
      file: "/defs/every.yaml",
      doc: {
        entity: "Every",
        fields: {
          id: { type: "uuid", primary: true, generated: true },
          ref: { type: "uuid", optional: true },
          code: { type: "string", optional: true, min_length: 2, max_length: 4, pattern: "^[a-z😀]+$" },
          body: { type: "text", optional: true },
          mail: { type: "email", optional: true },
          kind: { type: "enum", values: ["a", "b"], optional: true },
          n: { type: "integer", optional: true, min: -2, max: 7 },
          big: { type: "bigint", optional: true },
          price: { type: "decimal", optional: true, precision: 6, scale: 2 },
          ratio: { type: "float", optional: true },
          tags: { type: "string_list", optional: true },
          flag: { type: "boolean", optional: true },
          at: { type: "datetime", optional: true },
          doc: { type: "json", optional: true },
          level: { type: "integer", required: true },
          state: { type: "string", default: "new" },
          meta: { type: "json", default: { a: [1] } }
        }
      }
    }
  ],
  { dialect: "pg" }
)
const Every = built.registry?.entities.get("Every")
if (Every === undefined) throw new Error(built.problems.join("\n"))

const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)])
const values: ReadonlyArray<unknown> = [
  undefined,
  "",
  "a",
  "ab",
  "abcd",
  "abcde",
  "😀😀😀😀",
  "😀😀😀😀😀",
  "AB",
  "a\u0000",
  "a\ud800",
  "\udc00",
  "0F8FAD5B-D9CB-469F-A165-70867728950E",
  "0f8fad5b-d9cb-469f-a165-70867728950e",
  "0f8fad5b-d9cb-469f-a165-70867728950",
  "x@y.io",
  "x@y",
  "x @y.io",
  "2024-01-15T10:30:00Z",
  "2024-01-15T10:30:00.123456789+01:00",
  "2024-01-15T10:30Z",
  "2023-02-29T00:00:00Z",
  "0999-12-31T23:59:59Z",
  "2024-01-15 10:30:00",
  "2024-01-15T10:30:00",
  "12345678901234567890",
  "1.25",
  "1234.567",
  0,
  -0,
  -2,
  -3,
  7,
  8,
  1.5,
  2 ** 53,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  true,
  false,
  [],
  ["a", "b"],
  ["a", 1],
  ["a\u0000"],
  {},
  { a: [1, "x", null, true] },
  { ["k\ud800"]: 1 },
  { a: Number.NaN },
  deep(64),
  deep(65),
  new Date(0),
  10n
]

const bySchema = (f: Parameters<typeof fieldSchema>[0], v: unknown): Either.Either<unknown, string> =>
  Either.mapLeft(
    Schema.decodeUnknownEither(fieldSchema(f))(v),
    (e) => ParseResult.ArrayFormatter.formatErrorSync(e)[0]?.message ?? "is not valid"
  )

describe("checkValue's plain checks", () => {
  it("answer what the field's Schema answers, for every type and edge value", () => {
    let plainAccepted = 0
    for (const f of Every.fields) {
      for (const v of values) {
        const got = checkValue(f, v)
        expect({ field: f.name, value: v, got }).toEqual({ field: f.name, value: v, got: bySchema(f, v) })
        if (Either.isRight(got)) plainAccepted++
      }
    }
    // The comparison means something only if both answers occur.
    expect(plainAccepted).toBeGreaterThan(40)
  })

  it("give each record a list and a default of its own", () => {
    const tags = ["a", "b"]
    const r = validateCreateMany(Every, [
      { level: 1, tags },
      { level: 2, tags }
    ])
    if (Either.isLeft(r)) throw new Error(JSON.stringify(r.left))
    const [a, b] = r.right
    const field = (name: string) => Every.byName.get(name)!
    expect(a!.get(field("tags"))).toEqual(tags)
    expect(a!.get(field("tags"))).not.toBe(tags)
    expect(a!.get(field("meta"))).toEqual({ a: [1] })
    expect(a!.get(field("meta"))).not.toBe(b!.get(field("meta")))
    expect(a!.get(field("state"))).toBe("new")
  })
})
