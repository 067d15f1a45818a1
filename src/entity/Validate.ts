/**
 * Input validation derived from the entity definitions: one Schema per field (type, lengths,
 * pattern, range, enum values), and the record-level rules of create and update (unknown,
 * generated and immutable fields, required fields, defaults). Values come out canonical:
 * UUIDs lower-case, date-times as `Date`, strings well-formed.
 */
import { Either, ParseResult, Schema } from "effect"
import { FieldIssue, ValidationFailed } from "../Errors.js"
import type { EntityDef, FieldDef } from "./Model.js"
import { isRecord } from "../Json.js"
import { generate } from "./Generate.js"
import { canonicalBigInt, canonicalDecimal } from "./Numbers.js"

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
/** ISO-8601 date-time with an explicit zone, as produced by `Date.prototype.toISOString`. */
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/
/** The range every dialect stores (MySQL DATETIME starts at year 1000). */
const MIN_TIME = Date.UTC(1000, 0, 1)
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999)
const MAX_JSON_DEPTH = 64

export const isUuid = (s: string): boolean => UUID.test(s)

/**
 * Milliseconds of an ISO-8601 date-time with a zone, or NaN. Days a month does not have
 * (2023-02-29) are refused: `Date.parse` would silently roll them over into the next month.
 */
export const isoDateTimeMillis = (v: string): number => {
  if (!ISO_DATETIME.test(v)) return Number.NaN
  const month = Number(v.slice(5, 7))
  const day = Number(v.slice(8, 10))
  const last = new Date(0)
  last.setUTCFullYear(Number(v.slice(0, 4)), month, 0)
  if (month < 1 || month > 12 || day < 1 || day > last.getUTCDate()) return Number.NaN
  return Date.parse(v)
}

const codePoints = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

/** PostgreSQL cannot store NUL in text, and lone surrogates do not survive UTF-8: refuse both everywhere. */
export const storableText = (s: string): boolean => !s.includes("\u0000") && s.isWellFormed()

const jsonProblem = (v: unknown, depth: number): string | undefined => {
  if (depth > MAX_JSON_DEPTH) return `must not nest deeper than ${MAX_JSON_DEPTH} levels`
  if (v === null || typeof v === "boolean") return undefined
  if (typeof v === "number") return Number.isFinite(v) ? undefined : "must be a finite number"
  if (typeof v === "string") return storableText(v) ? undefined : "must not contain NUL characters or invalid Unicode"
  if (Array.isArray(v)) {
    for (const x of v) {
      const p = jsonProblem(x, depth + 1)
      if (p !== undefined) return p
    }
    return undefined
  }
  if (typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (!storableText(k)) return "must not contain NUL characters or invalid Unicode"
      const p = jsonProblem(x, depth + 1)
      if (p !== undefined) return p
    }
    return undefined
  }
  return "must be a JSON value"
}

const text = (f: FieldDef): Schema.Schema<string, unknown> => {
  let s = Schema.String.annotations({ message: () => "must be a string" }).pipe(
    Schema.filter((v) => storableText(v) || "must not contain NUL characters or invalid Unicode")
  )
  if (f.minLength !== undefined) {
    const n = f.minLength
    s = s.pipe(Schema.filter((v) => codePoints(v) >= n || `must be at least ${n} characters long`))
  }
  if (f.maxLength !== undefined) {
    const n = f.maxLength
    s = s.pipe(Schema.filter((v) => codePoints(v) <= n || `must be at most ${n} characters long`))
  }
  if (f.type === "email") s = s.pipe(Schema.filter((v) => EMAIL.test(v) || "must be an email address"))
  if (f.pattern !== undefined) {
    const re = f.pattern
    s = s.pipe(Schema.filter((v) => re.test(v) || `must match the pattern ${re.source}`))
  }
  return s as unknown as Schema.Schema<string, unknown>
}

