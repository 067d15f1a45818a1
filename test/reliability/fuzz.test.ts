/**
 * Fuzzing (reliability suite). Frames generated with fast-check: ids, methods, params, entity and
 * field names, filters, sorts, paging, values, nesting, sizes and encodings, in two places:
 *
 * 1. In-process: frames through the real RpcHandler on SQLite (no socket), with shrinking of a
 *    failing frame.
 * 2. Wire: raw frames to the real daemon process over real WebSockets, pipelined up to the
 *    per-connection in-flight limit: valid and invalid JSON, truncated JSON, duplicate and
 *    `__proto__` keys, escaped keys, numbers such as 1e999, binary frames, fragmented frames,
 *    invalid UTF-8, frames around and beyond `server.max_payload`, and WebSocket protocol
 *    violations written straight to the socket.
 *
 * The oracle: every frame gets exactly one answer, within ANSWER_BOUND_MS, that is a JSON object
 * `{id, result}` or `{id, error}` with a documented code (never 500), the documented message and
 * details, the id the protocol promises (the frame's own when it is JSON with a usable id, else
 * null), and no stack trace, SQL, driver error or file path; or — only for the frames that close
 * the connection — a close with the code for it, after which the fuzzer reconnects and goes on:
 * 1009 for a frame over 4 × max_payload (docs/operations.md, "Limits"), and RFC 6455's 1007 for a text frame
 * that is not UTF-8 and 1002 for a protocol violation (the `ws` server's own closes). No unhandled
 * rejection in the test process; after the wire run the
 * daemon is alive, /health answers 200 and its output holds no stack trace or unhandled error.
 *
 * Counts: `scale(5000, 100_000)` in-process and `scale(1000, 20_000)` wire frames
 * (DBAL_RELIABILITY=long for the long run). FUZZ_FRAMES, FUZZ_WIRE_FRAMES and FUZZ_SEED override;
 * the seed is printed with the figures, so that a failing run can be replayed.
 */
import fc from "fast-check"
import type { ManagedRuntime } from "effect"
import { isUtf8 } from "node:buffer"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Socket } from "node:net"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RpcHandler } from "../../src/rpc/Handler.js"
import { type Method, Methods } from "../../src/rpc/Protocol.js"
import { connect, type Daemon, health, openSocket, root, startDaemon } from "../support/daemon.js"
import { startInProcess } from "../support/inprocess.js"
import { createDatabase, daemonConfig, serviceAuth, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { report, scale } from "./figures.js"

const FRAMES = Number(process.env.FUZZ_FRAMES ?? scale(5000, 100_000))
const WIRE_FRAMES = Number(process.env.FUZZ_WIRE_FRAMES ?? scale(1000, 20_000))
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
/** `performance.query_timeout` of both daemons: a slow request is answered 504 well before the bound below. */
const QUERY_TIMEOUT_MS = 10_000
/** Every frame is answered (or its close comes) within this; past it the frame counts as a hang. */
const ANSWER_BOUND_MS = 30_000
/** The wire daemon's `server.max_payload` (small, so that frames beyond 4× it are cheap to send). */
const MAX_PAYLOAD = 65_536
const HARD_LIMIT = 4 * MAX_PAYLOAD
const MAX_IN_FLIGHT = 8
const CONNECTIONS = 3
/** Wire frames are generated (and the second principal renewed) this many at a time. */
const WIRE_CHUNK = 250

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/** The documented codes and their messages (docs/protocol.md, "Errors"; src/Errors.ts). 500 is a bug. */
const MESSAGES: ReadonlyMap<number, string> = new Map([
  [400, "Bad request"],
  [401, "Authentication required"],
  [403, "Access forbidden"],
  [404, "Resource not found"],
  [409, "Resource conflict"],
  [422, "Validation failed"],
  [429, "Rate limit exceeded"],
  [501, "Feature not supported"],
  [503, "Database unavailable"],
  [504, "Operation timeout"]
])
const REASON_CODES = new Set([400, 401, 403, 503])

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
/** What an answer must never contain: stack frames, file paths, SQL, driver and engine errors. */
const LEAK = new RegExp(
  [
    String.raw`\bat \S+ \(`,
    String.raw`\.(?:ts|js|mjs|cjs):\d+`,
    "node_modules",
    escapeRe(root),
    String.raw`\bSQLITE_[A-Z]`,
    String.raw`\bSELECT\s.*\bFROM\b`,
    String.raw`\bINSERT\s+INTO\b`,
    String.raw`\bDELETE\s+FROM\b`,
    String.raw`\bUPDATE\s+\S+\s+SET\b`,
    "syntax error",
    String.raw`\b(?:TypeError|RangeError|ReferenceError|SyntaxError)\b`,
    "Maximum call stack"
  ].join("|")
)

const isObject = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)
const clip = (s: string, n = 400) => (s.length <= n ? s : `${s.slice(0, n)}… (${s.length} characters)`)
const show = (s: string) => JSON.stringify(clip(s))
const round1 = (x: number) => Math.round(x * 10) / 10
/** CPU seconds this process has used since `before`. */
const cpuSince = (before: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(before)
  return round1((used.user + used.system) / 1e6)
}

/** An answer whose id may be the frame's or null: ids in the zone where "≤ 256 characters" can be read two ways. */
const ANY_ID: unique symbol = Symbol("any id")
type ExpectedId = string | number | null | typeof ANY_ID

/** The id the protocol promises for a frame (docs/protocol.md, "Frames"): its own when usable, else null. */
const expectedId = (text: string): ExpectedId => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return null
  }
  if (!isObject(raw)) return null
  const id = raw.id
  if (typeof id === "number") return Number.isFinite(id) ? id : null
  if (typeof id !== "string") return null
  if (id.length <= 256) return id
  // 257+ UTF-16 units but at most 256 code points: either reading of the limit is acceptable.
  return [...id].length <= 256 ? ANY_ID : null
}

type Code = number | "ok"
interface Checked {
  readonly code: Code
  readonly problem?: string
}

/** Checks one answer against the protocol; `problem` says what is wrong with it. */
const checkAnswer = (text: string, expect: ExpectedId): Checked => {
  let a: unknown
  try {
    a = JSON.parse(text)
  } catch {
    return { code: -1, problem: "the answer is not JSON" }
  }
  if (!isObject(a)) return { code: -1, problem: "the answer is not a JSON object" }
  const keys = Object.keys(a).sort().join(",")
  if (keys !== "id,result" && keys !== "error,id") return { code: -1, problem: `the answer has the keys [${keys}]` }
  if (expect !== ANY_ID && a.id !== expect)
    return { code: -1, problem: `the answer's id is ${JSON.stringify(a.id)}, expected ${JSON.stringify(expect)}` }
  if (expect === ANY_ID && a.id !== null && typeof a.id !== "string")
    return { code: -1, problem: `the answer's id is ${JSON.stringify(a.id)}` }
  if (keys === "id,result") return { code: "ok" }
  const e = a.error
  if (!isObject(e)) return { code: -1, problem: "error is not an object" }
  const code = e.code
  if (typeof code !== "number") return { code: -1, problem: "error.code is not a number" }
  if (!MESSAGES.has(code)) return { code, problem: `undocumented error code ${code}` }
  if (e.message !== MESSAGES.get(code)) return { code, problem: `message ${JSON.stringify(e.message)} for code ${code}` }
  const details = e.details
  if (details !== undefined && !isObject(details)) return { code, problem: "details is not an object" }
  if (REASON_CODES.has(code) && typeof details?.reason !== "string") return { code, problem: `code ${code} without details.reason` }
  if (code === 422) {
    const fields = details?.fields
    const ok =
      Array.isArray(fields) &&
      fields.length > 0 &&
      fields.every((f) => isObject(f) && typeof f.field === "string" && typeof f.error === "string")
    if (!ok) return { code, problem: "422 without details.fields [{field, error}]" }
  }
  if (code === 429 && typeof details?.retryAfter !== "number") return { code, problem: "429 without details.retryAfter" }
  if (code === 504 && typeof details?.timeoutMs !== "number") return { code, problem: "504 without details.timeoutMs" }
  const leak = LEAK.exec(text)
  if (leak !== null) return { code, problem: `the error leaks internals (${JSON.stringify(leak[0])})` }
  return { code }
}

class Tally {
  readonly codes = new Map<number | string, number>()
  add(code: number | string) {
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1)
  }
  get(code: number | string) {
    return this.codes.get(code) ?? 0
  }
  get distinct() {
    return this.codes.size
  }
  toString() {
    return [...this.codes.entries()]
      .sort(([a], [b]) => String(a).localeCompare(String(b)))
      .map(([c, n]) => `${c}:${n}`)
      .join(" ")
  }
}

/** Resolves with the promise's value, or rejects with `what()` after `ms`. */
const within = <A>(ms: number, p: Promise<A>, what: () => string): Promise<A> =>
  new Promise<A>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(what())), ms)
    p.then(
      (v) => {
        clearTimeout(timer)
        ok(v)
      },
      (e: unknown) => {
        clearTimeout(timer)
        fail(e instanceof Error ? e : new Error(String(e)))
      }
    )
  })

// ---------------------------------------------------------------------------------------------
// JSON text with what JSON.stringify cannot write
// ---------------------------------------------------------------------------------------------

/** JSON text inserted as it is: numbers like 1e999, escapes, deep nesting. */
class Raw {
  constructor(readonly text: string) {}
  toString() {
    return clip(this.text, 80)
  }
}
/** An object written with these entries in this order, duplicates and `__proto__` included. */
class Entries {
  constructor(readonly entries: ReadonlyArray<readonly [string, unknown]>) {}
}

/** A key written with every UTF-16 unit as a \uXXXX escape ("id" → "\u0069\u0064"). */
const escapedKey = (k: string) =>
  `"${Array.from({ length: k.length }, (_, i) => `\\u${k.charCodeAt(i).toString(16).padStart(4, "0")}`).join("")}"`

