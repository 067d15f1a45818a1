/**
 * Injection corpus (reliability suite): every payload of injection-corpus.ts, sent to the real
 * daemon process on each dialect in every position a client controls — create / update / upsert /
 * bulk / transaction values (JSON values and keys included), filter values for every operator,
 * operator names, field names in data, filters and sort, sort directions, entity names, ids,
 * foreign keys, `include` names, list options, lookup fields and values, method names,
 * transaction operations, credentials and request ids.
 *
 * Oracles:
 * - per answer: a structured JSON-RPC answer; an error has a documented 4xx code with its
 *   documented message and details that hold no SQL, driver text or stack (the payload's own
 *   echo removed); no 500/503/504; the answer comes well before a time-based payload's sleep;
 * - per position: the exact expected outcome — a value round-trips byte-exact or gets a 422; a
 *   filter matches exactly the rows a literal, code-point-ordered evaluation of it in JavaScript
 *   matches (LIKE wildcards and `!` included); a bad identifier is a 422 (400 for methods), an id
 *   a 404; records carry exactly their entity's fields;
 * - after the run (direct SQL, not through the daemon): the schema and the database objects are
 *   identical (PostgreSQL: pg_class / pg_tables / functions / triggers / schemas / extensions /
 *   roles; MariaDB: information_schema tables, columns, indexes, routines, triggers, views,
 *   events; SQLite: sqlite_master and table_info), the canary tables (seeded before, never
 *   written through payloads) hold exactly the same rows, the table written to holds exactly the
 *   expected rows and values, no file named by a payload exists, and the SQL audit table (one more
 *   statement carrying client-chosen strings) has a record of every request id.
 *
 * Requests are pipelined over several connections, within the daemon's in-flight limit.
 * DBAL_RELIABILITY=long sends every payload in every variant of every position (all operators ×
 * text fields × read methods, every method for entity names, …). The short run sends every
 * payload once through each group of positions, rotating through positions and variants with
 * the payload's rank within its kind (so every position gets payloads of each kind), plus sweeps
 * that send the whole corpus through every operator and through the identifier positions whose
 * validation reports every bad key, 40 payloads a request.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import mysql from "mysql2/promise"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Answer, type Client, connect, type Daemon, openSocket, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  MY,
  PG,
  serviceAuth,
  skipDialect,
  tempDir,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { until } from "../support/wait.js"
import { LONG, report } from "./figures.js"
import { CORPUS, PWNED_PREFIX, SLEEP_SECONDS } from "./injection-corpus.js"

const DIALECTS: ReadonlyArray<DialectName> = ["sqlite", "postgresql", "mysql"]
const AUDIT_TABLE = "inj_audit"
const TARGET_TABLE = "lua_scripts"
/** A request that takes this long would mean a time-based payload ran. */
const SLOW_MS = SLEEP_SECONDS * 1000
const CONNECTIONS = 2

// ---------------------------------------------------------------------------------------------
// Expected semantics, evaluated in JavaScript
// ---------------------------------------------------------------------------------------------

/** What the daemon accepts as a stored string: no NUL, no unpaired surrogate. */
const storable = (s: string): boolean => !s.includes("\u0000") && s.isWellFormed()
const codePoints = (s: string): number => [...s].length
/** A valid value for a string field of at most `max` characters. */
const fits = (s: string, max = 255): boolean => storable(s) && codePoints(s) <= max

/** Code point order: what binary collations (SQLite BINARY, PostgreSQL "C", MySQL *_bin) use. */
const cmp = (a: string, b: string): number => {
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const x = a.codePointAt(i)!
    const y = b.codePointAt(j)!
    if (x !== y) return x < y ? -1 : 1
    i += x > 0xffff ? 2 : 1
    j += y > 0xffff ? 2 : 1
  }
  return i < a.length ? 1 : j < b.length ? -1 : 0
}

const TEXT_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "notIn", "contains", "startsWith", "endsWith"] as const
type TextOp = (typeof TEXT_OPS)[number]
const ALL_OPS = [...TEXT_OPS, "isNull"] as const
const NONE = "zz-none-such-value"

/** The operand a probe sends for an operator. */
const operandFor = (op: TextOp, p: string): unknown => (op === "in" ? [p, NONE] : op === "notIn" ? [p] : p)

/** SQL semantics of `field op p` on one stored value (NULL matches nothing). */
const holds = (v: string | null, op: TextOp, p: string): boolean => {
  if (v === null) return false
  switch (op) {
    case "eq":
      return v === p
    case "ne":
      return v !== p
    case "gt":
      return cmp(v, p) > 0
    case "gte":
      return cmp(v, p) >= 0
    case "lt":
      return cmp(v, p) < 0
    case "lte":
      return cmp(v, p) <= 0
    case "in":
      return v === p || v === NONE
    case "notIn":
      return v !== p
    case "contains":
      return v.includes(p)
    case "startsWith":
      return v.startsWith(p)
    case "endsWith":
      return v.endsWith(p)
  }
}

type Rec = Record<string, unknown>
type Filter = Rec

/** Evaluates the subset of the filter language the probes use, on one record. */
const evaluate = (rec: Rec, filter: Filter): boolean =>
  Object.entries(filter).every(([key, spec]) => {
    if (key === "AND") return (spec as ReadonlyArray<Filter>).every((f) => evaluate(rec, f))
    if (key === "OR") return (spec as ReadonlyArray<Filter>).some((f) => evaluate(rec, f))
    if (key === "NOT") return !evaluate(rec, spec as Filter)
    const v = rec[key]
    const value = typeof v === "string" ? v : null
    if (typeof spec === "string") return holds(value, "eq", spec)
    return Object.entries(spec as Rec).every(([op, arg]) => {
      if (op === "in") return (arg as ReadonlyArray<string>).some((x) => holds(value, "eq", x))
      if (op === "notIn") return (arg as ReadonlyArray<string>).every((x) => holds(value, "ne", x))
      return holds(value, op as TextOp, arg as string)
    })
  })

/** Every string operand of a filter (a filter with one that is not storable is a 422). */
const operands = (filter: unknown): Array<string> =>
  typeof filter === "string"
    ? [filter]
    : Array.isArray(filter)
      ? filter.flatMap(operands)
      : filter !== null && typeof filter === "object"
        ? Object.values(filter).flatMap(operands)
        : []

const sortKeys = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(sortKeys)
    : v !== null && typeof v === "object"
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sortKeys((v as Rec)[k])])
        )
      : v
/** JSON with sorted keys: compares JSON values whatever order the database keeps keys in. */
const canon = (v: unknown): string => JSON.stringify(sortKeys(v))

const LUA_FIELDS = [
  "allowedGlobals",
  "code",
  "createdAt",
  "createdBy",
  "description",
  "id",
  "isSandboxed",
  "name",
  "timeoutMs",
  "updatedAt"
]
const USER_FIELDS = ["createdAt", "email", "id", "role", "updatedAt", "username"]
const LUA_TEXT = ["name", "description", "code"] as const
const USER_TEXT = ["username", "email", "role"] as const
/** LuaScript fields of every other type: any string operand is a 422 for every operator. */
const LUA_TYPED = ["id", "createdBy", "timeoutMs", "isSandboxed", "allowedGlobals", "createdAt"] as const

/** Identifiers that are valid somewhere the probes use: no payload may be one of them. */
const VALID_IDENTIFIERS = new Set<string>([
  ...LUA_FIELDS,
  ...USER_FIELDS,
  ...ALL_OPS,
  "AND",
  "OR",
  "NOT",
  "asc",
  "desc",
  "creator",
  "filter",
  "sort",
  "page",
  "limit",
  "include",
  "User",
  "Credential",
  "Session",
  "PageView",
  "ComponentHierarchy",
  "Workflow",
  "LuaScript",
  "Package",
  "authenticate",
  "create",
  "read",
  "update",
  "delete",
  "list",
  "findFirst",
  "findByField",
  "upsert",
  "updateByField",
  "deleteByField",
  "createMany",
  "updateMany",
  "deleteMany",
  "count",
  "getCapabilities",
  "transaction"
])