/** A number that travels as a string: its canonical text, or the message of `check`. */
const exact = (check: (v: unknown) => { ok: string } | { error: string }): Schema.Schema<unknown, unknown> =>
  Schema.transformOrFail(Schema.Unknown, Schema.String, {
    strict: true,
    decode: (v, _, ast) => {
      const r = check(v)
      return "ok" in r ? ParseResult.succeed(r.ok) : ParseResult.fail(new ParseResult.Type(ast, v, r.error))
    },
    encode: (s) => ParseResult.succeed(s)
  }) as unknown as Schema.Schema<unknown, unknown>

/** The Schema of one field's value (without null: nullability is a record-level rule). */
export const fieldSchema = (f: FieldDef): Schema.Schema<unknown, unknown> => {
  switch (f.type) {
    case "uuid":
      return Schema.String.annotations({ message: () => "must be a UUID" }).pipe(
        Schema.filter((v) => UUID.test(v) || "must be a UUID"),
        Schema.transform(Schema.String, { strict: true, decode: (v) => v.toLowerCase(), encode: (v) => v })
      ) as unknown as Schema.Schema<unknown, unknown>
    case "string":
    case "text":
    case "email":
      return text(f) as Schema.Schema<unknown, unknown>
    case "enum": {
      const values = f.values ?? []
      return Schema.String.annotations({ message: () => `must be one of ${values.join(", ")}` }).pipe(
        Schema.filter((v) => values.includes(v) || `must be one of ${values.join(", ")}`)
      ) as unknown as Schema.Schema<unknown, unknown>
    }
    case "integer": {
      const min = f.min ?? Number.MIN_SAFE_INTEGER
      const max = f.max ?? Number.MAX_SAFE_INTEGER
      return Schema.Number.annotations({ message: () => "must be an integer" }).pipe(
        Schema.filter((v) => Number.isInteger(v) || "must be an integer"),
        Schema.filter((v) => (v >= min && v <= max) || `must be between ${min} and ${max}`)
      ) as unknown as Schema.Schema<unknown, unknown>
    }
    case "bigint":
      return exact((v) => canonicalBigInt(v))
    case "decimal":
      return exact((v) => canonicalDecimal(v, f))
    case "float":
      return Schema.Number.annotations({ message: () => "must be a number" }).pipe(
        Schema.filter((v) => Number.isFinite(v) || "must be a finite number")
      ) as unknown as Schema.Schema<unknown, unknown>
    case "string_list":
      return Schema.Array(text({ ...f, type: "string" })).annotations({
        message: () => "must be a list of strings"
      }) as unknown as Schema.Schema<unknown, unknown>
    case "boolean":
      return Schema.Boolean.annotations({ message: () => "must be true or false" }) as unknown as Schema.Schema<unknown, unknown>
    case "datetime":
      return Schema.String.annotations({ message: () => "must be an ISO-8601 date-time string" }).pipe(
        Schema.filter((v) => {
          if (!ISO_DATETIME.test(v)) return "must be an ISO-8601 date-time with a time zone, e.g. 2024-01-15T10:30:00Z"
          const t = isoDateTimeMillis(v)
          if (Number.isNaN(t)) return "must be a valid date-time"
          return (t >= MIN_TIME && t <= MAX_TIME) || "must be between the years 1000 and 9999"
        }),
        Schema.transform(Schema.DateFromSelf, { strict: true, decode: (v) => new Date(v), encode: (d) => d.toISOString() })
      ) as unknown as Schema.Schema<unknown, unknown>
    case "json":
      return Schema.Unknown.pipe(Schema.filter((v) => jsonProblem(v, 0) ?? true)) as unknown as Schema.Schema<unknown, unknown>
  }
}

const decoders = new WeakMap<FieldDef, (u: unknown) => Either.Either<unknown, ParseResult.ParseError>>()

/** A field's Schema, decoded: the reference for what is valid and the source of every message. */
const decoderOf = (f: FieldDef) => {
  let decode = decoders.get(f)
  if (decode === undefined) {
    decode = Schema.decodeUnknownEither(fieldSchema(f))
    decoders.set(f, decode)
  }
  return decode
}