const render = (v: unknown, escapeKeys = false): string => {
  if (v instanceof Raw) return v.text
  if (v instanceof Entries) {
    return `{${v.entries
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${escapeKeys ? escapedKey(k) : JSON.stringify(k)}:${render(x, escapeKeys)}`)
      .join(",")}}`
  }
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : render(x, escapeKeys))).join(",")}]`
  if (v !== null && typeof v === "object") return render(new Entries(Object.entries(v)), escapeKeys)
  return JSON.stringify(v) ?? "null"
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const ENTITY_FIELDS: Readonly<Record<string, ReadonlyArray<string>>> = {
  User: ["id", "username", "email", "role", "createdAt", "updatedAt"],
  Credential: ["id", "username", "passwordHash", "firstLogin", "createdAt", "updatedAt"],
  Session: ["id", "userId", "token", "expiresAt", "createdAt", "lastActivity"],
  PageView: ["id", "slug", "title", "description", "level", "layout", "isActive", "createdAt", "updatedAt"],
  ComponentHierarchy: ["id", "pageId", "parentId", "componentType", "order", "props", "createdAt", "updatedAt"],
  Workflow: ["id", "name", "description", "trigger", "triggerConfig", "steps", "isActive", "createdBy", "createdAt", "updatedAt"],
  LuaScript: ["id", "name", "description", "code", "isSandboxed", "allowedGlobals", "timeoutMs", "createdBy", "createdAt", "updatedAt"],
  Package: [
    "id",
    "name",
    "version",
    "description",
    "author",
    "manifest",
    "isInstalled",
    "installedAt",
    "installedBy",
    "createdAt",
    "updatedAt"
  ]
}
const ENTITIES = Object.keys(ENTITY_FIELDS)
const ALL_FIELDS = [...new Set(Object.values(ENTITY_FIELDS).flat())]
const UNIQUE_FIELDS = ["id", "username", "email", "slug", "name", "token"]
const RELATIONS = ["page", "parent", "user", "creator", "installer"]
const OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "notIn", "contains", "startsWith", "endsWith", "isNull"]
const ODD_OPS = ["like", "ilike", "regex", "$where", "$ne", "EQ", "in ", "__proto__", "constructor", "toString", "AND", "OR", "NOT", ""]
/** Names that are almost right, or are JavaScript's own, or try to reach SQL. */
const ODD_NAMES = [
  "",
  " ",
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "__defineGetter__",
  "ID",
  "Id",
  "id ",
  " id",
  "user.id",
  "users.id",
  '"id"',
  "`id`",
  "[id]",
  "id--",
  "id;",
  "1=1",
  "*",
  "rowid",
  "oid",
  "created_at",
  "password_hash",
  "user",
  "USER",
  "users",
  "User ",
  " User",
  "Us\u0000er",
  "Us\u0435r",
  "User\u0301",
  "User\u200b",
  "\u202eUser",
  "ｕｓｅｒ",
  "İd",
  "i\u0307d",
  "🦄",
  "a".repeat(300),
  "User; DROP TABLE users",
  "sqlite_master",
  "information_schema.tables"
]
/** Encodings: NUL, lone and reversed surrogates, RTL, combining and zero-width characters, BOM, noncharacters, SQL and template bits. */
const ENCODINGS = [
  "\u0000",
  "a\u0000b",
  "\uD800",
  "\uDFFF",
  "a\uD83D",
  "\uDE00\uD83D",
  "\uD83D\uDE00",
  "\u202E",
  "\u200F\u05D0\u05D1",
  "\u061C",
  "e\u0301",
  "\u0301",
  "Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357",
  "👨‍👩‍👧‍👦",
  "\uFEFF",
  "\uFFFE\uFFFF",
  "\u{10FFFF}",
  "\u0085",
  "\u2028\u2029",
  "\r\n",
  "\t",
  "\u001B[31m",
  "ｕｓｅｒ",
  "Us\u0435r",
  "İ",
  "ß",
  "ﬃ",
  "%",
  "_",
  "\\",
  '"',
  "'",
  "' OR '1'='1",
  "'; DROP TABLE users; --",
  "%' --",
  "\\' OR 1=1 --",
  "$1",
  "?",
  ":name",
  "${x}",
  "{{x}}",
  "<script>",
  "../../etc/passwd",
  "1e309",
  "NaN",
  "Infinity",
  "-0",
  "true",
  "null",
  "[]",
  "{}",
  "00000000-0000-4000-8000-000000000000",
  "00000000-0000-0000-0000-000000000000",
  "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF",
  "{00000000-0000-4000-8000-000000000000}",
  "2024-02-30T00:00:00Z",
  "0000-01-01T00:00:00Z",
  "9999-12-31T23:59:59.999+14:00",
  "2024-01-01",
  "2024-01-01T00:00:00",
  "2024-01-01T00:00:00+25:00",
  "__proto__",
  "constructor",
  "a@b",
  "@example.com",
  "x@example.com\u0000"
]
/** JSON numbers and strings that JSON.stringify cannot write: out of range, -0, big integers, escapes. */
const RAW_NUMBERS = [
  "1e999",
  "-1e999",
  "1E+400",
  "-0",
  "0e0",
  "1e-400",
  "-0.0",
  "1.0",
  "0.1e1",
  "123456789012345678901234567890",
  "-9007199254740993",
  "2147483648",
  "-2147483649",
  "4294967296",
  "1.7976931348623157e308"
]
const RAW_STRINGS = [
  String.raw`"\u0000"`,
  String.raw`"\ud800"`,
  String.raw`"\udfff\ud800"`,
  String.raw`"\ud83d\ude00"`,
  String.raw`"\u00c0\u0080"`,
  String.raw`"\u00e0\u0080\u00af"`,
  String.raw`"\u0041\u030a"`,
  String.raw`"\/"`,
  String.raw`"\b\f\n\r\t"`,
  String.raw`"\u202e"`,
  String.raw`"\ufeff"`,
  String.raw`"\uffff"`,
  String.raw`"\u0075\u0073\u0065\u0072"`,
  String.raw`"\ud800\u0000\udbff\udfff"`,
  String.raw`"\u0000\u0000"`
]
/** Escapes and string literals that are not JSON (the frame is then "not valid JSON"). */
const BAD_ESCAPES = [
  String.raw`\U0001F600`,
  String.raw`\x41`,
  String.raw`\u12`,
  String.raw`\'`,
  "\u0001",
  "\n",
  "'single'",
  '\\"',
  '"unterminated'
]
/**
 * Lengths near the limits (username 50, strings 255, ids 256, tokens 4096) and beyond; the frame
 * limits themselves (64 KiB here, 1 MiB by default) are the wire part's. `MEGA` adds, rarely, a
 * string of 1 MiB + 1 (in-process only: on the wire it is a frame over 4 × max_payload).
 */
const SIZES = [49, 50, 51, 255, 256, 257, 4095, 4096, 4097, 20_000]
const MEGA = 1_048_577
/** Nesting depths: around the filter limit (16) and the JSON field limit (64), and past where recursion overflows the stack. */
const DEPTHS = [15, 16, 17, 63, 64, 65, 100, 1000, 10_000]
const MEGA_DEPTH = 100_000

/** Placeholder id replaced by a unique tag when a frame goes over the wire (same length as the tag). */
const PLACEHOLDER = "\u0001fz########"
const PLACEHOLDER_JSON = JSON.stringify(PLACEHOLDER)
const tagOf = (n: number) => `\u0001fz${String(n).padStart(8, "0")}`

/** Records the fuzzer knows exist (seeded, and harvested from answers): targets for reads and references. */
const known = {
  ids: [] as Array<string>,
  usernames: [] as Array<string>,
  sessionAuth: undefined as { token: string; user_id: string } | undefined
}
const ZERO_ID = "00000000-0000-4000-8000-000000000000"
const remember = (id: string) => {
  if (known.ids.length >= 500) known.ids.splice(1, 1) // keep the seeded ones in front
  known.ids.push(id)
}

interface GenOpts {
  /** Whether the rare 1 MiB strings and 100,000-deep nestings are generated. */
  readonly mega: boolean
  /** Weight of the placeholder id (tagged on the wire) among the ids. */
  readonly tagWeight: number
}