// ---------------------------------------------------------------------------------------------
// The structural oracle
// ---------------------------------------------------------------------------------------------

const MESSAGES: Readonly<Record<number, string>> = {
  400: "Bad request",
  401: "Authentication required",
  403: "Access forbidden",
  404: "Resource not found",
  409: "Resource conflict",
  422: "Validation failed",
  429: "Rate limit exceeded"
}
/** `moreFields`: the count of field issues past the listed ones (details are bounded, docs/security.md). */
const DETAIL_KEYS = new Set(["reason", "fields", "moreFields", "entity", "operation", "rolledBack", "retryAfter"])
/** Driver, SQL and stack text that must never reach a client (checked with the payload's echo removed). */
const LEAK = [
  /SQLITE_|\bER_[A-Z_]{3,}|sqlstate|syntax error|near "|You have an error in your SQL|unterminated|duplicate key|violates|stack|\n\s+at |node_modules|\.[jt]s:\d+|pg_|information_schema|sqlite_master|Error:/i,
  // SQL itself (the daemon's own messages are lower-case prose)
  /\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \S+ SET|WHERE|FROM|VALUES|LIMIT|OFFSET)\b/
]

const strings = (v: unknown): Array<string> =>
  typeof v === "string"
    ? [v]
    : Array.isArray(v)
      ? v.flatMap(strings)
      : v !== null && typeof v === "object"
        ? Object.values(v).flatMap(strings)
        : []

/**
 * Problems of an answer's form, whatever was asked; undefined when it is well formed. `payloads`:
 * the strings the request carried, whose echo in details (a field path) is not a leak.
 */