/** What a plain check answers when it is not sure a value is valid: the field's Schema decides. */
const UNSURE: unique symbol = Symbol("unsure")

/**
 * A plain function per field that accepts exactly what the field's Schema accepts and answers the
 * same canonical value, or UNSURE — a Schema decode costs microseconds per value, which a
 * createMany of hundreds of records pays per field. It never refuses: whatever it is unsure of goes
 * to the Schema, so the messages stay the Schema's.
 */
const plainCheck = (f: FieldDef): ((v: unknown) => unknown) => {
  switch (f.type) {
    case "uuid":
      return (v) => (typeof v === "string" && UUID.test(v) ? v.toLowerCase() : UNSURE)
    case "string":
    case "text":
    case "email": {
      const min = f.minLength
      const max = f.maxLength
      const email = f.type === "email"
      const re = f.pattern
      // A string has at most as many code points as UTF-16 units: the count is needed only near a bound.
      return (v) =>
        typeof v === "string" &&
        storableText(v) &&
        (min === undefined || codePoints(v) >= min) &&
        (max === undefined || v.length <= max || codePoints(v) <= max) &&
        (!email || EMAIL.test(v)) &&
        (re === undefined || re.test(v))
          ? v
          : UNSURE
    }
    case "enum": {
      const values = f.values ?? []
      return (v) => (typeof v === "string" && values.includes(v) ? v : UNSURE)
    }
    case "integer": {
      const min = f.min ?? Number.MIN_SAFE_INTEGER
      const max = f.max ?? Number.MAX_SAFE_INTEGER
      return (v) => (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : UNSURE)
    }
    case "float":
      return (v) => (typeof v === "number" && Number.isFinite(v) ? v : UNSURE)
    case "boolean":
      return (v) => (typeof v === "boolean" ? v : UNSURE)
    case "datetime":
      return (v) => {
        if (typeof v !== "string") return UNSURE
        const t = isoDateTimeMillis(v)
        return t >= MIN_TIME && t <= MAX_TIME ? new Date(v) : UNSURE
      }
    case "json":
      return (v) => (jsonProblem(v, 0) === undefined ? v : UNSURE)
    case "string_list": {
      const item = plainCheck({ ...f, type: "string" })
      // The Schema answers a new array: so does this.
      return (v) => (Array.isArray(v) && v.every((x) => item(x) !== UNSURE) ? [...(v as Array<string>)] : UNSURE)
    }
    case "bigint":
    case "decimal":
      // Their Schema is one function call already (exact numbers: Numbers.ts).
      return () => UNSURE
  }
}

const checks = new WeakMap<FieldDef, (v: unknown) => unknown>()

/** Checks one value for a field; `null` is accepted only where the column is nullable. */
export const checkValue = (f: FieldDef, value: unknown): Either.Either<unknown, string> => {
  if (value === null) return f.nullable ? Either.right(null) : Either.left("must not be null")
  let plain = checks.get(f)
  if (plain === undefined) {
    plain = plainCheck(f)
    checks.set(f, plain)
  }
  const quick = plain(value)
  if (quick !== UNSURE) return Either.right(quick)
  return Either.mapLeft(decoderOf(f)(value), (e) => ParseResult.ArrayFormatter.formatErrorSync(e)[0]?.message ?? "is not valid")
}

/** A validated record, keyed by wire (camelCase) field name. */
export type Values = Map<FieldDef, unknown>

/** What a create fills in for a field the record leaves out. */
type Absent =
  | { readonly f: FieldDef; readonly kind: "default"; readonly value: unknown }
  | { readonly f: FieldDef; readonly kind: "defaultFn" | "required" }

/** An entity's create rules, worked out once: the fields a record may leave out and what fills them. */
interface CompiledEntity {
  readonly absent: ReadonlyArray<Absent>
}

