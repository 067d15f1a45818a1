import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Either } from "effect"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { schemaDdl } from "../../src/entity/Ddl.js"
import { loadRegistry } from "../../src/entity/Load.js"
import type { EntityDef } from "../../src/entity/Model.js"
import { toWireError } from "../../src/Errors.js"
import { compileFilter, type FilterNode, hasFieldCondition, parseFilter } from "../../src/query/Filter.js"
import { complexity, FILTER_NODE_COST } from "../../src/query/Complexity.js"

const registry = loadRegistry(fileURLToPath(new URL("../../config/entities", import.meta.url)))
const entity = (name: string): EntityDef => {
  const e = registry.entities.get(name)
  if (e === undefined) throw new Error(`no entity ${name}`)
  return e
}
const User = entity("User")
const Tree = entity("ComponentHierarchy")
const Credential = entity("Credential")
const PageView = entity("PageView")

const UUID_A = "0f8fad5b-d9cb-469f-a165-70867728950e"

const parsed = (e: EntityDef, spec: unknown): FilterNode => {
  const r = parseFilter(e, spec)
  if (Either.isLeft(r)) throw new Error(`expected a valid filter, got ${JSON.stringify(r.left.fields)}`)
  return r.right
}

/** The issues of a refused filter, as `{field, error}`; also checks that it maps to 422. */
const issues = (e: EntityDef, spec: unknown): Array<{ field: string; error: string }> => {
  const r = parseFilter(e, spec)
  if (Either.isRight(r)) throw new Error(`expected ${JSON.stringify(spec)} to be refused`)
  expect(toWireError(r.left).code).toBe(422)
  return r.left.fields.map((f) => ({ field: f.field, error: f.error }))
}
const fieldsOf = (e: EntityDef, spec: unknown) => issues(e, spec).map((i) => i.field)

const withSqlite = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return yield* f(sql)
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
  )

/** `[sql, params]` of `SELECT 1 WHERE <filter>` in the SQLite dialect. */
const compiled = (e: EntityDef, spec: unknown, qualify?: string) =>
  withSqlite((sql) =>
    Effect.sync(() => {
      const [text, params] = sql`SELECT 1 WHERE ${compileFilter(sql, "sqlite", parsed(e, spec), qualify)}`.compile()
      return { text: text.slice("SELECT 1 WHERE ".length), params: [...params] }
    })
  )