const structural = (a: Answer, payloads: ReadonlyArray<string>): string | undefined => {
  const keys = Object.keys(a).sort().join(",")
  if (keys !== "error,id" && keys !== "id,result") return `answer keys ${keys}`
  if (a.error === undefined) return undefined
  const { code, message, details } = a.error
  if (code >= 500) return `server error ${code}`
  if (MESSAGES[code] === undefined) return `undocumented code ${code}`
  if (message !== MESSAGES[code]) return `message ${JSON.stringify(message)} for ${code}`
  const extra = Object.keys(a.error).filter((k) => !["code", "message", "details"].includes(k))
  if (extra.length > 0) return `error keys ${extra.join(",")}`
  if (details !== undefined) {
    const bad = Object.keys(details).filter((k) => !DETAIL_KEYS.has(k))
    if (bad.length > 0) return `details keys ${bad.join(",")}`
    const echoes = payloads
      .flatMap((p) => [p, JSON.stringify(p).slice(1, -1), JSON.stringify(p.slice(0, 64)), p.slice(0, 64)])
      .filter((e) => e !== "")
      .sort((x, y) => y.length - x.length)
    for (const s of strings(details)) {
      let rest = s
      for (const e of echoes) rest = rest.split(e).join("")
      if (LEAK.some((re) => re.test(rest))) return `details leak ${JSON.stringify(rest.slice(0, 200))}`
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Direct SQL on the test database (not through the daemon)
// ---------------------------------------------------------------------------------------------

interface Direct {
  readonly query: (sql: string) => Promise<Array<Rec>>
  readonly close: () => Promise<void>
}
interface SqliteDb {
  prepare(sql: string): { all(): Array<Rec> }
  close(): void
}
type SqliteCtor = new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => SqliteDb
const require = createRequire(import.meta.url)

const openDirect = async (db: TestDatabase): Promise<Direct> => {
  const conn = (db.databaseConfig as { connection: Rec }).connection
  if (db.dialect === "postgresql") {
    const c = new pg.Client({ ...PG, database: String(conn.database), connectionTimeoutMillis: 5000 })
    await c.connect()
    return { query: async (s) => (await c.query<Rec>(s)).rows, close: () => c.end() }
  }
  if (db.dialect === "mysql") {
    const c = await mysql.createConnection({ ...MY, password: "", database: String(conn.database), connectTimeout: 5000 })
    return { query: async (s) => (await c.query<Array<mysql.RowDataPacket>>(s))[0] as Array<Rec>, close: () => c.end() }
  }
  const Sqlite = require("better-sqlite3") as SqliteCtor
  const s = new Sqlite(String(conn.filename), { readonly: true, fileMustExist: true })
  return { query: async (q) => s.prepare(q).all(), close: async () => s.close() }
}

/** Everything the schema consists of: tables, columns, and every other object of the database. */
const schemaOf = async (dialect: DialectName, d: Direct): Promise<Rec> => {
  if (dialect === "sqlite") {
    const master = await d.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    const tables = master.filter((r) => r.type === "table").map((r) => String(r.name))
    const columns: Rec = {}
    for (const t of tables)
      columns[t] = await d.query(`SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info('${t}') ORDER BY cid`)
    return { tables, columns, master, databases: await d.query("SELECT name FROM pragma_database_list ORDER BY seq") }
  }
  if (dialect === "postgresql") {
    const mine =
      "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
    return {
      tables: await d.query(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
      ),
      columns: await d.query(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default, collation_name FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, ordinal_position"
      ),
      objects: await d.query(
        `SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${mine} ORDER BY 1, 2`
      ),
      functions: await d.query(
        `SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${mine} ORDER BY 1, 2`
      ),
      triggers: await d.query("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"),
      schemas: await d.query(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%' ORDER BY 1"
      ),
      extensions: await d.query("SELECT extname FROM pg_extension ORDER BY 1"),
      pwnedRoles: await d.query("SELECT rolname FROM pg_roles WHERE rolname = 'pwned'")
    }
  }
  const here = (col: string) => `${col} = DATABASE()`
  return {
    tables: await d.query(`SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE ${here("TABLE_SCHEMA")} ORDER BY 1`),
    columns: await d.query(
      `SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLLATION_NAME FROM information_schema.COLUMNS WHERE ${here("TABLE_SCHEMA")} ORDER BY TABLE_NAME, ORDINAL_POSITION`
    ),
    indexes: await d.query(
      `SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, SEQ_IN_INDEX FROM information_schema.STATISTICS WHERE ${here("TABLE_SCHEMA")} ORDER BY 1, 2, 4`
    ),
    routines: await d.query(`SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ${here("ROUTINE_SCHEMA")} ORDER BY 1`),
    triggers: await d.query(`SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE ${here("TRIGGER_SCHEMA")} ORDER BY 1`),
    views: await d.query(`SELECT TABLE_NAME FROM information_schema.VIEWS WHERE ${here("TABLE_SCHEMA")} ORDER BY 1`),
    events: await d.query(`SELECT EVENT_NAME FROM information_schema.EVENTS WHERE ${here("EVENT_SCHEMA")} ORDER BY 1`),
    pwnedUsers: await d.query("SELECT User FROM mysql.user WHERE User = 'pwned'")
  }
}

const tableNames = (dialect: DialectName, schema: Rec): Array<string> =>
  dialect === "sqlite"
    ? (schema.tables as Array<string>).filter((t) => !t.startsWith("sqlite_"))
    : (schema.tables as Array<Rec>).map((r) => String(dialect === "postgresql" ? r.tablename : r.TABLE_NAME))

/** JSON form of driver rows (dates as ISO strings), so that two snapshots compare as values. */
const plain = (rows: Array<Rec>): Array<Rec> => JSON.parse(JSON.stringify(rows)) as Array<Rec>

interface Snapshot {
  readonly schema: Rec
  readonly counts: Record<string, number>
  /** Every row of every table but the target and the audit table. */
  readonly canary: Record<string, Array<Rec>>
}

const snapshot = async (dialect: DialectName, d: Direct): Promise<Snapshot> => {
  const schema = await schemaOf(dialect, d)
  const counts: Record<string, number> = {}
  const canary: Record<string, Array<Rec>> = {}
  for (const t of tableNames(dialect, schema)) {
    counts[t] = Number((await d.query(`SELECT COUNT(*) AS n FROM ${t}`))[0]?.n)
    if (t !== TARGET_TABLE && t !== AUDIT_TABLE) canary[t] = plain(await d.query(`SELECT * FROM ${t} ORDER BY id`))
  }
  return { schema: plain([schema])[0]!, counts, canary }
}

const jsonValue = (v: unknown): unknown => (typeof v === "string" ? JSON.parse(v) : v)

// ---------------------------------------------------------------------------------------------
// Probes, positions and the pipelined runner
// ---------------------------------------------------------------------------------------------

type Check = (a: Answer) => string | undefined

interface Probe {
  readonly position: string
  /** The payloads it carries (their echo is allowed in error details). */
  readonly payloads: ReadonlyArray<number>
  readonly method: string
  readonly params: ReadonlyArray<unknown>
  /** Credentials of the frame (default: the service token); null: none. */
  readonly auth?: Record<string, unknown> | null
  readonly check: Check
  /** May be sent again alone when it was slow (reads and refused requests). */
  readonly idempotent: boolean
}

/** One way of sending a payload in a position: the request, its expected answer, its effect on the expected rows. */
interface Variant {
  readonly method: string
  readonly params: ReadonlyArray<unknown>
  readonly check: Check
  readonly auth?: Record<string, unknown> | null
  readonly apply?: () => void
}

interface Position {
  readonly name: string
  readonly variants: (p: string, i: number) => ReadonlyArray<Variant>
}

const v = (method: string, params: ReadonlyArray<unknown>, check: Check, apply?: () => void): Variant => ({
  method,
  params,
  check,
  ...(apply === undefined ? {} : { apply })
})

/** Each payload's kind (as an index) and its rank among the payloads of that kind. */
const KINDS = [...new Set(CORPUS.map((c) => c.kind))]
const RANKS = CORPUS.map((c, i) => CORPUS.slice(0, i).filter((d) => d.kind === c.kind).length)

/**
 * The probes of one payload. Long run: every variant of every position of every group. Short
 * run: one position of each group and one of its variants, rotating with the payload's rank within
 * its kind, so that every position gets payloads of every kind (that has enough of them) and the
 * variants (operators, fields, methods) vary from one payload to the next.
 */
const select = (groups: ReadonlyArray<ReadonlyArray<Position>>, p: string, i: number, idempotent: boolean): Array<Probe> => {
  const out: Array<Probe> = []
  const kind = KINDS.indexOf(CORPUS[i]!.kind)
  const rank = RANKS[i]!
  groups.forEach((group, g) => {
    for (const pos of LONG ? group : [group[(rank + kind + g) % group.length]!]) {
      const all = pos.variants(p, i)
      for (const x of LONG ? all : [all[(rank * 13 + kind * 5 + g) % all.length]!]) {
        x.apply?.()
        out.push({
          position: pos.name,
          payloads: [i],
          method: x.method,
          params: x.params,
          check: x.check,
          idempotent,
          ...(x.auth === undefined ? {} : { auth: x.auth })
        })
      }
    }
  })
  return out
}

interface Stats {
  requests: number
  structured: number
  maxMs: number
  /** Slow answers sent again alone (and then fast). */
  rechecked: number
  readonly positions: Set<string>
  readonly failures: Array<string>
}

const describeProbe = (p: Probe, a: Answer | undefined, problem: string): string => {
  const first = CORPUS[p.payloads[0] ?? -1]
  const which =
    p.payloads.length === 1
      ? `payload #${p.payloads[0]} (${first?.kind}) ${JSON.stringify(first?.text ?? "").slice(0, 70)}`
      : `${p.payloads.length} payloads`
  return `${p.position} · ${which} · ${p.method} ${JSON.stringify(p.params).slice(0, 160)} → ${JSON.stringify(a ?? null).slice(0, 260)}: ${problem}`
}

const codeIs =
  (...codes: ReadonlyArray<number>): Check =>
  (a) =>
    a.error !== undefined && codes.includes(a.error.code) ? undefined : `expected error ${codes.join("/")}`

const resultIs =
  (f: (r: unknown) => string | undefined): Check =>
  (a) =>
    a.error !== undefined ? `expected a result` : f(a.result)

const equals = (n: unknown): Check => resultIs((r) => (r === n ? undefined : `expected ${String(n)}`))

/**
 * A 422 that accounts for every one of `paths` (validation goes on past the first bad key): each
 * listed issue is one of them, and the listed ones plus `moreFields` (details are bounded to 10
 * issues, docs/security.md) are all of them.
 */
const reportsAll =
  (paths: ReadonlyArray<string>): Check =>
  (a) => {
    if (a.error?.code !== 422) return "expected error 422"
    const listed = ((a.error.details?.fields ?? []) as ReadonlyArray<{ field?: unknown }>).map((f) => f.field)
    const more = a.error.details?.moreFields ?? 0
    const known = new Set<unknown>(paths)
    const stranger = listed.find((f) => !known.has(f))
    if (stranger !== undefined) return `reported ${JSON.stringify(stranger)}, which was not sent`
    const accounted = new Set(listed).size + (typeof more === "number" ? more : 0)
    return accounted === paths.length
      ? undefined
      : `${paths.length - accounted} of ${paths.length} not accounted for (listed ${listed.length}, moreFields ${String(more)})`
  }

const sameRecord =
  (expected: Rec) =>
  (r: unknown): string | undefined => {
    if (r === null || typeof r !== "object") return "not a record"
    for (const [k, x] of Object.entries(expected)) {
      const got = (r as Rec)[k]
      if (typeof x === "string" || x === null ? got !== x : canon(got) !== canon(x))
        return `${k} came back as ${JSON.stringify(got)?.slice(0, 120)}`
    }
    return undefined
  }

const hasFields = (rec: unknown, fields: ReadonlyArray<string>): string | undefined => {
  if (rec === null || typeof rec !== "object") return "not a record"
  const keys = Object.keys(rec).sort().join(",")
  return keys === fields.join(",") ? undefined : `record fields ${keys}`
}

/** Runs the probes over the connections, `perConnection` in flight on each. */
const runProbes = async (
  clients: ReadonlyArray<Client>,
  probes: ReadonlyArray<Probe>,
  perConnection: number,
  stats: Stats
): Promise<void> => {
  const slow: Array<Probe> = []
  const one = async (c: Client, p: Probe, again: boolean) => {
    const texts = p.payloads.map((k) => CORPUS[k]?.text ?? "")
    const t0 = performance.now()
    let a: Answer
    try {
      a = await c.call(p.method, p.params, p.auth === undefined ? serviceAuth : p.auth)
    } catch (e) {
      stats.failures.push(describeProbe(p, undefined, `no answer: ${(e as Error).message}`))
      return
    }
    const ms = performance.now() - t0
    if (!again) {
      stats.requests++
      stats.positions.add(p.position)
    }
    const form = structural(a, texts)
    if (form !== undefined) return void stats.failures.push(describeProbe(p, a, form))
    if (!again) stats.structured++
    const problem = p.check(a)
    if (problem !== undefined) return void stats.failures.push(describeProbe(p, a, problem))
    if (ms >= SLOW_MS) {
      if (p.idempotent && !again) slow.push(p)
      else stats.failures.push(describeProbe(p, a, `took ${Math.round(ms)} ms (a time-based payload may have run)`))
    } else stats.maxMs = Math.max(stats.maxMs, ms)
  }
  let next = 0
  const worker = async (c: Client) => {
    for (;;) {
      const p = probes[next++]
      if (p === undefined) return
      await one(c, p, false)
    }
  }
  await Promise.all(Array.from({ length: clients.length * perConnection }, (_, k) => worker(clients[k % clients.length]!)))
  // Slow while the machine was busy, or a time-based payload that ran: alone, it must be fast.
  for (const p of slow) {
    stats.rechecked++
    await one(clients[0]!, p, true)
  }
}

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let k = 0; k < items.length; k += size) out.push(items.slice(k, k + size))
  return out
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

interface LuaRow {
  name: string
  description: string | null
  code: string
  allowedGlobals: unknown
}

describe("injection corpus", () => {
  it("has ≥ 60 payloads, none a valid identifier, no two equal up to trailing spaces", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(60)
    expect(CORPUS.filter((p) => VALID_IDENTIFIERS.has(p.text))).toEqual([])
    const keys = CORPUS.map((p) => p.text.replace(/ +$/, ""))
    expect(new Set(keys).size).toBe(keys.length)
  })

  it("has oracles that catch what they are for", () => {
    const err = (code: number, message: string, details?: Rec): Answer => ({
      id: 1,
      error: { code, message, ...(details === undefined ? {} : { details }) }
    })
    const p = "' OR 1=1 --"
    expect(
      structural(err(422, "Validation failed", { fields: [{ field: `filter.${p}`, error: "unknown field of User" }] }), [p])
    ).toBeUndefined()
    expect(
      structural(err(422, "Validation failed", { fields: [{ field: "filter.x", error: 'syntax error at or near "OR"' }] }), ["x"])
    ).toMatch(/leak/)
    expect(structural(err(400, "Bad request", { reason: "SELECT id FROM users" }), [])).toMatch(/leak/)
    expect(structural(err(400, "Bad request", { reason: "Error: x\n    at run (/app/src/q.ts:10:3)" }), [])).toMatch(/leak/)
    expect(structural(err(500, "Internal server error"), [])).toMatch(/server error/)
    expect(structural(err(503, "Database unavailable", { reason: "down" }), [])).toMatch(/server error/)
    expect(structural(err(404, "Not found", { entity: "User" }), [])).toMatch(/message/)
    expect(structural(err(404, "Resource not found", { entity: "User", sql: "x" }), [])).toMatch(/details keys/)
    // Code point order, not UTF-16 order: U+FFFF sorts before U+1F600.
    expect(cmp("\uffff", "\u{1f600}")).toBe(-1)
    expect("\uffff" < "\u{1f600}").toBe(false)
    // Literal LIKE, NULL never matches, notIn excludes NULL.
    expect(evaluate({ name: "a_b" }, { name: { contains: "_" } })).toBe(true)
    expect(evaluate({ name: "axb" }, { name: { contains: "a_b" } })).toBe(false)
    expect(evaluate({ name: null }, { name: { notIn: ["x"] } })).toBe(false)
    expect(evaluate({ name: "b" }, { OR: [{ name: { gt: "a" } }], NOT: { name: { eq: "c" } } })).toBe(true)
  })
})

/** A test database and the real daemon process on it. */
interface Env {
  readonly db: TestDatabase
  readonly daemon: Daemon
  readonly dir: string
  /** Milliseconds from the start of its boot to the daemon listening. */
  readonly bootMs: number
}

const boot = async (dialect: DialectName): Promise<Env> => {
  const t0 = performance.now()
  const dir = tempDir("injection")
  const db = await createDatabase(dialect)
  const config = {
    ...daemonConfig(db),
    // Payloads are long patterns and many conditions, which the complexity limit (patterns are
    // costed by length) would refuse before they reach SQL: this suite is about what reaches SQL.
    performance: { max_query_complexity: 1_000_000 },
    security: {
      // The SQL audit table is one more statement carrying client-chosen strings (request id,
      // entity name, field paths) with every request.
      audit_log: true,
      audit_log_path: path.join(dir, "audit.log"),
      audit: { sql_table: AUDIT_TABLE, fsync: false },
      rate_limit: { enabled: false },
      // Credentials are a position too: refused ones must not lock the test's address out.
      auth: {
        service_tokens: [{ name: serviceAuth.user_id, token: serviceAuth.token }],
        failed_auth: { burst: 1_000_000, per_minute: 1_000_000 }
      }
    }
  }
  try {
    return { db, dir, daemon: await startDaemon([`--config=${writeConfig(config, dir)}`]), bootMs: performance.now() - t0 }
  } catch (e) {
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
}

const available: Array<DialectName> = []
for (const dialect of DIALECTS) if (!(await skipDialect(dialect))) available.push(dialect)

/**
 * The daemons of every dialect start together when the first suite starts (a daemon's start is
 * mostly module loading, which then overlaps with another dialect's work); each suite stops its
 * own, and whatever a filtered run left running is stopped at the end of the file.
 */
const envs = new Map<DialectName, Promise<Env>>()
let booted = false
const envOf = (dialect: DialectName): Promise<Env> => {
  if (!booted) {
    booted = true
    for (const f of fs.readdirSync(path.dirname(PWNED_PREFIX))) {
      if (f.startsWith(path.basename(PWNED_PREFIX))) fs.rmSync(path.join(path.dirname(PWNED_PREFIX), f), { force: true, recursive: true })
    }
    for (const d of available) {
      const p = boot(d)
      p.catch(() => undefined) // awaited (and reported) by the dialect's own suite
      envs.set(d, p)
    }
  }
  const env = envs.get(dialect)
  return env ?? Promise.reject(new Error(`no daemon for ${dialect}`))
}
const shutdown = async (dialect: DialectName): Promise<void> => {
  const p = envs.get(dialect)
  envs.delete(dialect)
  const env = await p?.catch(() => undefined)
  if (env === undefined) return
  const code = await env.daemon.stop()
  if (code !== 0) console.warn(`daemon on ${dialect} exited with ${code}:\n${env.daemon.output().slice(-2000)}`)
  await env.db.drop()
  fs.rmSync(env.dir, { recursive: true, force: true })
}
afterAll(async () => {
  await Promise.all([...envs.keys()].map(shutdown))
})

for (const dialect of DIALECTS) {
  describe.skipIf(!available.includes(dialect))(`injection corpus on ${dialect}`, () => {
    let daemon: Daemon
    let direct: Direct
    let clients: Array<Client> = []
    let before: Snapshot
    let perConnection = 16
    const stats: Stats = { requests: 0, structured: 0, maxMs: 0, rechecked: 0, positions: new Set(), failures: [] }
    /** The expected rows of the target table, by name. */
    const model = new Map<string, LuaRow>()
    const ids = new Map<string, string>()
    let users: Array<Rec> = []
    let creatorId = ""
    let started = 0

    const call = async (method: string, params: ReadonlyArray<unknown>): Promise<unknown> => {
      const a = await clients[0]!.call(method, params)
      if (a.error !== undefined) throw new Error(`${method} ${JSON.stringify(params).slice(0, 200)} failed: ${JSON.stringify(a.error)}`)
      return a.result
    }

    /** Runs one phase's probes; its failures (at most 40 shown) fail the test. */
    const phase = async (title: string, probes: ReadonlyArray<Probe>) => {
      const failuresBefore = stats.failures.length
      const requestsBefore = stats.requests
      const t0 = performance.now()
      await runProbes(clients, probes, perConnection, stats)
      const failures = stats.failures.slice(failuresBefore)
      console.log(
        `[injection] ${dialect} ${title}: ${stats.requests - requestsBefore} requests in ${Math.round(performance.now() - t0)} ms, ${failures.length} failures`
      )
      return failures
    }

    beforeAll(async () => {
      started = performance.now()
      const env = await envOf(dialect)
      daemon = env.daemon
      const waitedMs = performance.now() - started
      clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(daemon.port, serviceAuth)))
      const caps = (await call("getCapabilities", [])) as { limits: { maxInFlightPerConnection: number } }
      perConnection = Math.max(1, Math.min(16, Math.floor(caps.limits.maxInFlightPerConnection / 2)))

      // Canary rows in every other table: seeded now, never written through a payload.
      const mk = async (entity: string, data: Rec) => (await call("create", [entity, data])) as Rec
      users = await Promise.all([
        mk("User", { username: "canary_admin", email: "admin@canary.example", role: "admin" }),
        mk("User", { username: "canary_alice", email: "alice.o'neil@canary.example" }),
        mk("User", { username: "canary-bob", email: "bob+tag@canary.example", role: "god" }),
        mk("User", { username: "Canary_Carol", email: "carol@canary.example", role: "supergod" }),
        mk("User", { username: "o_reilly", email: "o_reilly@canary.example" })
      ])
      creatorId = String(users[0]!.id)
      const [page] = await Promise.all([
        mk("PageView", { slug: "canary-home", title: 'Canary\'s "home" -- page', level: 1, layout: { rows: [1, 2] } }),
        mk("Credential", { username: "canary_alice", passwordHash: "$2b$10$canary.canary.canary.canary.canary.canary.canary" }),
        mk("Session", { userId: users[1]!.id, token: "canary-session-token-0123456789", expiresAt: "2099-01-01T00:00:00Z" }),
        mk("Workflow", { name: "canary-flow", trigger: "manual", triggerConfig: {}, steps: [], createdBy: creatorId }),
        mk("Package", { name: "canary-pkg", version: "1.0.0", author: "Canary", manifest: { a: 1 } })
      ])
      await mk("ComponentHierarchy", { pageId: page.id, componentType: "Header", props: { text: "' OR 1=1" } })

      // The target's own seeds: rows for update / updateByField / updateMany, and literal wildcards.
      const seeds: Array<LuaRow> = [
        ...CORPUS.flatMap((_, i) =>
          ["u", "v", "w"].map((k) => ({ name: `${k}-${i}`, description: null, code: `seed-${k}-${i}`, allowedGlobals: [] }))
        ),
        ...["wild~100%", "wild~1000", "wild~a_b", "wild~axb", "wild~!x", "wild~!!", "wild~\\x", "wild~[a]", "wild~a"].map((name) => ({
          name,
          description: name,
          code: name,
          allowedGlobals: []
        }))
      ]
      for (const chunk of chunks(seeds, 500)) {
        await call("createMany", [
          "LuaScript",
          chunk.map((s) => ({
            name: s.name,
            code: s.code,
            createdBy: creatorId,
            ...(s.description === null ? {} : { description: s.description })
          }))
        ])
      }
      for (const s of seeds) model.set(s.name, s)
      // The ids of the rows updated by id.
      for (let page = 1; ; page++) {
        const r = (await call("list", ["LuaScript", { filter: { name: { startsWith: "u-" } }, page, limit: 100 }])) as {
          data: Array<Rec>
          hasMore: boolean
        }
        for (const rec of r.data) ids.set(String(rec.name), String(rec.id))
        if (!r.hasMore) break
      }

      direct = await openDirect(env.db)
      before = await snapshot(dialect, direct)
      console.log(
        `[injection] ${dialect} setup: daemon listening ${Math.round(env.bootMs)} ms after boot (waited ${Math.round(waitedMs)} ms), seeded and snapshotted after ${Math.round(performance.now() - started)} ms`
      )
    })

    afterAll(async () => {
      await Promise.all(clients.map((c) => c.close()))
      await direct?.close()
      await shutdown(dialect)
    })

    it("payloads as values (create, update, upsert, bulk, transaction; JSON values and keys) are stored byte-exact or refused with 422", async () => {
      const created = (p: string) => ({ name: p, description: p, code: p, allowedGlobals: [p, { [p]: p }] })
      const writes: ReadonlyArray<ReadonlyArray<Position>> = [
        [
          {
            // The payload as the unique name, in the text fields and inside a JSON value (as a key too).
            name: "value:create",
            variants: (p) => [
              v(
                "create",
                ["LuaScript", { ...created(p), createdBy: creatorId }],
                fits(p) ? resultIs(sameRecord(created(p))) : codeIs(422),
                fits(p) ? () => void model.set(p, created(p)) : undefined
              )
            ]
          }
        ],
        [
          {
            name: "value:update",
            variants: (p, i) => {
              const data = { description: p, allowedGlobals: { [p]: [p] } }
              const ok = storable(p)
              return [
                v(
                  "update",
                  ["LuaScript", ids.get(`u-${i}`), data],
                  ok ? resultIs(sameRecord(data)) : codeIs(422),
                  ok ? () => void Object.assign(model.get(`u-${i}`)!, data) : undefined
                )
              ]
            }
          },
          {
            name: "value:updateByField",
            variants: (p, i) => {
              const ok = storable(p)
              return [
                v(
                  "updateByField",
                  ["LuaScript", "name", `v-${i}`, { code: p }],
                  ok ? resultIs(sameRecord({ name: `v-${i}`, code: p })) : codeIs(422),
                  ok ? () => void Object.assign(model.get(`v-${i}`)!, { code: p }) : undefined
                )
              ]
            }
          },
          {
            name: "value:updateMany",
            variants: (p, i) => {
              const ok = storable(p)
              return [
                v(
                  "updateMany",
                  ["LuaScript", { name: { eq: `w-${i}` } }, { description: p, code: p }],
                  ok ? equals(1) : codeIs(422),
                  ok ? () => void Object.assign(model.get(`w-${i}`)!, { description: p, code: p }) : undefined
                )
              ]
            }
          },
          {
            name: "value:upsert",
            variants: (p) => {
              const up = `up:${p}`
              return [
                v(
                  "upsert",
                  ["LuaScript", "name", up, { code: p, description: p, createdBy: creatorId }, { code: p }],
                  fits(up) ? resultIs(sameRecord({ name: up, code: p, description: p })) : codeIs(422),
                  fits(up) ? () => void model.set(up, { name: up, description: p, code: p, allowedGlobals: [] }) : undefined
                )
              ]
            }
          },
          {
            name: "value:createMany",
            variants: (p, i) => {
              const ok = storable(p)
              const items = [
                { name: `cm-a-${i}`, code: p, createdBy: creatorId },
                { name: `cm-b-${i}`, code: `b:${p}`, description: p, allowedGlobals: { [p]: null }, createdBy: creatorId }
              ]
              return [
                v(
                  "createMany",
                  ["LuaScript", items],
                  ok ? equals(2) : codeIs(422),
                  ok
                    ? () => {
                        model.set(`cm-a-${i}`, { name: `cm-a-${i}`, description: null, code: p, allowedGlobals: [] })
                        model.set(`cm-b-${i}`, { name: `cm-b-${i}`, description: p, code: `b:${p}`, allowedGlobals: { [p]: null } })
                      }
                    : undefined
                )
              ]
            }
          },
          {
            // A transaction that writes the payload, counts it and looks it up.
            name: "value:transaction",
            variants: (p) => {
              const tx = `tx:${p}`
              const ops = [
                { method: "create", params: ["LuaScript", { name: tx, code: p, createdBy: creatorId }] },
                { method: "count", params: ["LuaScript", { name: tx }] },
                { method: "findByField", params: ["LuaScript", "name", tx] }
              ]
              const check: Check = fits(tx)
                ? resultIs((r) => {
                    const [c, n, f] = r as [Rec, number, Rec | null]
                    return (
                      sameRecord({ name: tx, code: p })(c) ??
                      (n !== 1 ? `count in the transaction ${n}` : f?.id !== c.id ? "findByField in the transaction" : undefined)
                    )
                  })
                : (a) =>
                    codeIs(422)(a) ??
                    (a.error?.details?.operation === 0 && a.error.details.rolledBack === true
                      ? undefined
                      : "expected operation 0 rolled back")
              return [
                v(
                  "transaction",
                  [ops],
                  check,
                  fits(tx) ? () => void model.set(tx, { name: tx, description: null, code: p, allowedGlobals: [] }) : undefined
                )
              ]
            }
          },
          {
            // The second operation names the payload as its entity: the first is rolled back.
            name: "tx:failing-op",
            variants: (p, i) => {
              const at = storable(p) ? 1 : 0
              const ops = [
                { method: "create", params: ["LuaScript", { name: `txf-${i}`, code: p, createdBy: creatorId }] },
                { method: "list", params: [p] }
              ]
              return [
                v(
                  "transaction",
                  [ops],
                  (a) =>
                    codeIs(422)(a) ??
                    (a.error?.details?.operation === at && a.error.details.rolledBack === true
                      ? undefined
                      : `expected operation ${at} rolled back`)
                )
              ]
            }
          }
        ]
      ]
      const probes = CORPUS.flatMap(({ text }, i) => select(writes, text, i, false))
      // Every storable payload in createMany, 25 payloads (50 records) a request.
      for (const batch of chunks(
        CORPUS.flatMap(({ text: p }, i) => (storable(p) ? [{ p, i }] : [])),
        25
      )) {
        const items = batch.flatMap(({ p, i }) => [
          { name: `many-a-${i}`, code: p, createdBy: creatorId },
          { name: `many-b-${i}`, code: `b:${p}`, description: p, allowedGlobals: { [p]: null }, createdBy: creatorId }
        ])
        for (const { p, i } of batch) {
          model.set(`many-a-${i}`, { name: `many-a-${i}`, description: null, code: p, allowedGlobals: [] })
          model.set(`many-b-${i}`, { name: `many-b-${i}`, description: p, code: `b:${p}`, allowedGlobals: { [p]: null } })
        }
        probes.push({
          position: "value:createMany",
          payloads: batch.map((b) => b.i),
          method: "createMany",
          params: ["LuaScript", items],
          check: equals(items.length),
          idempotent: false
        })
      }
      expect((await phase("values", probes)).slice(0, 40)).toEqual([])
    })

    it("payloads in filters, identifiers, ids, includes, lookups, methods and credentials get the exact structured answer", async () => {
      const lua = [...model.values()] as unknown as ReadonlyArray<Rec>
      const luaId = ids.get("u-0")!
      const userId = String(users[1]!.id)

      /** The exact answer of a read with this filter, on these rows (records named by `key`). */
      const expectFilter = (
        rows: ReadonlyArray<Rec>,
        key: string,
        filter: Filter,
        method: string,
        fields: ReadonlyArray<string>
      ): Check => {
        if (!operands(filter).every(storable)) return codeIs(422)
        // Evaluated when the answer is checked (the short run builds many more variants than it sends).
        let memo: Set<string> | undefined
        const matches = () => (memo ??= new Set(rows.filter((r) => evaluate(r, filter)).map((r) => String(r[key]))))
        const matching = (r: unknown): string | undefined =>
          hasFields(r, fields) ??
          (matches().has(String((r as Rec)[key]))
            ? undefined
            : `found ${JSON.stringify((r as Rec)[key]).slice(0, 80)}, which does not match`)
        return resultIs((r) => {
          const hits = matches()
          if (method === "count") return r === hits.size ? undefined : `count ${String(r)}, expected ${hits.size}`
          if (method === "findFirst") return hits.size === 0 ? (r === null ? undefined : "expected null") : matching(r)
          const page = r as { data: Array<Rec>; total: number }
          if (page.total !== hits.size) return `total ${page.total}, expected ${hits.size}`
          if (page.data.length !== Math.min(hits.size, 100)) return `${page.data.length} records`
          for (const rec of page.data) {
            const bad = matching(rec)
            if (bad !== undefined) return bad
          }
          return undefined
        })
      }
      const targets = [
        ...LUA_TEXT.map((field) => ({ entity: "LuaScript", field: field as string, rows: lua, key: "name", fields: LUA_FIELDS })),
        ...USER_TEXT.map((field) => ({
          entity: "User",
          field: field as string,
          rows: users as ReadonlyArray<Rec>,
          key: "id",
          fields: USER_FIELDS
        }))
      ]
      const readParams = (method: string, entity: string, filter: Filter): ReadonlyArray<unknown> =>
        method === "list" ? [entity, { filter, limit: 100 }] : [entity, filter]
      const READS = ["count", "list", "findFirst"]
      const calls = (list: ReadonlyArray<[string, ReadonlyArray<unknown>]>, check: Check) => list.map(([m, params]) => v(m, params, check))

      const groups: ReadonlyArray<ReadonlyArray<Position>> = [
        [
          {
            // Every operator × every text field of the target and the canary × every read method
            // (operators vary fastest: consecutive payloads of the short run take different ones).
            name: "filter:value",
            variants: (p) =>
              READS.flatMap((m) =>
                targets.flatMap((t) =>
                  TEXT_OPS.map((op) => {
                    const filter = { [t.field]: { [op]: operandFor(op, p) } }
                    return v(m, readParams(m, t.entity, filter), expectFilter(t.rows, t.key, filter, m, t.fields))
                  })
                )
              )
          }
        ],
        [
          {
            // Several operators at once, under OR / AND / NOT.
            name: "filter:combination",
            variants: (p, i) => {
              const [f1, f2, f3] = [LUA_TEXT[i % 3]!, LUA_TEXT[(i + 1) % 3]!, LUA_TEXT[(i + 2) % 3]!]
              const or = {
                OR: [
                  { [f1]: { eq: p } },
                  { [f2]: { contains: p } },
                  { [f3]: { startsWith: p } },
                  { [f1]: { endsWith: p } },
                  { [f2]: { in: [p, NONE] } },
                  { AND: [{ [f3]: { gt: p } }, { [f1]: { lte: p } }] }
                ]
              }
              const and = {
                AND: [{ username: { ne: p } }, { email: { notIn: [p] } }, { role: { gte: p } }],
                NOT: { username: { contains: p } }
              }
              return [
                v("count", ["LuaScript", or], expectFilter(lua, "name", or, "count", LUA_FIELDS)),
                v("list", ["User", { filter: and, limit: 100 }], expectFilter(users, "id", and, "list", USER_FIELDS))
              ]
            }
          },
          {
            // Fields of other types take no string, isNull takes a boolean: 422.
            name: "filter:typed-value",
            variants: (p) => [
              ...LUA_TYPED.flatMap((f) =>
                ALL_OPS.map((op) => v("count", ["LuaScript", { [f]: { [op]: op === "in" || op === "notIn" ? [p] : p } }], codeIs(422)))
              ),
              v("count", ["LuaScript", { name: { isNull: p } }], codeIs(422))
            ]
          },
          {
            // Bulk writes on the canary whose payload filters match nothing.
            name: "bulk:filter",
            variants: (p) => {
              const zero = (["contains", "startsWith", "endsWith", "eq"] as const).find(
                (op) => !users.some((u) => holds(String(u.username), op, p) || holds(String(u.email), op, p))
              )!
              const check = storable(p) ? resultIs((r) => (r === 0 ? undefined : `${String(r)} canary rows written`)) : codeIs(422)
              return [
                v("deleteMany", ["User", { OR: [{ username: { [zero]: p } }, { email: { [zero]: p } }] }], check),
                v("updateMany", ["User", { username: { [zero]: p } }, { role: "supergod" }], check)
              ]
            }
          }
        ],
        [
          {
            name: "entity",
            variants: (p) =>
              calls(
                [
                  ["list", [p]],
                  ["count", [p]],
                  ["findFirst", [p, { name: "x" }]],
                  ["read", [p, luaId]],
                  ["create", [p, { name: "x" }]],
                  ["update", [p, luaId, { name: "x" }]],
                  ["delete", [p, luaId]],
                  ["findByField", [p, "name", "x"]],
                  ["upsert", [p, "name", "x", {}, {}]],
                  ["updateByField", [p, "name", "x", { code: "y" }]],
                  ["deleteByField", [p, "name", "x"]],
                  ["createMany", [p, [{ name: "x" }]]],
                  ["updateMany", [p, { name: "x" }, { code: "y" }]],
                  ["deleteMany", [p, { name: "x" }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "filter:operator",
            variants: (p) => [
              ...READS.map((m) => v(m, readParams(m, "LuaScript", { name: { [p]: "x" } }), codeIs(422))),
              v("deleteMany", ["User", { username: { [p]: "x" } }], codeIs(422)),
              v("updateMany", ["User", { email: { contains: "@", [p]: "x" } }, { role: "supergod" }], codeIs(422))
            ]
          },
          {
            name: "filter:field",
            variants: (p) =>
              calls(
                [
                  ["list", ["LuaScript", { filter: { [p]: "x" } }]],
                  ["count", ["User", { OR: [{ username: "x" }, { [p]: "x" }] }]],
                  ["findFirst", ["LuaScript", { NOT: { [p]: { eq: "x" } } }]],
                  ["deleteMany", ["User", { [p]: "x" }]],
                  ["updateMany", ["User", { [p]: { contains: "a" } }, { role: "user" }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "data:field",
            variants: (p, i) =>
              calls(
                [
                  ["create", ["LuaScript", { name: `df-${i}`, code: "x", createdBy: creatorId, [p]: "x" }]],
                  ["update", ["LuaScript", luaId, { [p]: "x" }]],
                  ["createMany", ["LuaScript", [{ name: `dfm-${i}`, code: "x", createdBy: creatorId, [p]: 1 }]]],
                  ["upsert", ["LuaScript", "name", `dfu-${i}`, { code: "x", createdBy: creatorId, [p]: true }, { code: "y" }]],
                  ["updateMany", ["LuaScript", { name: "u-0" }, { [p]: "x" }]],
                  ["create", ["User", { username: `df${i}`, email: `df${i}@example.com`, [p]: "supergod" }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "sort:field",
            variants: (p) =>
              calls(
                [
                  ["list", ["LuaScript", { sort: { [p]: "asc" } }]],
                  ["list", ["LuaScript", { sort: [{ name: "asc" }, { [p]: "desc" }] }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "sort:direction",
            variants: (p) =>
              calls(
                [
                  ["list", ["LuaScript", { sort: { name: p } }]],
                  ["list", ["User", { sort: [{ username: p }] }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "include",
            variants: (p) =>
              calls(
                [
                  ["list", ["LuaScript", { include: [p] }]],
                  ["list", ["LuaScript", { include: { [p]: true } }]],
                  ["list", ["LuaScript", { include: ["creator", p] }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "list:option",
            variants: (p) =>
              calls(
                [
                  ["list", ["LuaScript", { [p]: 1 }]],
                  ["list", ["LuaScript", { page: p }]],
                  ["list", ["LuaScript", { limit: p }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "lookup:field",
            variants: (p) =>
              calls(
                [
                  ["findByField", ["LuaScript", p, "x"]],
                  ["updateByField", ["LuaScript", p, "x", { code: "y" }]],
                  ["deleteByField", ["User", p, "x"]],
                  ["upsert", ["LuaScript", p, "x", { code: "y", createdBy: creatorId }, { code: "y" }]]
                ],
                codeIs(422)
              )
          }
        ],
        [
          {
            // The payload alone, or after a real id: never a match.
            name: "id",
            variants: (p) =>
              calls(
                [
                  ["read", ["LuaScript", p]],
                  ["update", ["LuaScript", p, { description: "x" }]],
                  ["delete", ["LuaScript", p]],
                  ["read", ["LuaScript", `${luaId}${p}`]],
                  ["delete", ["User", `${userId}${p}`]],
                  ["update", ["User", `${userId}${p}`, { role: "supergod" }]]
                ],
                codeIs(404)
              )
          },
          {
            name: "id:foreign-key",
            variants: (p, i) =>
              calls(
                [
                  ["create", ["LuaScript", { name: `fk-${i}`, code: "x", createdBy: p }]],
                  ["createMany", ["LuaScript", [{ name: `fkm-${i}`, code: "x", createdBy: p }]]],
                  ["updateMany", ["LuaScript", { name: "u-0" }, { createdBy: p }]]
                ],
                codeIs(422)
              )
          },
          {
            name: "lookup:value",
            variants: (p) => {
              const ok = storable(p)
              const named = model.get(p)
              return [
                v(
                  "findByField",
                  ["LuaScript", "name", p],
                  !ok
                    ? codeIs(422)
                    : resultIs((r) =>
                        named === undefined
                          ? r === null
                            ? undefined
                            : "expected null"
                          : (hasFields(r, LUA_FIELDS) ?? sameRecord({ name: p, code: named.code, description: named.description })(r))
                      )
                ),
                v("findByField", ["User", "email", p], ok ? resultIs((r) => (r === null ? undefined : "expected null")) : codeIs(422)),
                v("updateByField", ["User", "username", p, { role: "supergod" }], codeIs(ok ? 404 : 422)),
                v("deleteByField", ["User", "email", p], codeIs(ok ? 404 : 422))
              ]
            }
          },
          { name: "method", variants: (p) => [v(p, ["LuaScript"], codeIs(400))] },
          { name: "tx:method", variants: (p) => [v("transaction", [[{ method: p, params: ["LuaScript"] }]], codeIs(400))] }
        ],
        [
          {
            name: "auth:token",
            variants: (p) => [
              { ...v("count", ["LuaScript"], codeIs(p.length > 4096 ? 400 : 401)), auth: { token: p } },
              { ...v("list", ["User"], codeIs(p.length > 256 ? 400 : 401)), auth: { token: p, userId: p } }
            ]
          },
          {
            name: "auth:user_id",
            variants: (p) => [
              { ...v("count", ["LuaScript"], codeIs(p.length > 256 ? 400 : 401)), auth: { token: serviceAuth.token, user_id: p } }
            ]
          },
          {
            name: "auth:authenticate",
            variants: (p) => [{ ...v("authenticate", [{ token: p, user_id: "x" }], codeIs(p.length > 4096 ? 400 : 401)), auth: null }]
          }
        ]
      ]
      const probes = CORPUS.flatMap(({ text }, i) => select(groups, text, i, true))

      // Sweeps: the whole corpus through every operator, and through the identifier positions
      // whose validation reports every bad key, 40 payloads a request.
      const all = CORPUS.map((_, i) => i)
      const good = all.filter((i) => storable(CORPUS[i]!.text))
      TEXT_OPS.forEach((op, k) => {
        const field = LUA_TEXT[k % 3]!
        for (const batch of chunks(good, 40)) {
          const filter = { OR: batch.map((i) => ({ [field]: { [op]: operandFor(op, CORPUS[i]!.text) } })) }
          probes.push({
            position: "filter:value",
            payloads: batch,
            method: "count",
            params: ["LuaScript", filter],
            check: expectFilter(lua, "name", filter, "count", LUA_FIELDS),
            idempotent: true
          })
        }
      })
      for (const batch of chunks(all, 40)) {
        const keys = batch.map((i) => CORPUS[i]!.text)
        const obj = Object.fromEntries(keys.map((k) => [k, "x"]))
        const sweep = (position: string, method: string, params: ReadonlyArray<unknown>, paths: ReadonlyArray<string>) =>
          probes.push({ position, payloads: batch, method, params, check: reportsAll(paths), idempotent: true })
        sweep(
          "filter:field",
          "count",
          ["LuaScript", obj],
          keys.map((k) => `filter.${k}`)
        )
        sweep(
          "filter:operator",
          "count",
          ["LuaScript", { name: obj }],
          keys.map((k) => `filter.name.${k}`)
        )
        sweep("data:field", "create", ["LuaScript", { name: "sweep", code: "x", createdBy: creatorId, ...obj }], keys)
      }
      const failures = await phase("filters, identifiers, ids, lookups, credentials", probes)

      // Request ids: echoed exactly (a usable id), or answered with id null and 400.
      const sock = await openSocket(daemon.port)
      for (const [i, { text }] of CORPUS.entries())
        sock.send(JSON.stringify({ id: text, method: "count", params: ["User", { role: { ne: `r-${i}` } }], auth: serviceAuth }))
      const answers: Array<Answer> = []
      for (let k = 0; k < CORPUS.length; k++) answers.push(await sock.next(30_000))
      await sock.close()
      for (const [i, { text }] of CORPUS.entries()) {
        const usable = text.length <= 256
        const a = answers.find((x) => x.id === (usable ? text : null))
        const probe: Probe = {
          position: "request:id",
          payloads: [i],
          method: "count",
          params: ["User"],
          check: () => undefined,
          idempotent: true
        }
        stats.requests++
        stats.positions.add(probe.position)
        const problem =
          a === undefined
            ? "no answer with this id"
            : (structural(a, [text]) ??
              (usable ? (a.result === users.length ? undefined : "expected the count of canary users") : codeIs(400)(a)))
        if (a !== undefined && structural(a, [text]) === undefined) stats.structured++
        if (problem !== undefined) failures.push(describeProbe(probe, a, problem))
      }
      expect(failures.slice(0, 40)).toEqual([])
    })

    it("bulk and lookup deletes with payloads remove exactly the expected rows", async () => {
      const removed: Array<string> = []
      const deletes: ReadonlyArray<ReadonlyArray<Position>> = [
        [
          {
            name: "bulk:deleteMany",
            variants: (p) => {
              const filter = { AND: [{ name: { startsWith: "many-a-" } }, { code: { eq: p } }] }
              const hits = [...model.values()].filter((r) => evaluate(r as unknown as Rec, filter)).map((r) => r.name)
              return [
                v("deleteMany", ["LuaScript", filter], storable(p) ? equals(hits.length) : codeIs(422), () => void removed.push(...hits))
              ]
            }
          },
          {
            name: "lookup:deleteByField",
            variants: (p) => {
              const tx = `tx:${p}`
              const exists = model.has(tx)
              return [
                v(
                  "deleteByField",
                  ["LuaScript", "name", tx],
                  exists ? equals(true) : codeIs(storable(p) ? 404 : 422),
                  exists ? () => void removed.push(tx) : undefined
                )
              ]
            }
          }
        ]
      ]
      const probes = CORPUS.flatMap(({ text }, i) => select(deletes, text, i, false))
      const failures = await phase("deletes", probes)
      for (const name of removed) model.delete(name)
      expect(failures.slice(0, 40)).toEqual([])
    })

    it("LIKE wildcards, the escape character and brackets match literally", async () => {
      const names = async (op: string, value: string) => {
        const r = (await call("list", [
          "LuaScript",
          { filter: { AND: [{ name: { startsWith: "wild~" } }, { name: { [op]: value } }] }, sort: { name: "asc" }, limit: 100 }
        ])) as { data: Array<Rec> }
        return r.data.map((x) => String(x.name))
      }
      const cases: ReadonlyArray<[string, string, ReadonlyArray<string>]> = [
        ["contains", "%", ["wild~100%"]],
        ["contains", "_", ["wild~a_b"]],
        ["endsWith", "0%", ["wild~100%"]],
        ["startsWith", "wild~100", ["wild~100%", "wild~1000"]],
        ["startsWith", "wild~a_", ["wild~a_b"]],
        ["endsWith", "a%b", []],
        ["contains", "!", ["wild~!!", "wild~!x"]],
        ["contains", "!!", ["wild~!!"]],
        ["contains", "!x", ["wild~!x"]],
        ["contains", "\\", ["wild~\\x"]],
        ["contains", "[a]", ["wild~[a]"]],
        ["contains", "[a-z]", []],
        ["eq", "wild~a_b", ["wild~a_b"]],
        ["eq", "wild~a%b", []]
      ]
      const wrong: Array<string> = []
      for (const [op, value, expected] of cases) {
        const got = await names(op, value)
        if (got.join("|") !== [...expected].sort().join("|"))
          wrong.push(`${op} ${JSON.stringify(value)}: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
      }
      const underscore = (await call("count", ["User", { username: { contains: "_" } }])) as number
      const expectedUnderscore = users.filter((u) => String(u.username).includes("_")).length
      if (underscore !== expectedUnderscore) wrong.push(`User.username contains "_": ${underscore}, expected ${expectedUnderscore}`)
      console.log(`[injection] ${dialect} literal LIKE: ${cases.length + 1} checks, ${wrong.length} wrong`)
      expect(wrong).toEqual([])
    })

    it("after the run: schema, database objects, canary rows and untouched row counts are identical; the target holds exactly the expected rows", async () => {
      const after = await snapshot(dialect, direct)
      const schemaUnchanged = canon(after.schema) === canon(before.schema)
      const canaryUnchanged = canon(after.canary) === canon(before.canary)
      const untouched = Object.keys(before.counts).filter((t) => t !== TARGET_TABLE && t !== AUDIT_TABLE)
      const countsUnchanged = untouched.every((t) => after.counts[t] === before.counts[t])

      const stored = await direct.query(`SELECT name, description, code, allowed_globals FROM ${TARGET_TABLE}`)
      const targetProblems: Array<string> = []
      if (stored.length !== model.size) targetProblems.push(`${stored.length} rows, expected ${model.size}`)
      const seen = new Set<string>()
      for (const row of stored) {
        const name = String(row.name)
        seen.add(name)
        const m = model.get(name)
        if (m === undefined) targetProblems.push(`unexpected row ${JSON.stringify(name).slice(0, 100)}`)
        else if (
          row.description !== m.description ||
          row.code !== m.code ||
          canon(jsonValue(row.allowed_globals)) !== canon(m.allowedGlobals)
        ) {
          targetProblems.push(
            `row ${JSON.stringify(name).slice(0, 100)} holds ${JSON.stringify([row.description, row.code, row.allowed_globals]).slice(0, 200)}`
          )
        }
      }
      for (const name of model.keys()) if (!seen.has(name)) targetProblems.push(`missing row ${JSON.stringify(name).slice(0, 100)}`)
      const throughDaemon = (await call("count", ["LuaScript"])) as number
      if (throughDaemon !== model.size) targetProblems.push(`count through the daemon ${throughDaemon}, expected ${model.size}`)
      const pwned = fs.readdirSync(path.dirname(PWNED_PREFIX)).filter((f) => f.startsWith(path.basename(PWNED_PREFIX)))

      report("injection", dialect, {
        payloads: CORPUS.length,
        requests: stats.requests,
        positions: stats.positions.size,
        structured_answers: stats.structured,
        max_ms: Math.round(stats.maxMs),
        slow_rechecked: stats.rechecked,
        schema_unchanged: schemaUnchanged,
        rows_unchanged: canaryUnchanged && countsUnchanged && targetProblems.length === 0,
        target_rows: stored.length,
        seconds: Math.round((performance.now() - started) / 100) / 10
      })
      expect(after.schema).toEqual(before.schema)
      expect(after.canary).toEqual(before.canary)
      expect(Object.fromEntries(untouched.map((t) => [t, after.counts[t]]))).toEqual(
        Object.fromEntries(untouched.map((t) => [t, before.counts[t]]))
      )
      expect(targetProblems.slice(0, 40)).toEqual([])
      expect(pwned).toEqual([])
      expect(stats.structured).toBe(stats.requests)
      expect(stats.maxMs).toBeLessThan(SLOW_MS)
    })

    it("the SQL audit table keeps a record of every request, whatever its id holds", async () => {
      // The table holds JSON: NUL and unpaired surrogates are stored as U+FFFD (layers/AuditLog.ts).
      const asStored = (t: string) => t.replaceAll("\u0000", "\uFFFD").toWellFormed()
      const wanted = CORPUS.map((c) => asStored(c.text)).filter((t) => t.length <= 256)
      // Records are inserted in the background: wait until all are there, or none came for 2 s.
      let recorded = new Set<unknown>()
      let rows = -1
      let still = 0
      await until(
        "the audit table to take every record",
        async () => {
          const all = await direct.query(`SELECT record FROM ${AUDIT_TABLE}`)
          recorded = new Set(all.map((r) => (jsonValue(r.record) as { requestId?: unknown }).requestId))
          still = all.length === rows ? still + 1 : 0
          rows = all.length
          return wanted.every((p) => recorded.has(p)) || still >= 8 ? true : undefined
        },
        20_000,
        250
      ).catch(() => undefined) // what is missing then is reported below
      const missing = CORPUS.map((c, i) => ({ i, kind: c.kind, id: c.text })).filter(
        (c) => c.id.length <= 256 && !recorded.has(asStored(c.id))
      )
      console.log(`[injection] ${dialect} audit table: ${wanted.length - missing.length}/${wanted.length} payload request ids recorded`)
      expect(missing.map((m) => `#${m.i} (${m.kind}) ${JSON.stringify(m.id)}`)).toEqual([])
    })
  })
}