const makeGenerators = (o: GenOpts) => {
  const knownId = fc.nat().map((i) => known.ids[i % Math.max(1, known.ids.length)] ?? ZERO_ID)
  const knownUsername = fc.nat().map((i) => known.usernames[i % Math.max(1, known.usernames.length)] ?? "nobody")
  const big = fc.oneof(
    {
      weight: 20,
      arbitrary: fc
        .tuple(fc.constantFrom(...SIZES), fc.constantFrom("a", "é", "🦄", "\u0000", "\uD800", "e\u0301", "%", "\u202E"))
        .map(([n, c]) => c.repeat(Math.max(1, Math.ceil(n / c.length))))
    },
    { weight: o.mega ? 1 : 0, arbitrary: fc.constant("a".repeat(MEGA)) }
  )
  const depth = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom(...DEPTHS) },
    { weight: o.mega ? 1 : 0, arbitrary: fc.constant(MEGA_DEPTH) }
  )
  const deep = fc.tuple(depth, fc.constantFrom("array", "object", "AND", "OR", "NOT", "mixed")).map(([d, kind]) => {
    switch (kind) {
      case "array":
        return new Raw("[".repeat(d) + "]".repeat(d))
      case "object":
        return new Raw('{"a":'.repeat(d) + "1" + "}".repeat(d))
      case "AND":
      case "OR":
        return new Raw(`{"${kind}":[`.repeat(d) + '{"username":"x"}' + "]}".repeat(d))
      case "NOT":
        return new Raw('{"NOT":'.repeat(d) + '{"username":"x"}' + "}".repeat(d))
      default:
        return new Raw('[{"a":'.repeat(d) + "null" + "}]".repeat(d))
    }
  })
  const text = fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength: 24 }) },
    { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }) },
    { weight: 2, arbitrary: fc.string16bits({ maxLength: 12 }) },
    { weight: 3, arbitrary: fc.constantFrom(...ENCODINGS) },
    { weight: 2, arbitrary: fc.tuple(fc.stringMatching(/^[a-z0-9_]{3,12}$/), fc.constantFrom(...ENCODINGS)).map(([a, b]) => a + b) }
  )
  const datetime = fc
    .date({ min: new Date(-1e14), max: new Date(3e14) })
    .map((d) => (Number.isNaN(d.getTime()) ? "Invalid Date" : d.toISOString()))
  const rawNumber = fc.constantFrom(...RAW_NUMBERS).map((t) => new Raw(t))
  const rawString = fc.constantFrom(...RAW_STRINGS).map((t) => new Raw(t))
  const scalar: fc.Arbitrary<unknown> = fc.oneof(
    { weight: 5, arbitrary: text },
    { weight: 2, arbitrary: fc.integer() },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        0,
        1,
        -1,
        5,
        6,
        99,
        100,
        101,
        2 ** 31 - 1,
        2 ** 31,
        -(2 ** 31) - 1,
        Number.MAX_SAFE_INTEGER,
        2 ** 53 + 2,
        1e308,
        5e-324
      )
    },
    { weight: 1, arbitrary: fc.double() },
    { weight: 1, arbitrary: fc.boolean() },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: knownId },
    { weight: 1, arbitrary: datetime },
    { weight: 1, arbitrary: rawNumber },
    { weight: 1, arbitrary: rawString }
  )
  const heavy: fc.Arbitrary<unknown> = fc.oneof(big, deep)
  const anyField = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...ALL_FIELDS) },
    { weight: 2, arbitrary: fc.constantFrom(...ODD_NAMES) },
    { weight: 1, arbitrary: fc.constantFrom("AND", "OR", "NOT") },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }
  )
  /** `__proto__` and `constructor` entries meant to pollute a prototype. */
  const polluting = (inner: fc.Arbitrary<unknown>) =>
    fc
      .tuple(
        fc.constantFrom("__proto__", "constructor", "prototype"),
        fc.dictionary(fc.constantFrom(...ALL_FIELDS, "prototype", "isAdmin"), inner, { maxKeys: 3 }),
        fc.array(fc.tuple(anyField, inner), { maxLength: 3 })
      )
      .map(([k, v, rest]) => new Entries([...rest, [k, v]]))
  const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      { weight: 8, arbitrary: scalar },
      { weight: 2, arbitrary: fc.array(tie("v"), { maxLength: 4 }) },
      { weight: 2, arbitrary: fc.dictionary(anyField, tie("v"), { maxKeys: 4 }) },
      { weight: 1, arbitrary: polluting(tie("v")) }
    )
  })).v
  const valueOrHeavy = fc.oneof({ weight: 60, arbitrary: value }, { weight: 1, arbitrary: heavy })

  const fieldsOf = (entity: string) =>
    fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...(ENTITY_FIELDS[entity] ?? ALL_FIELDS)) }, { weight: 1, arbitrary: anyField })

  const filterFor = (field: fc.Arbitrary<string>): fc.Arbitrary<unknown> => {
    const operand = fc.oneof(
      { weight: 4, arbitrary: scalar },
      { weight: 2, arbitrary: fc.array(scalar, { maxLength: 5 }) },
      { weight: 1, arbitrary: valueOrHeavy }
    )
    const condition = fc.oneof(
      { weight: 3, arbitrary: scalar },
      {
        weight: 4,
        arbitrary: fc.dictionary(
          fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...OPS) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_OPS) }),
          operand,
          { maxKeys: 3 }
        )
      },
      { weight: 1, arbitrary: value }
    )
    /** Filters at the documented limits: nesting 16, 500 conditions, 1000 values per list. */
    const atLimits = fc.oneof(
      fc.tuple(fc.constantFrom(999, 1000, 1001), fc.constantFrom("in", "notIn")).map(([n, op]) => ({
        id: { [op]: Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`) }
      })),
      fc.constantFrom(499, 500, 501, 2000).map((n) => ({ AND: Array.from({ length: n }, (_, i) => ({ username: `u${i}` })) })),
      fc.tuple(fc.constantFrom(15, 16, 17, 64), fc.constantFrom("AND", "OR", "NOT")).map(([d, k]) => {
        let f: unknown = { username: { startsWith: "a" } }
        for (let i = 0; i < d; i++) f = k === "NOT" ? { NOT: f } : { [k]: [f] }
        return f
      }),
      deep
    )
    return fc.letrec<{ f: unknown }>((tie) => ({
      f: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        { weight: 8, arbitrary: fc.dictionary(field, condition, { maxKeys: 3 }) },
        { weight: 1, arbitrary: fc.record({ AND: fc.oneof(fc.array(tie("f"), { maxLength: 3 }), tie("f")) }) },
        { weight: 1, arbitrary: fc.record({ OR: fc.array(tie("f"), { maxLength: 3 }) }) },
        { weight: 1, arbitrary: fc.record({ NOT: fc.oneof(tie("f"), fc.array(tie("f"), { maxLength: 2 })) }) },
        { weight: 1, arbitrary: polluting(condition) },
        { weight: 1, arbitrary: value },
        { weight: 1, arbitrary: atLimits }
      )
    })).f
  }

  const username = fc.stringMatching(/^[a-zA-Z0-9_-]{3,20}$/)
  const name = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9 _.-]{0,30}$/), text)
  const json = fc.oneof(
    { weight: 30, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    { weight: 5, arbitrary: value },
    { weight: 1, arbitrary: heavy }
  )
  /** Records close to valid, so that writes get past validation and reach the database. */
  const plausibleWith = (jsonField: fc.Arbitrary<unknown>): Readonly<Record<string, fc.Arbitrary<Record<string, unknown>>>> => ({
    User: username.chain((u) =>
      fc.record(
        {
          username: fc.constant(u),
          email: fc.constantFrom(`${u}@example.com`, `${u}@EXAMPLE.com`, u, `${u}@`, `${u}@example.com\u0000`),
          role: fc.constantFrom("user", "admin", "god", "supergod", "system", "root", "")
        },
        { requiredKeys: ["username", "email"] }
      )
    ),
    Credential: fc.record(
      { username: knownUsername, passwordHash: text, firstLogin: fc.boolean() },
      { requiredKeys: ["username", "passwordHash"] }
    ),
    Session: fc.record({ userId: knownId, token: fc.oneof(fc.uuid(), text), expiresAt: datetime }),
    PageView: fc.record(
      {
        slug: fc.stringMatching(/^[a-z0-9-/]{1,24}$/),
        title: text,
        level: fc.integer({ min: 0, max: 6 }),
        layout: jsonField,
        isActive: fc.boolean(),
        description: text
      },
      { requiredKeys: ["slug", "title", "level", "layout"] }
    ),
    ComponentHierarchy: fc.record(
      { pageId: knownId, parentId: fc.option(knownId), componentType: text, order: fc.integer(), props: jsonField },
      { requiredKeys: ["pageId", "componentType"] }
    ),
    Workflow: fc.record(
      {
        name,
        trigger: fc.constantFrom("manual", "schedule", "event", "webhook", "cron"),
        triggerConfig: jsonField,
        steps: jsonField,
        createdBy: knownId,
        isActive: fc.boolean()
      },
      { requiredKeys: ["name", "trigger", "triggerConfig", "steps", "createdBy"] }
    ),
    LuaScript: fc.record(
      {
        name,
        code: text,
        timeoutMs: fc.integer({ min: 0, max: 40_000 }),
        createdBy: knownId,
        allowedGlobals: jsonField,
        isSandboxed: fc.boolean()
      },
      { requiredKeys: ["name", "code", "createdBy"] }
    ),
    Package: fc.record(
      {
        name,
        version: fc.constantFrom("1.0.0", "0.0.1", "10.20.30", "1.0", "x.y.z", "1.0.0\n"),
        author: text,
        manifest: jsonField,
        isInstalled: fc.boolean(),
        installedBy: knownId,
        installedAt: datetime
      },
      { requiredKeys: ["name", "version", "author", "manifest"] }
    )
  })
  const plausible = plausibleWith(json)
  const plausibleLight = plausibleWith(fc.jsonValue({ maxDepth: 2 }))

  interface Kit {
    readonly entity: fc.Arbitrary<unknown>
    readonly field: fc.Arbitrary<string>
    readonly uniqueField: fc.Arbitrary<string>
    readonly data: fc.Arbitrary<unknown>
    /** Small records, for the batches of a thousand. */
    readonly light: fc.Arbitrary<unknown>
    readonly filter: fc.Arbitrary<unknown>
  }
  const kitFor = (entity: string | undefined): Kit => {
    const field = entity === undefined ? anyField : fieldsOf(entity)
    const fields = entity === undefined ? ALL_FIELDS : (ENTITY_FIELDS[entity] ?? ALL_FIELDS)
    const good = entity === undefined ? undefined : plausible[entity]
    const mutated =
      good === undefined
        ? undefined
        : fc.tuple(good, fc.option(fc.tuple(field, valueOrHeavy), { freq: 3 })).map(([r, m]) => (m === null ? r : { ...r, [m[0]]: m[1] }))
    const generic = fc.dictionary(field, valueOrHeavy, { maxKeys: 6 })
    return {
      entity: entity === undefined ? fc.oneof(fc.constantFrom(...ODD_NAMES), text, scalar) : fc.constant(entity),
      field,
      uniqueField: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...UNIQUE_FIELDS.filter((f) => fields.includes(f))) },
        { weight: 1, arbitrary: field }
      ),
      data:
        mutated === undefined
          ? fc.oneof({ weight: 4, arbitrary: generic }, { weight: 1, arbitrary: polluting(value) }, { weight: 1, arbitrary: value })
          : fc.oneof(
              { weight: 6, arbitrary: mutated },
              { weight: 2, arbitrary: generic },
              { weight: 1, arbitrary: polluting(value) },
              { weight: 1, arbitrary: value }
            ),
      light: (entity === undefined ? undefined : plausibleLight[entity]) ?? fc.dictionary(field, scalar, { maxKeys: 4 }),
      filter: filterFor(field)
    }
  }
  const kits = [...ENTITIES.map((e) => ({ weight: 9, kit: kitFor(e) })), { weight: 2, kit: kitFor(undefined) }]
  const withKit = (build: (k: Kit) => fc.Arbitrary<ReadonlyArray<unknown>>): fc.Arbitrary<ReadonlyArray<unknown>> =>
    fc.oneof(...kits.map(({ weight, kit }) => ({ weight, arbitrary: build(kit) })))

  const recordId = fc.oneof(
    { weight: 5, arbitrary: knownId },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 1, arbitrary: knownId.map((s) => s.toUpperCase()) },
    { weight: 1, arbitrary: fc.constantFrom(ZERO_ID, "", " ", "not-a-uuid", `${ZERO_ID} `, `{${ZERO_ID}}`, ZERO_ID.replace(/-/g, "")) },
    { weight: 2, arbitrary: scalar },
    { weight: 1, arbitrary: heavy }
  )
  const pageNumber = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: -2, max: 150 }) },
    { weight: 2, arbitrary: fc.constantFrom(0, 1, 100, 101, 2 ** 31 - 1, 2 ** 31, 2 ** 53, Number.MAX_VALUE, 1.5, -0) },
    { weight: 1, arbitrary: rawNumber },
    { weight: 1, arbitrary: value }
  )
  const sortFor = (field: fc.Arbitrary<string>) =>
    fc.oneof(
      {
        weight: 5,
        arbitrary: fc.dictionary(
          field,
          fc.oneof(
            { weight: 6, arbitrary: fc.constantFrom("asc", "desc") },
            { weight: 1, arbitrary: fc.constantFrom("ASC", "up", "", "asc; DROP TABLE users", "desc nulls first") },
            { weight: 1, arbitrary: value }
          ),
          { maxKeys: 3 }
        )
      },
      { weight: 1, arbitrary: fc.array(fc.dictionary(field, fc.constantFrom("asc", "desc"), { maxKeys: 2 }), { maxLength: 3 }) },
      { weight: 1, arbitrary: value }
    )
  const include = fc.oneof(
    fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...RELATIONS) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_NAMES) }), {
      maxLength: 3
    }),
    fc.dictionary(fc.constantFrom(...RELATIONS, "__proto__", "nope"), fc.oneof(fc.boolean(), value), { maxKeys: 2 }),
    value
  )
  const listOptions = (k: Kit) =>
    fc
      .tuple(
        fc.record({ filter: k.filter, sort: sortFor(k.field), page: pageNumber, limit: pageNumber, include }, { requiredKeys: [] }),
        // An option that does not exist (a 422), now and then.
        fc.option(fc.tuple(fc.constantFrom("offset", "where", "orderBy", "__proto__", "select"), value), { freq: 10 })
      )
      .map(([options, odd]) => (odd === null ? options : new Entries([...Object.entries(options), odd])))

  const credentials = fc.oneof(
    { weight: 20, arbitrary: fc.constant(serviceAuth) },
    { weight: 6, arbitrary: fc.constant(0).map(() => known.sessionAuth ?? serviceAuth) },
    { weight: 1, arbitrary: fc.record({ token: text, user_id: text }) },
    {
      weight: 2,
      arbitrary: fc.constantFrom<unknown>(
        { token: serviceAuth.token },
        { token: serviceAuth.token, userId: serviceAuth.user_id },
        { token: serviceAuth.token, user_id: "someone-else" },
        { token: serviceAuth.token, user_id: null },
        { token: `${serviceAuth.token}x`, user_id: "tests" },
        { token: serviceAuth.token.toUpperCase(), user_id: "tests" },
        { token: ` ${serviceAuth.token}`, user_id: "tests" },
        { token: `${serviceAuth.token}\u0000`, user_id: "tests" },
        { token: "a".repeat(4097), user_id: "tests" },
        { token: "", user_id: "tests" },
        { token: 12345, user_id: "tests" },
        { token: [serviceAuth.token], user_id: "tests" },
        new Entries([
          ["token", "wrong"],
          ["token", serviceAuth.token],
          ["user_id", "tests"]
        ]),
        new Entries([["__proto__", { token: serviceAuth.token, user_id: "tests" }]]),
        "Bearer test",
        []
      )
    },
    { weight: 1, arbitrary: value }
  )
  const auth = fc.oneof({ weight: 12, arbitrary: credentials }, { weight: 1, arbitrary: fc.constant(undefined) })

  /** Params shaped like each method's, with a share of wrong arities. */
  const typed = new Map<Method, fc.Arbitrary<ReadonlyArray<unknown>>>()
  const paramsOf = (m: Method): fc.Arbitrary<ReadonlyArray<unknown>> => {
    const cached = typed.get(m)
    if (cached !== undefined) return cached
    const built = ((): fc.Arbitrary<ReadonlyArray<unknown>> => {
      switch (m) {
        case "authenticate":
          return fc.oneof(
            credentials.map((c) => [c]),
            fc.array(value, { maxLength: 2 })
          )
        case "getCapabilities":
        case "getSchema":
          return fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(value, { maxLength: 2 }) })
        case "create":
          return withKit((k) => fc.tuple(k.entity, k.data))
        case "read":
        case "delete":
          return withKit((k) => fc.tuple(k.entity, recordId))
        case "update":
          return withKit((k) => fc.tuple(k.entity, recordId, k.data))
        case "list":
          return withKit((k) => fc.oneof(fc.tuple(k.entity), fc.tuple(k.entity, listOptions(k))))
        case "findFirst":
        case "count":
          return withKit((k) => fc.oneof(fc.tuple(k.entity), fc.tuple(k.entity, k.filter)))
        case "findByField":
        case "deleteByField":
          return withKit((k) => fc.tuple(k.entity, k.uniqueField, fc.oneof(recordId, knownUsername, scalar)))
        case "upsert":
          return withKit((k) => fc.tuple(k.entity, k.uniqueField, fc.oneof(knownUsername, scalar), k.data, k.data))
        case "updateByField":
          return withKit((k) => fc.tuple(k.entity, k.uniqueField, fc.oneof(recordId, knownUsername, scalar), k.data))
        case "createMany":
          return withKit((k) =>
            fc.tuple(
              k.entity,
              fc.oneof(
                { weight: 30, arbitrary: fc.array(k.data, { maxLength: 4 }) },
                {
                  weight: 1,
                  arbitrary: fc.tuple(fc.constantFrom(999, 1000, 1001), k.light).map(([n, d]) => Array.from({ length: n }, () => d))
                },
                { weight: 3, arbitrary: value }
              )
            )
          )
        case "updateMany":
          return withKit((k) => fc.tuple(k.entity, k.filter, k.data))
        case "deleteMany":
          return withKit((k) => fc.tuple(k.entity, k.filter))
        case "subscribe":
          return withKit((k) => fc.oneof(fc.tuple(k.entity), fc.tuple(k.entity, fc.record({ filter: k.filter }, { requiredKeys: [] }))))
        case "unsubscribe":
          return fc.tuple(fc.oneof(fc.uuid(), value))
        case "transaction": {
          const op = fc.oneof(
            {
              weight: 8,
              arbitrary: fc
                .constantFrom(...Methods.filter((x) => x !== "transaction" && x !== "authenticate"))
                .chain((x) => paramsOf(x).map((params) => ({ method: x, params })))
            },
            {
              weight: 1,
              arbitrary: fc.constantFrom<unknown>(
                { method: "transaction", params: [[]] },
                { method: "authenticate", params: [serviceAuth] },
                { method: "count" },
                { params: ["User"] }
              )
            },
            { weight: 1, arbitrary: value }
          )
          return fc.oneof(
            { weight: 8, arbitrary: fc.array(op, { maxLength: 4 }).map((ops) => [ops]) },
            {
              weight: 1,
              arbitrary: fc.constantFrom(0, 100, 101).map((n) => [Array.from({ length: n }, () => ({ method: "count", params: ["User"] }))])
            },
            { weight: 1, arbitrary: fc.array(value, { maxLength: 2 }) }
          )
        }
      }
    })()
    const withArity = fc.oneof(
      { weight: 24, arbitrary: built },
      { weight: 1, arbitrary: fc.tuple(built, value).map(([p, extra]) => [...p, extra]) },
      { weight: 1, arbitrary: built.map((p) => p.slice(0, -1)) }
    )
    typed.set(m, withArity)
    return withArity
  }

  const id = fc.oneof(
    { weight: o.tagWeight, arbitrary: fc.constant(PLACEHOLDER) },
    { weight: 10, arbitrary: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.uuid()) },
    {
      weight: 1,
      arbitrary: fc.oneof(
        fc.constantFrom(
          0,
          -0,
          -1,
          1.5,
          2 ** 53,
          Number.MAX_VALUE,
          "",
          " ",
          "null",
          "a".repeat(256),
          "a".repeat(257),
          "🦄".repeat(129),
          "🦄".repeat(256),
          "🦄".repeat(257),
          "\uD800",
          "\u0000"
        ),
        fc.string({ minLength: 250, maxLength: 300 }),
        fc.string16bits({ maxLength: 8 }),
        fc.double(),
        fc.constant(null),
        fc.boolean(),
        fc.object(),
        fc.array(fc.integer(), { maxLength: 2 }),
        rawNumber,
        rawString
      )
    }
  )
  const method = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom(...Methods) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<unknown>(
        "CREATE",
        "Create",
        "create ",
        "__proto__",
        "constructor",
        "toString",
        "hasOwnProperty",
        "",
        null,
        1,
        ["create"],
        { name: "create" }
      )
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }
  )
  const callOf = fc.oneof(
    { weight: 14, arbitrary: fc.constantFrom(...Methods).chain((m) => paramsOf(m).map((p) => [m, p] as const)) },
    { weight: 1, arbitrary: fc.tuple(method, fc.oneof(fc.array(value, { maxLength: 6 }), value, fc.constant(undefined))) }
  )
  /** Extra top-level entries: unknown keys, duplicates of id/method/params, `__proto__`. */
  const extraEntries = fc.array(
    fc.oneof(
      fc.tuple(fc.constantFrom("extra", "jsonrpc", "result", "error", "ID", "Method"), value),
      fc.tuple(
        fc.constant("__proto__"),
        fc.oneof(fc.constant<unknown>({ id: "polluted", method: "count", params: ["User"], auth: serviceAuth }), value)
      ),
      fc.tuple(fc.constant("id"), id),
      fc.tuple(fc.constant("method"), method),
      fc.tuple(fc.constant("params"), value),
      fc.tuple(fc.constant("auth"), credentials)
    ),
    { maxLength: 2 }
  )
  const request = fc
    .record({
      id,
      call: callOf,
      auth,
      extras: fc.oneof({ weight: 6, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extraEntries }),
      escapeKeys: fc.nat(5).map((n) => n === 0),
      order: fc.nat(3),
      extrasFirst: fc.boolean(),
      omitParams: fc.nat(40)
    })
    .map(({ id: i, call: [m, p], auth: a, extras, escapeKeys, order, extrasFirst, omitParams }) => {
      const base: Array<readonly [string, unknown]> = [
        ["id", i],
        ["method", m],
        ["params", omitParams === 0 ? undefined : omitParams === 1 ? null : p],
        ["auth", a]
      ]
      const rotated = [...base.slice(order), ...base.slice(0, order)]
      const entries = extrasFirst ? [...extras, ...rotated] : [...rotated, ...extras]
      return render(new Entries(entries), escapeKeys)
    })

  /** Text-level damage: truncation, a flipped or inserted character, wrapping, BOM, trailing garbage. */
  const damage = fc.oneof(
    fc.nat().map((at) => ({ op: "truncate" as const, at, s: "" })),
    fc
      .tuple(
        fc.nat(),
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 1 }),
          fc.constantFrom(
            "\u0000",
            "\uD800",
            ",",
            "}",
            "]",
            '"',
            "\\",
            "\u00A0",
            "\uFEFF",
            "//x\n",
            "/*x*/",
            "NaN",
            "undefined",
            "'",
            ...BAD_ESCAPES
          )
        )
      )
      .map(([at, s]) => ({ op: "insert" as const, at, s })),
    fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 1 })).map(([at, s]) => ({ op: "replace" as const, at, s })),
    fc.constantFrom("wrap", "twice", "concat", "bom", "trailing", "garbage", "whitespace").map((op) => ({ op, at: 0, s: "" }))
  )
  const applyDamage = (t: string, d: { op: string; at: number; s: string }): string => {
    const at = t.length === 0 ? 0 : d.at % t.length
    switch (d.op) {
      case "truncate":
        return t.slice(0, at)
      case "insert":
        return t.slice(0, at) + d.s + t.slice(at)
      case "replace":
        return t.slice(0, at) + d.s + t.slice(at + 1)
      case "wrap":
        return `[${t}]`
      case "twice":
        return `[${t},${t}]`
      case "concat":
        return t + t
      case "bom":
        return `\uFEFF${t}`
      case "trailing":
        return `${t} \r\n\t`
      case "garbage":
        return `${t}x`
      default:
        return ` \n\t${t.replace(/,/g, " ,\n ")}\r\n`
    }
  }
  const frame: fc.Arbitrary<string> = fc.oneof(
    { weight: 30, arbitrary: request },
    { weight: 4, arbitrary: fc.tuple(request, damage).map(([t, d]) => applyDamage(t, d)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: value.map((v) => render(v)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "",
        " ",
        "null",
        "[]",
        "{}",
        "[{}]",
        '"x"',
        "1e999",
        "-0",
        "true",
        '{"id":null}',
        '{"id":1}',
        '{"id":1,"method":"count"}',
        '{"id":1,"method":"count","params":{}}',
        '{"id":1,"method":"count","params":"User"}',
        '{"id":1e999,"method":"count","params":["User"]}',
        '{"id":1,"id":2}',
        '{"__proto__":{"id":1}}',
        '{"constructor":{"prototype":{"id":1}}}',
        "{'id':1}",
        "{id:1}",
        '{"id":01}',
        '{"id":0x10}',
        '{"id":.5}',
        '{"id":1,}',
        "[1,]",
        '{"id":"\\u0000"}',
        '{"id":"\\ud800"}',
        '{"id":1}\u0000',
        '\u0000{"id":1}'
      )
    },
    { weight: 1, arbitrary: deep.map((r) => r.text) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(...BAD_ESCAPES)
        .map((e) => `{"id":"bad-escape","method":"count","params":["User",{"username":"${e}"}],"auth":${JSON.stringify(serviceAuth)}}`)
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(deep, fc.constantFrom("params", "id", "auth", "method"))
        .map(([r, k]) => `{"id":1,"method":"count","params":["User"],"auth":${JSON.stringify(serviceAuth)},"${k}":${r.text}}`)
    }
  )
  return { frame, request, value, scalar, text, knownId }
}

/** A request as the service, or with other credentials, answered as `{result}` or `{error}`. */
type Caller = (
  method: string,
  params: ReadonlyArray<unknown>,
  auth?: Record<string, unknown>
) => Promise<{ readonly result?: unknown; readonly error?: unknown }>

/** Seeds the targets of the generated frames (a user and a page) and the second principal. */
const seed = async (call: Caller, prefix: string): Promise<void> => {
  const created = async (entity: string, data: Record<string, unknown>) => {
    const a = await call("create", [entity, data])
    if (!isObject(a.result) || typeof a.result.id !== "string") throw new Error(`seeding ${entity}: ${JSON.stringify(a)}`)
    return a.result.id
  }
  const user = await created("User", { username: `${prefix}_seed`, email: `${prefix}_seed@example.com` })
  const page = await created("PageView", { slug: `${prefix}-seed`, title: "Seed", level: 1, layout: {} })
  known.ids.splice(0, known.ids.length, user, page)
  known.usernames.splice(0, known.usernames.length, `${prefix}_seed`)
  known.sessionAuth = undefined
  await ensurePrincipal(call, prefix)
}

let principals = 0
/**
 * The second principal: a user (role user) with a session, kept out of the targets. The fuzzed
 * writes of the service may still delete or expire it (deleteMany, updateMany on Session or User):
 * this makes a new one when its session no longer authenticates.
 */
const ensurePrincipal = async (call: Caller, prefix: string): Promise<void> => {
  if (known.sessionAuth !== undefined && (await call("count", ["User"], known.sessionAuth)).error === undefined) return
  principals++
  const name = `${prefix}_principal_${SEED}_${principals}`
  const user = await call("create", ["User", { username: name, email: `${name}@example.com` }])
  const userId = isObject(user.result) ? user.result.id : undefined
  const token = `${prefix}-session-${SEED}-${principals}-0123456789abcdef`
  const session = await call("create", ["Session", { userId, token, expiresAt: new Date(Date.now() + 86_400_000).toISOString() }])
  if (typeof userId !== "string" || session.error !== undefined)
    throw new Error(`no principal: ${JSON.stringify(user)} ${JSON.stringify(session)}`)
  known.sessionAuth = { token, user_id: userId }
}

// ---------------------------------------------------------------------------------------------
// The wire part's daemon process starts first, while the in-process part runs (it takes seconds)
// ---------------------------------------------------------------------------------------------

let wireDaemon: Promise<{ readonly db: TestDatabase; readonly daemon: Daemon; readonly auditFile: string }> | undefined

beforeAll(() => {
  wireDaemon = (async () => {
    const db = await createDatabase("sqlite")
    const base = daemonConfig(db)
    const auditFile = path.join(tempDir("fuzz-audit"), "audit.log")
    // Unlike the in-process part, with the result cache and the audit log (not fsynced: the
    // fuzzer wants their code paths, not durability), so that the generated input goes through them.
    const config = {
      ...base,
      server: { host: "127.0.0.1", port: 0, max_payload: MAX_PAYLOAD, max_in_flight: MAX_IN_FLIGHT },
      performance: { query_timeout: QUERY_TIMEOUT_MS, cache_enabled: true },
      security: {
        ...(base.security as Record<string, unknown>),
        audit_log: true,
        audit_log_path: auditFile,
        audit: { fsync: false },
        auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }], failed_auth: { burst: 1_000_000, per_minute: 1_000_000 } }
      }
    }
    try {
      return { db, auditFile, daemon: await startDaemon([`--config=${writeConfig(config)}`], { timeoutMs: 120_000 }) }
    } catch (e) {
      await db.drop()
      throw e
    }
  })()
  // Awaited (and its failure reported) by the wire part.
  wireDaemon.catch(() => undefined)
})

afterAll(async () => {
  const started = await wireDaemon?.catch(() => undefined)
  await started?.daemon.stop()
  await started?.db.drop()
  if (started !== undefined) fs.rmSync(path.dirname(started.auditFile), { recursive: true, force: true })
})

// ---------------------------------------------------------------------------------------------
// In-process
// ---------------------------------------------------------------------------------------------

describe(`fuzzing in-process: ${FRAMES} generated frames through the RpcHandler`, () => {
  let db: TestDatabase
  let rt: ManagedRuntime.ManagedRuntime<RpcHandler, unknown> | undefined
  let handle: (f: string) => Promise<string>
  const gen = makeGenerators({ mega: true, tagWeight: 1 })

  /** Sends a frame built from an object and returns the parsed answer. */
  const call = async (method: string, params: ReadonlyArray<unknown>, auth: unknown = serviceAuth) =>
    JSON.parse(await handle(JSON.stringify({ id: "setup", method, params, auth }))) as {
      result?: Record<string, unknown>
      error?: { code: number }
    }
  const caller: Caller = (method, params, auth) => call(method, params, auth)

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    // The failed-auth throttle would answer 429 to most frames after a few bad tokens: raise it so
    // that the generated frames reach the later stages.
    const base = daemonConfig(db)
    ;({ runtime: rt, handle } = await startInProcess(
      writeConfig({
        ...base,
        performance: { query_timeout: QUERY_TIMEOUT_MS },
        security: {
          ...(base.security as object),
          auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }], failed_auth: { burst: 1_000_000, per_minute: 1_000_000 } }
        }
      })
    ))
    await seed(caller, "fuzz")
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  it(
    "answers every frame with one structured, documented answer, within the bound",
    async () => {
      const tally = new Tally()
      const unhandled: Array<string> = []
      const onUnhandled = (e: unknown) => unhandled.push(String(e instanceof Error ? e.stack : e))
      process.on("unhandledRejection", onUnhandled)
      process.on("uncaughtExceptionMonitor", onUnhandled)
      let frames = 0
      let answered = 0
      let maxMs = 0
      let handleMs = 0
      let bytes = 0
      const principalsBefore = principals
      const cpuBefore = process.cpuUsage()
      const started = performance.now()
      try {
        await fc.assert(
          fc.asyncProperty(gen.frame, async (f) => {
            // The handler on SQLite can answer in microtasks only: let timers and I/O run now and
            // then (vitest's own messages, the wire daemon's start-up output).
            if (frames % 20 === 0) await new Promise<void>((r) => setImmediate(r))
            frames++
            bytes += f.length
            const t0 = performance.now()
            const text = await within(
              ANSWER_BOUND_MS,
              handle(f),
              () => `no answer within ${ANSWER_BOUND_MS} ms (a hang) for the frame ${show(f)}`
            )
            maxMs = Math.max(maxMs, performance.now() - t0)
            handleMs += performance.now() - t0
            answered++
            const checked = checkAnswer(text, expectedId(f))
            tally.add(checked.code)
            if (checked.problem !== undefined) throw new Error(`${checked.problem}\n  frame:  ${show(f)}\n  answer: ${show(text)}`)
            if (checked.code === 401 && known.sessionAuth !== undefined && f.includes(known.sessionAuth.token))
              await ensurePrincipal(caller, "fuzz")
            const created = /^\{"id":.*?,"result":\{"id":"([0-9a-f-]{36})"/.exec(text)
            if (created?.[1] !== undefined) remember(created[1])
          }),
          { numRuns: FRAMES, seed: SEED }
        )
      } finally {
        process.off("unhandledRejection", onUnhandled)
        process.off("uncaughtExceptionMonitor", onUnhandled)
        const seconds = (performance.now() - started) / 1000
        report("fuzzing", "in-process frames through the RpcHandler", {
          frames,
          answered,
          ok: tally.get("ok"),
          distinct_codes: tally.distinct,
          codes: tally.toString(),
          max_answer_ms: Math.round(maxMs),
          handler_s: Math.round(handleMs / 100) / 10,
          cpu_s: cpuSince(cpuBefore),
          principals_renewed: principals - principalsBefore,
          mb_sent: Math.round(bytes / 1e5) / 10,
          seconds: Math.round(seconds * 10) / 10,
          frames_per_s: Math.round(frames / seconds),
          unhandled: unhandled.length,
          seed: SEED
        })
      }
      expect(unhandled).toEqual([])
      expect(answered).toBe(FRAMES)
      // The generators reach past decoding: some frames were valid, some failed validation.
      expect(tally.get("ok")).toBeGreaterThan(0)
      expect(tally.get(422)).toBeGreaterThan(0)
      expect(tally.get(400)).toBeGreaterThan(0)
    },
    30 * 60_000
  )

  it(
    "a __proto__ or constructor key in the data never sets a field nor pollutes a prototype",
    async () => {
      let runs = 0
      await fc.assert(
        fc.asyncProperty(
          fc.stringMatching(/^[a-z0-9_]{3,20}$/),
          fc.constantFrom("__proto__", "constructor"),
          fc.constantFrom("admin", "supergod"),
          fc.boolean(),
          async (u, key, role, onUpdate) => {
            runs++
            const polluted = key === "__proto__" ? `{"role":"${role}","isAdmin":true}` : `{"prototype":{"role":"${role}"}}`
            let frame = `{"id":"c","method":"create","params":["User",{"username":"p_${u}","email":"p_${u}@example.com",${JSON.stringify(key)}:${polluted}}],"auth":${JSON.stringify(serviceAuth)}}`
            if (onUpdate) {
              // A fresh user (role "user"), then an update that tries to set its role through the key.
              const target = await call("create", ["User", { username: `q_${u}`, email: `q_${u}@example.com` }])
              const id = target.result?.id ?? ZERO_ID
              frame = `{"id":"u","method":"update","params":["User",${JSON.stringify(id)},{"email":"q_${u}@example.org",${JSON.stringify(key)}:${polluted}}],"auth":${JSON.stringify(serviceAuth)}}`
            }
            const text = await within(ANSWER_BOUND_MS, handle(frame), () => `no answer for ${frame}`)
            const checked = checkAnswer(text, onUpdate ? "u" : "c")
            expect(checked.problem, `${frame} → ${text}`).toBeUndefined()
            const result = (JSON.parse(text) as { result?: Record<string, unknown> }).result
            if (result !== undefined) {
              expect(result.role, `${frame} → ${text}`).toBe("user")
              expect(Object.keys(result).sort(), `${frame} → ${text}`).toEqual([
                "createdAt",
                "email",
                "id",
                "role",
                "updatedAt",
                "username"
              ])
            }
          }
        ),
        { numRuns: scale(100, 1000), seed: SEED }
      )
      // Nothing leaked into this process's prototypes either (the in-process handler shares it).
      expect(Object.prototype).not.toHaveProperty("role")
      expect(Object.prototype).not.toHaveProperty("isAdmin")
      report("fuzzing", "in-process __proto__/constructor keys in records", { frames: runs, seed: SEED })
    },
    10 * 60_000
  )

  it("leaves the schema and the defaults intact", async () => {
    const count = await call("count", ["User"])
    expect(typeof count.result).toBe("number")
    const fresh = await call("create", ["User", { username: `after_${SEED}`, email: `after_${SEED}@example.com` }])
    expect(fresh.result?.role).toBe("user")
    expect(Object.keys(fresh.result ?? {}).sort()).toEqual(["createdAt", "email", "id", "role", "updatedAt", "username"])
  })
})

// ---------------------------------------------------------------------------------------------
// Wire
// ---------------------------------------------------------------------------------------------

/** WebSocket protocol violations, written straight to the socket, and the close code each gets. */
const VIOLATIONS = {
  "reserved opcode 0x3": { bytes: () => masked(0x83, Buffer.from("{}")), close: 1002 },
  "reserved control opcode 0xB": { bytes: () => masked(0x8b, Buffer.alloc(0)), close: 1002 },
  "RSV1 without an extension": { bytes: () => masked(0xc1, Buffer.from("{}")), close: 1002 },
  "RSV2 and RSV3": { bytes: () => masked(0xb1, Buffer.from("{}")), close: 1002 },
  "unmasked client frame": { bytes: () => Buffer.from([0x81, 0x02, 0x7b, 0x7d]), close: 1002 },
  "ping over 125 bytes": { bytes: () => masked(0x89, Buffer.alloc(126, 0x61)), close: 1002 },
  "fragmented ping": { bytes: () => masked(0x09, Buffer.from("x")), close: 1002 },
  "continuation without a first fragment": { bytes: () => masked(0x80, Buffer.from("{}")), close: 1002 },
  "a new text frame inside a fragmented one": {
    bytes: () => Buffer.concat([masked(0x01, Buffer.from("{")), masked(0x81, Buffer.from("{}"))]),
    close: 1002
  },
  "close with code 999": { bytes: () => masked(0x88, Buffer.from([0x03, 0xe7])), close: 1002 },
  "close with a 1-byte payload": { bytes: () => masked(0x88, Buffer.from([0x03])), close: 1002 },
  "close reason not UTF-8": { bytes: () => masked(0x88, Buffer.from([0x03, 0xe8, 0xff, 0xfe])), close: 1007 },
  "64-bit length over 2^53": {
    bytes: () => Buffer.from([0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
    close: 1009
  }
} as const
type Violation = keyof typeof VIOLATIONS

/** A client frame (masked, as RFC 6455 requires) with this first byte and payload. */
function masked(first: number, payload: Buffer): Buffer {
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const len = payload.length
  const header = len < 126 ? Buffer.from([first, 0x80 | len]) : Buffer.from([first, 0x80 | 126, len >> 8, len & 0xff])
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!))
  return Buffer.concat([header, key, body])
}

/** Byte sequences that are never valid UTF-8 (overlong, surrogates, past U+10FFFF, stray bytes). */
const INVALID_UTF8 = [
  [0xc0, 0xaf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xff],
  [0xfe],
  [0x80],
  [0xc3],
  [0xe2, 0x82]
]

type WireFrame =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "sized"; readonly bytes: number; readonly fill: string }
  | { readonly kind: "binary"; readonly data: Uint8Array }
  | { readonly kind: "invalid-utf8"; readonly text: string; readonly at: number; readonly seq: ReadonlyArray<number> }
  | { readonly kind: "fragmented"; readonly text: string; readonly cuts: ReadonlyArray<number> }
  | { readonly kind: "violation"; readonly which: Violation }
  | { readonly kind: "huge"; readonly bytes: number; readonly binary: boolean; readonly pieces: number }

/** What a frame must get: an answer with this id, or a close with this code. */
type Expectation = { readonly id: ExpectedId } | { readonly close: number }

interface Prepared {
  readonly kind: WireFrame["kind"]
  readonly label: string
  readonly expect: Expectation
  readonly send: (ws: WebSocket) => void
}

/** The frame's bytes, its placeholder ids replaced by the frame's unique tag. */
const textBytes = (text: string, n: number) => Buffer.from(text.split(PLACEHOLDER_JSON).join(JSON.stringify(tagOf(n))), "utf8")

/** Expectation of a text frame of these bytes, by the documented limits (docs/operations.md) and the protocol's id rule. */
const expectText = (buf: Buffer): Expectation => {
  if (buf.length > HARD_LIMIT) return { close: 1009 }
  if (!isUtf8(buf)) return { close: 1007 }
  if (buf.length > MAX_PAYLOAD) return { id: null }
  return { id: expectedId(buf.toString("utf8")) }
}

const sendText = (buf: Buffer) => (ws: WebSocket) => ws.send(buf, { binary: false })
const rawSocket = (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket

const prepare = (f: WireFrame, n: number): Prepared => {
  switch (f.kind) {
    case "text": {
      const buf = textBytes(f.text, n)
      return { kind: f.kind, label: `text ${show(buf.toString("utf8"))}`, expect: expectText(buf), send: sendText(buf) }
    }
    case "sized": {
      // A count request padded to exactly `bytes` bytes (or as close as the fill character allows).
      const head = `{"id":${JSON.stringify(tagOf(n))},"method":"count","params":["User",{"username":"`
      const tail = `"}],"auth":${JSON.stringify(serviceAuth)}}`
      const room = Math.max(0, f.bytes - Buffer.byteLength(head + tail))
      const unit = Buffer.byteLength(JSON.stringify(f.fill)) - 2
      const reps = Math.floor(room / unit)
      const pad = JSON.stringify(f.fill.repeat(reps)).slice(1, -1) + "a".repeat(room - reps * unit)
      const buf = Buffer.from(head + pad + tail, "utf8")
      return {
        kind: f.kind,
        label: `a count request of ${buf.length} bytes padded with ${JSON.stringify(f.fill)}`,
        expect: expectText(buf),
        send: sendText(buf)
      }
    }
    case "binary": {
      const buf = Buffer.from(f.data)
      return {
        kind: f.kind,
        label: `binary ${buf.length} bytes ${clip(buf.toString("hex"), 80)}`,
        expect: buf.length > HARD_LIMIT ? { close: 1009 } : { id: null },
        send: (ws) => ws.send(buf, { binary: true })
      }
    }
    case "invalid-utf8": {
      const base = textBytes(f.text, n)
      const at = f.at % (base.length + 1)
      const buf = Buffer.concat([base.subarray(0, at), Buffer.from(f.seq), base.subarray(at)])
      return {
        kind: f.kind,
        label: `text with bytes ${Buffer.from(f.seq).toString("hex")} at ${at}: ${show(buf.toString("utf8"))}`,
        expect: expectText(buf),
        send: sendText(buf)
      }
    }
    case "fragmented": {
      const buf = textBytes(f.text, n)
      const cuts = [...new Set(f.cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
      const bounds = [0, ...cuts, buf.length]
      const pieces = bounds.slice(1).map((end, i) => buf.subarray(bounds[i], end))
      return {
        kind: f.kind,
        label: `${pieces.length} fragments (cut at ${cuts.join(",")}) of ${show(buf.toString("utf8"))}`,
        expect: expectText(buf),
        send: (ws) => pieces.forEach((p, i) => ws.send(p, { binary: false, fin: i === pieces.length - 1 }))
      }
    }
    case "violation": {
      const v = VIOLATIONS[f.which]
      return {
        kind: f.kind,
        label: `protocol violation: ${f.which}`,
        expect: { close: v.close },
        send: (ws) => rawSocket(ws).write(v.bytes())
      }
    }
    case "huge": {
      // One frame, or a message of `pieces` fragments of equal size (the first alone may be over the limit).
      const buf = Buffer.alloc(f.bytes, f.binary ? 0x00 : 0x7b)
      const size = Math.ceil(f.bytes / f.pieces)
      const pieces = Array.from({ length: f.pieces }, (_, i) => buf.subarray(i * size, (i + 1) * size))
      return {
        kind: f.kind,
        label: `${f.binary ? "binary" : "text"} message of ${f.bytes} bytes in ${f.pieces} fragment(s) (max_payload ${MAX_PAYLOAD})`,
        expect: { close: 1009 },
        send: (ws) => pieces.forEach((p, i) => ws.send(p, { binary: f.binary, fin: i === pieces.length - 1 }))
      }
    }
  }
}

interface WireStats {
  sent: number
  answered: number
  reconnects: number
  maxMs: number
  readonly tally: Tally
  readonly closes: Tally
  readonly kinds: Tally
  readonly problems: Array<string>
}

/** Problems kept for the report (the run goes on after one, to its figures). */
const MAX_PROBLEMS = 25
const problem = (stats: WireStats, what: string) => {
  if (stats.problems.length < MAX_PROBLEMS) stats.problems.push(what)
}

interface Slot {
  readonly label: string
  readonly sentAt: number
  readonly expectId: ExpectedId
  readonly timer: NodeJS.Timeout
}

/**
 * One client connection: frames in flight (tagged ones by id, the others matched by expected id
 * in order), a per-frame bound, and waits on conditions that every answer, timeout or close
 * re-checks (no sleeps).
 */
class WireConn {
  readonly tagged = new Map<string, Slot>()
  readonly untagged: Array<Slot> = []
  closeCode: number | undefined
  expectingClose = false
  private readonly listeners: Array<() => void> = []

  constructor(
    readonly ws: WebSocket,
    private readonly stats: WireStats
  ) {
    ws.on("message", (data, isBinary) =>
      this.onMessage(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data), isBinary)
    )
    ws.on("close", (code) => {
      this.closeCode = code
      const lost = [...this.tagged.values(), ...this.untagged]
      if (!this.expectingClose)
        problem(stats, `connection closed with ${code} unasked, ${lost.length} frames unanswered: ${lost.map((s) => s.label).join(" | ")}`)
      for (const s of lost) clearTimeout(s.timer)
      this.tagged.clear()
      this.untagged.length = 0
      this.notify()
    })
    ws.on("error", () => undefined)
  }

  static open(port: number, stats: WireStats): Promise<WireConn> {
    return within(
      ANSWER_BOUND_MS,
      new Promise<WireConn>((ok, fail) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024 })
        ws.once("open", () => ok(new WireConn(ws, stats)))
        ws.once("error", fail)
      }),
      () => `no WebSocket connection within ${ANSWER_BOUND_MS} ms`
    )
  }

  get outstanding() {
    return this.tagged.size + this.untagged.length
  }
  get closed() {
    return this.closeCode !== undefined
  }

  private notify() {
    for (const l of this.listeners.splice(0)) l()
  }

  /** Resolves once `cond` holds; every answer, frame timeout and close re-checks it. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.listeners.push(r))
  }

  /** The close code, or undefined when the connection did not close within the bound. */
  closedWithin(ms: number): Promise<number | undefined> {
    return new Promise((ok) => {
      if (this.closeCode !== undefined) return ok(this.closeCode)
      const timer = setTimeout(() => ok(undefined), ms)
      this.ws.once("close", (code) => {
        clearTimeout(timer)
        ok(code)
      })
    })
  }

  send(p: Prepared, n: number) {
    if (!("id" in p.expect)) throw new Error("a closing frame is sent with sendClosing")
    const expectId = p.expect.id
    const timer = setTimeout(() => {
      const i = this.untagged.indexOf(slot)
      if (i >= 0) this.untagged.splice(i, 1)
      if (typeof expectId === "string" && this.tagged.get(expectId) === slot) this.tagged.delete(expectId)
      problem(this.stats, `no answer within ${ANSWER_BOUND_MS} ms (a hang) for ${p.label}`)
      this.notify()
    }, ANSWER_BOUND_MS)
    const slot: Slot = { label: `#${n} ${p.label}`, sentAt: performance.now(), expectId, timer }
    if (typeof expectId === "string" && expectId.startsWith("\u0001fz")) this.tagged.set(expectId, slot)
    else this.untagged.push(slot)
    p.send(this.ws)
  }

  private onMessage(buf: Buffer, isBinary: boolean) {
    this.stats.answered++
    const text = buf.toString("utf8")
    if (isBinary) problem(this.stats, `a binary answer: ${show(text)}`)
    let id: unknown
    try {
      const frame = JSON.parse(text) as { id?: unknown; subscription?: unknown; event?: unknown }
      // A realtime event (a frame without id) for a subscription one of the fuzzed frames made:
      // not an answer, so it matches no request.
      if (!Object.hasOwn(frame, "id") && typeof frame.subscription === "string" && typeof frame.event === "string") {
        this.stats.answered--
        return
      }
      id = frame.id
    } catch {
      problem(this.stats, `an answer that is not JSON: ${show(text)}`)
      return
    }
    let slot: Slot | undefined
    if (typeof id === "string" && this.tagged.has(id)) {
      slot = this.tagged.get(id)
      this.tagged.delete(id)
    } else {
      let i = this.untagged.findIndex((s) => s.expectId === id)
      if (i < 0) i = this.untagged.findIndex((s) => s.expectId === ANY_ID)
      if (i >= 0) slot = this.untagged.splice(i, 1)[0]
    }
    if (slot === undefined) {
      problem(
        this.stats,
        `an answer no frame in flight expects: ${show(text)} (in flight: ${[...this.tagged.values(), ...this.untagged].map((s) => s.label).join(" | ")})`
      )
      return
    }
    clearTimeout(slot.timer)
    this.stats.maxMs = Math.max(this.stats.maxMs, performance.now() - slot.sentAt)
    const checked = checkAnswer(text, slot.expectId)
    this.stats.tally.add(checked.code)
    if (checked.problem !== undefined) problem(this.stats, `${checked.problem}\n  frame:  ${slot.label}\n  answer: ${show(text)}`)
    this.notify()
  }

  close(): Promise<void> {
    this.expectingClose = true
    return new Promise((r) => {
      if (this.ws.readyState === WebSocket.CLOSED) return r()
      this.ws.once("close", () => r())
      this.ws.close()
    })
  }
}

/** Runs `f` with a client of the daemon that calls as the service (or with the credentials given). */
const withClient = async <A>(port: number, f: (call: Caller) => Promise<A>): Promise<A> => {
  const c = await connect(port, serviceAuth)
  try {
    return await f((method, params, auth) =>
      within(ANSWER_BOUND_MS, c.call(method, params, auth), () => `no answer to ${method} within ${ANSWER_BOUND_MS} ms`)
    )
  } finally {
    await c.close()
  }
}

const wireFrameArb = (gen: ReturnType<typeof makeGenerators>): fc.Arbitrary<WireFrame> =>
  fc.oneof(
    { weight: 70, arbitrary: gen.frame.map((text): WireFrame => ({ kind: "text", text })) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(
          fc.constantFrom(MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD, HARD_LIMIT - 1, HARD_LIMIT, HARD_LIMIT + 1),
          fc.constantFrom("a", "é", "🦄", "\u0000", "\\", "\uD800")
        )
        .map(([bytes, fill]): WireFrame => ({ kind: "sized", bytes, fill }))
    },
    {
      weight: 5,
      arbitrary: fc
        .oneof(
          fc.uint8Array({ maxLength: 300 }),
          gen.request.map((t) => new Uint8Array(textBytes(t, 0))),
          fc.constantFrom(new Uint8Array(0), new Uint8Array(MAX_PAYLOAD + 1))
        )
        .map((data): WireFrame => ({ kind: "binary", data }))
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(gen.request, fc.nat(), fc.constantFrom(...INVALID_UTF8))
        .map(([text, at, seq]): WireFrame => ({ kind: "invalid-utf8", text, at, seq }))
    },
    {
      weight: 8,
      arbitrary: fc
        .tuple(
          fc.oneof({ weight: 4, arbitrary: gen.request }, { weight: 1, arbitrary: gen.frame }),
          fc.array(fc.nat(), { minLength: 1, maxLength: 5 })
        )
        .map(([text, cuts]): WireFrame => ({ kind: "fragmented", text, cuts }))
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(...(Object.keys(VIOLATIONS) as Array<Violation>)).map((which): WireFrame => ({ kind: "violation", which }))
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(HARD_LIMIT + 1, HARD_LIMIT + 4096, 2 * HARD_LIMIT + 2, 600_000),
          fc.boolean(),
          fc.integer({ min: 1, max: 3 })
        )
        .map(([bytes, binary, pieces]): WireFrame => ({ kind: "huge", bytes, binary, pieces }))
    }
  )

/** CPU seconds (user + system) a process has used, from /proc (Linux); -1 elsewhere. */
const cpuSeconds = (pid: number | undefined): number => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return -1
  }
}