describe("parseFilter: accepted filters", () => {
  it("treats undefined and null as no filter", () => {
    for (const spec of [undefined, null]) {
      const n = parsed(User, spec)
      expect(n).toEqual({ _tag: "And", nodes: [] })
      expect(hasFieldCondition(n)).toBe(false)
    }
  })

  it("reads a plain value as equality", () => {
    const n = parsed(User, { username: "alice" })
    expect(n._tag).toBe("Cmp")
    if (n._tag !== "Cmp") return
    expect(n.field.name).toBe("username")
    expect(n.op).toBe("eq")
    expect(n.value).toBe("alice")
  })

  it("reads a plain null as IS NULL", () => {
    expect(parsed(Tree, { parentId: null })).toMatchObject({ _tag: "IsNull", isNull: true })
  })

  it("accepts every operator on a field type it applies to", () => {
    const cases: Array<[EntityDef, Record<string, unknown>, string]> = [
      [User, { username: { eq: "a" } }, "Cmp"],
      [User, { username: { ne: "a" } }, "Cmp"],
      [User, { username: { gt: "a" } }, "Cmp"],
      [User, { createdAt: { gte: "2024-01-01T00:00:00Z" } }, "Cmp"],
      [Tree, { order: { lt: 3 } }, "Cmp"],
      [Tree, { order: { lte: 3 } }, "Cmp"],
      [User, { role: { in: ["admin", "god"] } }, "In"],
      [User, { role: { notIn: ["user"] } }, "In"],
      [User, { email: { contains: "@x" } }, "Like"],
      [User, { username: { startsWith: "al" } }, "Like"],
      [User, { email: { endsWith: ".io" } }, "Like"],
      [Tree, { parentId: { isNull: true } }, "IsNull"],
      [Tree, { props: { isNull: false } }, "IsNull"],
      [PageView, { isActive: true }, "Cmp"],
      [PageView, { isActive: { ne: false } }, "Cmp"]
    ]
    for (const [e, spec, tag] of cases) expect(parsed(e, spec)._tag, JSON.stringify(spec)).toBe(tag)
  })

  it("reads {eq: null} and {ne: null} as null tests", () => {
    expect(parsed(Tree, { parentId: { eq: null } })).toMatchObject({ _tag: "IsNull", isNull: true })
    expect(parsed(Tree, { parentId: { ne: null } })).toMatchObject({ _tag: "IsNull", isNull: false })
  })

  it("canonicalizes operands: UUIDs lower-cased, date-times to Date", () => {
    const n = parsed(User, { id: UUID_A.toUpperCase() })
    expect(n).toMatchObject({ _tag: "Cmp", value: UUID_A })
    const d = parsed(User, { createdAt: { lt: "2024-03-01T01:00:00+01:00" } })
    if (d._tag !== "Cmp") throw new Error("expected Cmp")
    expect(d.value).toBeInstanceOf(Date)
    expect((d.value as Date).toISOString()).toBe("2024-03-01T00:00:00.000Z")
  })

  it("combines several operators on one field with AND", () => {
    const n = parsed(Tree, { order: { gte: 1, lt: 3 } })
    expect(n._tag).toBe("And")
    if (n._tag === "And") expect(n.nodes.map((c) => (c._tag === "Cmp" ? c.op : c._tag))).toEqual(["gte", "lt"])
  })

  it("builds AND, OR and NOT trees", () => {
    const n = parsed(User, { OR: [{ username: "a" }, { AND: [{ role: "admin" }, { NOT: { email: "x@y.z" } }] }] })
    expect(n).toMatchObject({
      _tag: "Or",
      nodes: [{ _tag: "Cmp" }, { _tag: "And", nodes: [{ _tag: "Cmp" }, { _tag: "Not", node: { _tag: "Cmp" } }] }]
    })
  })

  it("accepts a NOT with a list (all of them negated together)", () => {
    expect(parsed(User, { NOT: [{ username: "a" }, { role: "god" }] })).toMatchObject({
      _tag: "Not",
      node: { _tag: "And", nodes: [{ _tag: "Cmp" }, { _tag: "Cmp" }] }
    })
  })
})