const compiledEntities = new WeakMap<EntityDef, CompiledEntity>()

const compile = (entity: EntityDef): CompiledEntity => {
  let c = compiledEntities.get(entity)
  if (c === undefined) {
    const absent: Array<Absent> = []
    for (const f of entity.fields) {
      if (f.generated || f.primary || f.autoUpdate) continue
      // Prisma's uuid() and cuid() defaults are made by its client, so the table has no default.
      if (f.default !== undefined) absent.push({ f, kind: "default", value: f.default })
      else if (f.defaultFn !== undefined) absent.push({ f, kind: "defaultFn" })
      else if (f.required) absent.push({ f, kind: "required" })
    }
    c = { absent }
    compiledEntities.set(entity, c)
  }
  return c
}

/** A default as a record gets it: a value of its own, so that no record shares (and changes) another's. */
const defaultValue = (v: unknown): unknown => (v === null || typeof v !== "object" ? v : structuredClone(v))

const collect = (entity: EntityDef, data: unknown, at: string, mode: "create" | "update"): Either.Either<Values, Array<FieldIssue>> => {
  const issues: Array<FieldIssue> = []
  if (!isRecord(data)) return Either.left([new FieldIssue({ field: at, error: "must be an object of field values" })])
  const values: Values = new Map()
  const nameOf = (key: string) => (at === "data" ? key : `${at}.${key}`)
  for (const key in data) {
    if (!Object.hasOwn(data, key)) continue
    const value = data[key]
    const f = entity.byName.get(key)
    if (f === undefined) {
      issues.push(new FieldIssue({ field: nameOf(key), error: `unknown field of ${entity.name}` }))
      continue
    }
    if (value === undefined) continue
    if (f.generated || f.primary) {
      issues.push(new FieldIssue({ field: nameOf(key), error: "is set by the daemon" }))
      continue
    }
    if (mode === "update" && f.immutable) {
      issues.push(new FieldIssue({ field: nameOf(key), error: "cannot be changed" }))
      continue
    }
    const checked = checkValue(f, value)
    if (Either.isLeft(checked)) issues.push(new FieldIssue({ field: nameOf(key), error: checked.left }))
    else values.set(f, checked.right)
  }
  if (mode === "create") {
    for (const a of compile(entity).absent) {
      if (values.has(a.f)) continue
      if (a.kind === "default") values.set(a.f, defaultValue(a.value))
      else if (a.kind === "defaultFn") values.set(a.f, generate(a.f.defaultFn!))
      else if (!issues.some((i) => i.field === nameOf(a.f.name)))
        issues.push(new FieldIssue({ field: nameOf(a.f.name), error: "is required" }))
    }
  } else if (values.size === 0 && issues.length === 0) {
    issues.push(new FieldIssue({ field: at, error: "must set at least one field" }))
  }
  return issues.length > 0 ? Either.left(issues) : Either.right(values)
}

export const validateCreate = (entity: EntityDef, data: unknown, at = "data"): Either.Either<Values, ValidationFailed> =>
  Either.mapLeft(collect(entity, data, at, "create"), (fields) => new ValidationFailed({ fields }))

export const validateUpdate = (entity: EntityDef, data: unknown, at = "data"): Either.Either<Values, ValidationFailed> =>
  Either.mapLeft(collect(entity, data, at, "update"), (fields) => new ValidationFailed({ fields }))

/** Validates many records, reporting issues as `data[i].field`. */
export const validateCreateMany = (entity: EntityDef, items: ReadonlyArray<unknown>): Either.Either<Array<Values>, ValidationFailed> => {
  const out: Array<Values> = []
  const issues: Array<FieldIssue> = []
  items.forEach((item, i) => {
    const r = collect(entity, item, `data[${i}]`, "create")
    if (Either.isLeft(r)) issues.push(...r.left)
    else out.push(r.right)
  })
  return issues.length > 0 ? Either.left(new ValidationFailed({ fields: issues.slice(0, 100) })) : Either.right(out)
}