const rssMb = (pid: number | undefined): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? -1 : Math.round(Number(m[1]) / 1024)
  } catch {
    return -1
  }
}

/** The daemon's V8 heap in use (its /metrics), in MB; -1 when it does not answer. */
const heapMb = async (port: number): Promise<number> => {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
    const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(await res.text())
    return m === null ? -1 : Math.round(Number(m[1]) / 1e6)
  } catch {
    return -1
  }
}

/** What the daemon's output must never hold: unhandled errors, engine errors and stack frames. */
const BAD_OUTPUT =
  /Unhandled|UnhandledPromiseRejection|uncaught|TypeError|RangeError|ReferenceError|Maximum call stack|request failed unexpectedly|answer could not be encoded|(?:^|\\n|\n)\s*at \S+/i

describe(`fuzzing over the wire: ${WIRE_FRAMES} raw frames to the daemon process`, () => {
  let daemon: Daemon | undefined
  let auditFile = ""
  const gen = makeGenerators({ mega: false, tagWeight: 18 })

  beforeAll(async () => {
    ;({ daemon, auditFile } = await wireDaemon!)
    await withClient(daemon.port, (call) => seed(call, "wire"))
  })

  it(
    "answers every frame or closes with the documented code, within the bound; the daemon stays up",
    async () => {
      const d = daemon!
      const arb = wireFrameArb(gen)
      const stats: WireStats = {
        sent: 0,
        answered: 0,
        reconnects: 0,
        maxMs: 0,
        tally: new Tally(),
        closes: new Tally(),
        kinds: new Tally(),
        problems: []
      }
      const rssBefore = rssMb(d.process.pid)
      const heapBefore = await heapMb(d.port)
      const cpuBefore = process.cpuUsage()
      const daemonCpuBefore = cpuSeconds(d.process.pid)
      const principalsBefore = principals
      let frames: ReadonlyArray<WireFrame> = []
      let lines: ReadonlyArray<string> = []
      let next = 0
      let base = 0
      const started = performance.now()

      const worker = async () => {
        let c = await WireConn.open(d.port, stats)
        for (;;) {
          const i = next++
          const f = frames[i]
          if (f === undefined) break
          const n = base + i
          const p = prepare(f, n)
          stats.kinds.add(p.kind)
          if (c.closed) {
            c = await WireConn.open(d.port, stats)
            stats.reconnects++
          }
          if ("close" in p.expect) {
            // Alone on its connection: everything sent before is answered first.
            await c.until(() => c.outstanding === 0)
            if (!c.closed) {
              c.expectingClose = true
              stats.sent++
              p.send(c.ws)
              const code = await c.closedWithin(ANSWER_BOUND_MS)
              stats.closes.add(code ?? "none")
              if (code !== p.expect.close)
                problem(
                  stats,
                  `#${n} ${p.label}: ${code === undefined ? `no close within ${ANSWER_BOUND_MS} ms` : `closed with ${code}`}, expected ${p.expect.close}`
                )
              if (code === undefined) c.ws.terminate()
            }
            c = await WireConn.open(d.port, stats)
            stats.reconnects++
            continue
          }
          await c.until(() => c.outstanding < MAX_IN_FLIGHT || c.closed)
          if (c.closed) {
            c = await WireConn.open(d.port, stats)
            stats.reconnects++
          }
          stats.sent++
          c.send(p, n)
        }
        await c.until(() => c.outstanding === 0)
        await c.close()
      }

      try {
        // In chunks, generated just in time, with the second principal renewed between them.
        for (let chunk = 0; base < WIRE_FRAMES; chunk++) {
          await withClient(d.port, (call) => ensurePrincipal(call, "wire"))
          frames = fc.sample(arb, { numRuns: Math.min(WIRE_CHUNK, WIRE_FRAMES - base), seed: SEED + chunk })
          next = 0
          await Promise.all(Array.from({ length: CONNECTIONS }, worker))
          base += frames.length
        }
      } finally {
        const seconds = (performance.now() - started) / 1000
        const h = await health(d.port).catch(() => ({ status: -1 }))
        lines = fs.existsSync(auditFile)
          ? fs
              .readFileSync(auditFile, "utf8")
              .split("\n")
              .filter((l) => l !== "")
          : []
        report("fuzzing", "wire frames to the daemon process", {
          frames: stats.sent,
          answered: stats.answered,
          ok: stats.tally.get("ok"),
          distinct_codes: stats.tally.distinct,
          codes: stats.tally.toString(),
          closes: [...stats.closes.codes.values()].reduce((a, b) => a + b, 0),
          close_codes: stats.closes.toString(),
          reconnects: stats.reconnects,
          principals_renewed: principals - principalsBefore,
          kinds: stats.kinds.toString(),
          max_answer_ms: Math.round(stats.maxMs),
          seconds: round1(seconds),
          cpu_s: cpuSince(cpuBefore),
          daemon_cpu_s: round1(cpuSeconds(d.process.pid) - daemonCpuBefore),
          frames_per_s: Math.round(stats.sent / seconds),
          problems: stats.problems.length,
          daemon_alive: d.alive(),
          health: h.status,
          rss_mb_before: rssBefore,
          rss_mb_after: rssMb(d.process.pid),
          heap_mb_before: heapBefore,
          heap_mb_after: await heapMb(d.port),
          audit_records: lines.length,
          seed: SEED
        })
        if (stats.problems.length > 0)
          console.log(
            `problems${stats.problems.length >= MAX_PROBLEMS ? ` (the first ${MAX_PROBLEMS})` : ""}:\n${stats.problems.join("\n")}`
          )
      }

      expect(stats.problems).toEqual([])
      expect(stats.sent).toBe(WIRE_FRAMES)
      expect(d.alive()).toBe(true)
      expect((await health(d.port)).status).toBe(200)
      // A fresh connection is served, and defaults were not polluted by any __proto__ key.
      const c = await connect(d.port, serviceAuth)
      const fresh = await within(
        ANSWER_BOUND_MS,
        c.call("create", ["User", { username: `wire_after_${SEED}`, email: `wire_after_${SEED}@example.com` }]),
        () => "no answer after the run"
      )
      await c.close()
      expect(fresh.result, JSON.stringify(fresh)).toMatchObject({ role: "user" })
      // The audit records of the generated requests are JSON objects, one a line, whatever their input.
      const unreadable = lines.filter((l) => {
        try {
          return !isObject(JSON.parse(l))
        } catch {
          return true
        }
      })
      expect(unreadable.slice(0, 3)).toEqual([])
      expect(lines.length).toBeGreaterThan(0)
      const bad = BAD_OUTPUT.exec(d.output())
      expect(bad === null ? null : d.output().slice(Math.max(0, bad.index - 300), bad.index + 700)).toBeNull()
    },
    30 * 60_000
  )

  // Found by the fuzzer: a frame over 4 × max_payload that the client follows with more data
  // (another fragment of its message, or the next frame) often gets no close frame at all (1006:
  // the connection is reset) instead of the documented 1009.
  it("a frame over 4 × max_payload closes with 1009 also when more frames follow it", async () => {
    const d = daemon!
    const big = Buffer.alloc(300_000, 0x61)
    const patterns: ReadonlyArray<readonly [string, (ws: WebSocket) => void]> = [
      [
        "a text message in 2 fragments of 300,000 bytes",
        (ws) => {
          ws.send(big, { binary: false, fin: false })
          ws.send(big, { binary: false, fin: true })
        }
      ],
      [
        "a text frame of 300,000 bytes, then a request",
        (ws) => {
          ws.send(big, { binary: false })
          ws.send(JSON.stringify({ id: 1, method: "count", params: ["User"], auth: serviceAuth }))
        }
      ]
    ]
    const codes = new Tally()
    const wrong: Array<string> = []
    for (const [what, send] of patterns) {
      for (let i = 0; i < 10; i++) {
        const s = await openSocket(d.port)
        send(s.ws)
        const code = await s.closed(ANSWER_BOUND_MS)
        codes.add(code)
        if (code !== 1009) wrong.push(`${what}: closed with ${code}`)
      }
    }
    report("fuzzing", "frames over 4 × max_payload followed by more", { connections: 2 * 10, close_codes: codes.toString() })
    expect(wrong).toEqual([])
    expect(d.alive()).toBe(true)
  })
})