describe("parseFilter: refused filters (422 naming the path)", () => {
  it("refuses an unknown field", () => {
    expect(issues(User, { nope: 1 })).toEqual([{ field: "filter.nope", error: "unknown field of User" }])
  })

  it("names the path of an unknown field inside OR / AND / NOT", () => {
    expect(fieldsOf(User, { OR: [{ username: "a" }, { nope: 1 }] })).toEqual(["filter.OR[1].nope"])
    expect(fieldsOf(User, { AND: [{ OR: [{ nope: 1 }] }] })).toEqual(["filter.AND[0].OR[0].nope"])
    expect(fieldsOf(User, { NOT: { nope: 1 } })).toEqual(["filter.NOT.nope"])
    expect(fieldsOf(User, { NOT: [{ username: "a" }, { nope: 1 }] })).toEqual(["filter.NOT[1].nope"])
  })

  it("uses the caller's prefix for the path", () => {
    const r = parseFilter(User, { nope: 1 }, "options.filter")
    expect(Either.isLeft(r) && r.left.fields[0]?.field).toBe("options.filter.nope")
  })

  it("reports every problem, not only the first", () => {
    expect(fieldsOf(User, { nope: 1, username: 5, OR: [{ email: { like: "x" } }] })).toEqual([
      "filter.nope",
      "filter.username",
      "filter.OR[0].email.like"
    ])
  })

  it("refuses snake_case column names and lower-case combinators (the wire is camelCase)", () => {
    expect(fieldsOf(User, { created_at: "2024-01-01T00:00:00Z" })).toEqual(["filter.created_at"])
    expect(fieldsOf(User, { or: [] })).toEqual(["filter.or"])
  })

  it("refuses inherited object names as fields", () => {
    expect(fieldsOf(User, JSON.parse('{"__proto__": {"x": 1}, "constructor": 1}'))).toEqual(["filter.__proto__", "filter.constructor"])
  })

  it("refuses a never_expose field as unknown (Credential.passwordHash)", () => {
    expect(Credential.byName.get("passwordHash")?.neverExpose).toBe(true)
    expect(issues(Credential, { passwordHash: { startsWith: "$2" } })).toEqual([
      { field: "filter.passwordHash", error: "unknown field of Credential" }
    ])
    expect(fieldsOf(Credential, { OR: [{ username: "a" }, { passwordHash: null }] })).toEqual(["filter.OR[1].passwordHash"])
  })

  it("refuses an unknown operator", () => {
    const [i] = issues(User, { username: { like: "a%" } })
    expect(i?.field).toBe("filter.username.like")
    expect(i?.error).toMatch(/^unknown operator/)
  })

  it("refuses a UUID field compared with a non-UUID", () => {
    expect(issues(User, { id: "42" })).toEqual([{ field: "filter.id", error: "must be a UUID" }])
    expect(issues(Tree, { pageId: { in: [UUID_A, "nope"] } })).toEqual([{ field: "filter.pageId.in[1]", error: "must be a UUID" }])
  })

  it("refuses an integer field compared with a string or a fraction", () => {
    expect(issues(Tree, { order: "1" })).toEqual([
      { field: "filter.order", error: "must be an integer between -2147483648 and 2147483647" }
    ])
    expect(fieldsOf(Tree, { order: { gt: 1.5 } })).toEqual(["filter.order.gt"])
  })

  it("refuses an integer operand outside the 32-bit range every dialect stores", () => {
    expect(fieldsOf(Tree, { order: { gt: 2 ** 40 } })).toEqual(["filter.order.gt"])
    expect(fieldsOf(Tree, { order: { in: [1, -(2 ** 31) - 1] } })).toEqual(["filter.order.in[1]"])
    expect(Either.isRight(parseFilter(Tree, { order: 2147483647 }))).toBe(true)
  })

  it("refuses a string field compared with a number, NUL or a lone surrogate", () => {
    expect(issues(User, { username: 5 })).toEqual([{ field: "filter.username", error: "must be a string" }])
    expect(fieldsOf(User, { username: "a\u0000b" })).toEqual(["filter.username"])
    expect(fieldsOf(User, { username: { contains: "\ud800" } })).toEqual(["filter.username.contains"])
  })

  it("refuses booleans given as strings and date-times without a zone", () => {
    expect(fieldsOf(PageView, { isActive: "true" })).toEqual(["filter.isActive"])
    expect(issues(User, { createdAt: { gt: "2024-01-01T00:00:00" } })[0]?.error).toMatch(/time zone/)
    // Date.parse rolls impossible days over into the next month; the filter must refuse them.
    expect(fieldsOf(User, { createdAt: { gt: "2023-02-29T00:00:00Z" } })).toEqual(["filter.createdAt.gt"])
    expect(fieldsOf(User, { createdAt: { gt: "2024-04-31T00:00:00Z" } })).toEqual(["filter.createdAt.gt"])
    expect(parsed(User, { createdAt: { gt: "2024-02-29T00:00:00Z" } })._tag).toBe("Cmp")
  })

  it("tests JSON fields only with isNull", () => {
    expect(issues(Tree, { props: { a: 1 } })[0]?.field).toBe("filter.props.a")
    expect(issues(Tree, { props: "x" })).toEqual([{ field: "filter.props", error: "JSON fields can only be tested with isNull" }])
    expect(fieldsOf(Tree, { props: { eq: "x" } })).toEqual(["filter.props.eq"])
    expect(fieldsOf(Tree, { props: { gt: 1 } })).toEqual(["filter.props.gt"])
    expect(fieldsOf(Tree, { props: { contains: "x" } })).toEqual(["filter.props.contains"])
    expect(fieldsOf(Tree, { props: { in: [{}] } })).toEqual(["filter.props.in"])
    // An empty list names no JSON value, but the field still may not be tested that way.
    expect(issues(Tree, { props: { in: [] } })).toEqual([{ field: "filter.props.in", error: "JSON fields can only be tested with isNull" }])
    expect(fieldsOf(Tree, { props: { notIn: [] } })).toEqual(["filter.props.notIn"])
    expect(parsed(Tree, { props: { isNull: true } })._tag).toBe("IsNull")
  })

  it("refuses ordering and LIKE on types they do not apply to", () => {
    expect(issues(PageView, { isActive: { gt: false } })).toEqual([
      { field: "filter.isActive.gt", error: "boolean fields cannot be ordered" }
    ])
    expect(issues(Tree, { order: { contains: "1" } })).toEqual([{ field: "filter.order.contains", error: "only applies to text fields" }])
    expect(fieldsOf(User, { id: { startsWith: "0f" } })).toEqual(["filter.id.startsWith"])
  })

  it("refuses malformed operator arguments", () => {
    expect(fieldsOf(User, { username: ["a", "b"] })).toEqual(["filter.username"])
    expect(fieldsOf(User, { username: {} })).toEqual(["filter.username"])
    expect(fieldsOf(User, { username: { in: "a" } })).toEqual(["filter.username.in"])
    expect(fieldsOf(Tree, { parentId: { isNull: "yes" } })).toEqual(["filter.parentId.isNull"])
    expect(fieldsOf(User, { OR: { username: "a" } })).toEqual(["filter.OR"])
    expect(fieldsOf(User, { OR: [1] })).toEqual(["filter.OR[0]"])
  })

  it("refuses a filter that is not an object", () => {
    for (const spec of ["x", 3, [{ username: "a" }], true]) expect(fieldsOf(User, spec)).toEqual(["filter"])
  })

  it("limits in-lists to 1000 values", () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `u${i}`)
    expect(parsed(User, { username: { in: names(1000) } })).toMatchObject({ _tag: "In" })
    expect(issues(User, { username: { in: names(1001) } })).toEqual([
      { field: "filter.username.in", error: "must have at most 1000 values" }
    ])
    expect(fieldsOf(User, { username: { notIn: names(1001) } })).toEqual(["filter.username.notIn"])
  })

  it("limits nesting to 16 levels", () => {
    const nest = (levels: number): unknown => {
      let spec: unknown = { username: "a" }
      for (let i = 0; i < levels; i++) spec = { AND: [spec] }
      return spec
    }
    expect(Either.isRight(parseFilter(User, nest(16)))).toBe(true)
    const [i] = issues(User, nest(17))
    expect(i?.error).toBe("must not nest deeper than 16 levels")
    expect(i?.field).toBe(`filter${".AND[0]".repeat(17)}`)
    const deepNot = (levels: number): unknown => (levels === 0 ? { username: "a" } : { NOT: deepNot(levels - 1) })
    expect(issues(User, deepNot(40))[0]?.error).toBe("must not nest deeper than 16 levels")
  })

  it("limits the number of conditions", () => {
    const many = Array.from({ length: 600 }, (_, i) => ({ username: `u${i}` }))
    expect(issues(User, { OR: many }).some((i) => /more than 500 conditions/.test(i.error))).toBe(true)
  })
})

describe("hasFieldCondition", () => {
  it("is false for filters that test no field", () => {
    for (const spec of [{}, { AND: [] }, { OR: [] }, { AND: [{ OR: [] }, {}] }, { NOT: {} }]) {
      expect(hasFieldCondition(parsed(User, spec)), JSON.stringify(spec)).toBe(false)
    }
  })

  it("is true as soon as one field is tested", () => {
    for (const spec of [
      { username: "x" },
      { AND: [{}, { role: "god" }] },
      { OR: [{ NOT: { email: { contains: "@" } } }] },
      { id: { in: [] } }
    ]) {
      expect(hasFieldCondition(parsed(User, spec)), JSON.stringify(spec)).toBe(true)
    }
  })
})

describe("compileFilter: SQL text and parameters", () => {
  it("binds an equality as a parameter", async () => {
    expect(await compiled(User, { username: "alice" })).toEqual({ text: `"username" = ?`, params: ["alice"] })
  })

  it("compiles an empty OR to a condition matching nothing and an empty AND to one matching everything", async () => {
    expect(await compiled(User, { OR: [] })).toEqual({ text: "1=0", params: [] })
    expect(await compiled(User, { AND: [] })).toEqual({ text: "1=1", params: [] })
    expect(await compiled(User, {})).toEqual({ text: "1=1", params: [] })
    expect(await compiled(User, undefined)).toEqual({ text: "1=1", params: [] })
  })

  it("compiles in: [] to 1=0 and notIn: [] to 1=1", async () => {
    expect(await compiled(User, { username: { in: [] } })).toEqual({ text: "1=0", params: [] })
    expect(await compiled(User, { username: { notIn: [] } })).toEqual({ text: "1=1", params: [] })
  })

  it("compiles in-lists with one parameter per value", async () => {
    expect(await compiled(User, { role: { in: ["admin", "god"] } })).toEqual({ text: `"role" IN (?,?)`, params: ["admin", "god"] })
    expect(await compiled(User, { role: { notIn: ["user"] } })).toEqual({ text: `"role" NOT IN (?)`, params: ["user"] })
  })

  it("wraps NOT in parentheses", async () => {
    expect(await compiled(User, { NOT: { OR: [{ username: "a" }, { role: "god" }] } })).toEqual({
      text: `NOT (("username" = ? OR "role" = ?))`,
      params: ["a", "god"]
    })
  })

  it("parenthesizes OR inside AND so that precedence is kept", async () => {
    const { text, params } = await compiled(User, { role: "user", OR: [{ username: "a" }, { username: "b" }] })
    expect(text).toBe(`("role" = ? AND ("username" = ? OR "username" = ?))`)
    expect(params).toEqual(["user", "a", "b"])
  })

  it("compiles comparison operators to their SQL", async () => {
    const ops: Array<[string, string]> = [
      ["eq", "="],
      ["ne", "<>"],
      ["gt", ">"],
      ["gte", ">="],
      ["lt", "<"],
      ["lte", "<="]
    ]
    for (const [op, symbol] of ops) {
      expect(await compiled(Tree, { order: { [op]: 2 } })).toEqual({ text: `"order" ${symbol} ?`, params: [2] })
    }
  })

  it("compiles null tests without parameters", async () => {
    expect(await compiled(Tree, { parentId: null })).toEqual({ text: `"parent_id" IS NULL`, params: [] })
    expect(await compiled(Tree, { parentId: { isNull: false } })).toEqual({ text: `"parent_id" IS NOT NULL`, params: [] })
  })

  it("escapes % _ and ! in LIKE patterns with ! and declares ESCAPE '!'", async () => {
    expect(await compiled(User, { username: { contains: "a%b_c!d" } })).toEqual({
      text: `"username" LIKE ? ESCAPE '!'`,
      params: ["%a!%b!_c!!d%"]
    })
    expect((await compiled(User, { username: { startsWith: "50%" } })).params).toEqual(["50!%%"])
    expect((await compiled(User, { username: { endsWith: "_x" } })).params).toEqual(["%!_x"])
  })

  it("binds encoded values: booleans as 0/1 and date-times as ISO strings on SQLite", async () => {
    expect(await compiled(PageView, { isActive: true })).toEqual({ text: `"is_active" = ?`, params: [1] })
    expect(await compiled(User, { createdAt: { gte: "2024-03-01T01:00:00+01:00" } })).toEqual({
      text: `"created_at" >= ?`,
      params: ["2024-03-01T00:00:00.000Z"]
    })
  })

  it("qualifies columns with a table alias when asked", async () => {
    expect(await compiled(User, { username: "a" }, "u")).toEqual({ text: `"u"."username" = ?`, params: ["a"] })
  })

  it("never inlines values into the SQL text", async () => {
    const evil = "x'); DROP TABLE users; --"
    const { text, params } = await compiled(User, {
      OR: [{ username: evil }, { email: { contains: evil } }, { role: { in: [evil] } }, { NOT: { username: { gt: evil } } }]
    })
    expect(text).not.toContain("DROP")
    expect(text).not.toContain("x'")
    expect(params).toEqual([evil, `%${evil}%`, evil, evil])
  })

  it("quotes column names that are SQL keywords (ComponentHierarchy.order)", async () => {
    expect((await compiled(Tree, { order: 1 })).text).toBe(`"order" = ?`)
  })
})

describe("compileFilter: semantics on SQLite", () => {
  const users: Array<[string, string, string, string, string]> = [
    ["00000000-0000-4000-8000-000000000001", "alice", "alice@x.io", "user", "2024-01-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000002", "Alan", "alan@x.io", "admin", "2024-02-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000003", "bob_smith", "bob@x.io", "god", "2024-03-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000004", "bobXsmith", "bobx@y.org", "user", "2024-04-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000005", "100%off", "p@x.io", "user", "2024-05-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000006", "1000off", "q@x.io", "supergod", "2024-06-01T00:00:00.000Z"],
    ["00000000-0000-4000-8000-000000000007", "wow!", "w@x.io", "user", "2024-07-01T00:00:00.000Z"]
  ]
  const PAGE = "00000000-0000-4000-8000-0000000000aa"
  const tree: Array<[string, string | null, number]> = [
    ["00000000-0000-4000-8000-0000000000c1", null, 0],
    ["00000000-0000-4000-8000-0000000000c2", "00000000-0000-4000-8000-0000000000c1", 1],
    ["00000000-0000-4000-8000-0000000000c3", "00000000-0000-4000-8000-0000000000c1", 2],
    ["00000000-0000-4000-8000-0000000000c4", "00000000-0000-4000-8000-0000000000c3", 3]
  ]

  /** Runs each filter against a fresh in-memory database and returns the matching ids' last digit(s). */
  const matching = (e: EntityDef, specs: ReadonlyArray<unknown>): Promise<Array<Array<string>>> =>
    withSqlite((sql) =>
      Effect.gen(function* () {
        yield* sql.unsafe("PRAGMA foreign_keys = ON")
        yield* sql.unsafe("PRAGMA case_sensitive_like = ON")
        for (const stmt of schemaDdl("sqlite", registry)) yield* sql.unsafe(stmt)
        for (const [id, username, email, role, at] of users) {
          yield* sql`INSERT INTO users (id, username, email, role, created_at, updated_at) VALUES (${id}, ${username}, ${email}, ${role}, ${at}, ${at})`
        }
        const now = "2024-01-01T00:00:00.000Z"
        yield* sql`INSERT INTO page_views (id, slug, title, level, layout, is_active, created_at, updated_at) VALUES (${PAGE}, ${"home"}, ${"Home"}, ${1}, ${"{}"}, ${1}, ${now}, ${now})`
        for (const [id, parent, order] of tree) {
          yield* sql`INSERT INTO component_hierarchy (id, page_id, parent_id, component_type, "order", props, created_at, updated_at) VALUES (${id}, ${PAGE}, ${parent}, ${"box"}, ${order}, ${"{}"}, ${now}, ${now})`
        }
        const out: Array<Array<string>> = []
        for (const spec of specs) {
          const rows = yield* sql<{
            id: string
          }>`SELECT id FROM ${sql(e.table)} WHERE ${compileFilter(sql, "sqlite", parsed(e, spec))} ORDER BY id`
          out.push(rows.map((r) => r.id.slice(-1)))
        }
        return out
      })
    )

  it("matches equality, comparison, in and notIn", async () => {
    expect(
      await matching(User, [
        { username: "alice" },
        { role: "user" },
        { role: { ne: "user" } },
        { role: { in: ["admin", "god"] } },
        { role: { notIn: ["user", "admin"] } },
        { username: { in: [] } },
        { username: { notIn: [] } },
        { id: "00000000-0000-4000-8000-000000000003".toUpperCase() }
      ])
    ).toEqual([["1"], ["1", "4", "5", "7"], ["2", "3", "6"], ["2", "3"], ["3", "6"], [], ["1", "2", "3", "4", "5", "6", "7"], ["3"]])
  })

  it("matches nothing for an empty OR and everything for an empty AND", async () => {
    expect(await matching(User, [{ OR: [] }, { AND: [] }, { role: "user", OR: [] }])).toEqual([[], ["1", "2", "3", "4", "5", "6", "7"], []])
  })

  it("matches AND, OR and NOT with the expected precedence", async () => {
    expect(
      await matching(User, [
        { role: "user", OR: [{ username: "alice" }, { username: "wow!" }] },
        { OR: [{ role: "god" }, { AND: [{ role: "user" }, { email: { endsWith: ".org" } }] }] },
        { NOT: { role: "user" } },
        { NOT: { OR: [{ role: "user" }, { role: "admin" }] } }
      ])
    ).toEqual([
      ["1", "7"],
      ["3", "4"],
      ["2", "3", "6"],
      ["3", "6"]
    ])
  })

  it("treats % _ and ! literally in contains / startsWith / endsWith", async () => {
    expect(
      await matching(User, [
        { username: { contains: "_" } },
        { username: { contains: "%" } },
        { username: { startsWith: "100%" } },
        { username: { endsWith: "!" } },
        { username: { contains: "b_s" } },
        { username: { contains: "!" } }
      ])
    ).toEqual([["3"], ["5"], ["5"], ["7"], ["3"], ["7"]])
  })

  it("compares LIKE case-sensitively (as on the other dialects)", async () => {
    expect(
      await matching(User, [
        { username: { startsWith: "al" } },
        { username: { startsWith: "Al" } },
        { username: { contains: "x" } },
        { username: { contains: "X" } }
      ])
    ).toEqual([["1"], ["2"], [], ["4"]])
  })

  it("compares strings and date-times in binary / time order", async () => {
    expect(
      await matching(User, [
        { username: { lt: "a" } },
        { createdAt: { gte: "2024-03-01T01:00:00+01:00", lt: "2024-05-01T00:00:00Z" } },
        { createdAt: { gt: "2024-06-30T23:00:00-02:00" } }
      ])
    ).toEqual([["2", "5", "6"], ["3", "4"], []])
  })

  it("tests nullable references and integers on ComponentHierarchy", async () => {
    expect(
      await matching(Tree, [
        { parentId: null },
        { parentId: { isNull: false } },
        { parentId: "00000000-0000-4000-8000-0000000000c1" },
        { order: { gte: 1, lt: 3 } },
        { NOT: { order: 0 } },
        { props: { isNull: false } },
        { pageId: PAGE, OR: [{ order: 3 }, { parentId: null }] }
      ])
    ).toEqual([["1"], ["2", "3", "4"], ["2", "3"], ["2", "3"], ["2", "3", "4"], ["1", "2", "3", "4"], ["1", "4"]])
  })
})

describe('mode "insensitive"', () => {
  it("folds the operands here (A-Z only) and the column in SQL, and binds them as parameters", async () => {
    expect(await compiled(User, { username: { contains: "Ab%É", mode: "insensitive" } })).toEqual({
      text: `lower("username") LIKE ? ESCAPE '!'`,
      params: ["%ab!%É%"]
    })
    expect(await compiled(User, { email: { in: ["A@X", "b@y"], mode: "insensitive" } })).toEqual({
      text: `lower("email") IN (?,?)`,
      params: ["a@x", "b@y"]
    })
    // the default mode leaves both sides alone
    expect(await compiled(User, { username: { eq: "Ab", mode: "default" } })).toEqual({ text: `"username" = ?`, params: ["Ab"] })
  })

  it("is refused on non-text fields, with ordering operators, alone, and with other values", () => {
    expect(fieldsOf(PageView, { level: { eq: 1, mode: "insensitive" } })).toEqual(["filter.level.mode"])
    expect(fieldsOf(User, { role: { eq: "user", mode: "insensitive" } })).toEqual(["filter.role.mode"])
    expect(fieldsOf(User, { username: { gt: "a", mode: "insensitive" } })).toEqual(["filter.username.mode"])
    expect(fieldsOf(User, { username: { eq: "a", gt: "a", mode: "insensitive" } })).toEqual(["filter.username.gt"])
    expect(fieldsOf(User, { username: { mode: "insensitive" } })).toEqual(["filter.username.mode"])
    expect(fieldsOf(User, { username: { mode: "default" } })).toEqual(["filter.username.mode"])
    expect(fieldsOf(User, { username: { eq: "a", mode: "Insensitive" } })).toEqual(["filter.username.mode"])
  })

  it("counts twice in the complexity score (the folded column uses no index)", () => {
    const plain = complexity({ filter: parsed(User, { username: { contains: "a" }, email: { in: ["x", "y"] } }) })
    const folded = complexity({
      filter: parsed(User, { username: { contains: "a", mode: "insensitive" }, email: { in: ["x", "y"], mode: "insensitive" } })
    })
    expect(folded.filterNodes).toBe(plain.filterNodes + 2)
    expect(folded.total).toBe(plain.total + 2 * FILTER_NODE_COST)
  })
})
