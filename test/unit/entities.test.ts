import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { adapterOf, type Dialect, dialectOf, schemaDdl } from "../../src/entity/Ddl.js"
import { buildRegistry, EntityLoadError, loadRegistry, readEntityFiles } from "../../src/entity/Load.js"
import type { EntityDef, FieldDef } from "../../src/entity/Model.js"
import { checkValue, validateCreate, validateCreateMany, validateUpdate, type Values } from "../../src/entity/Validate.js"
import { toWireError, type ValidationFailed } from "../../src/Errors.js"

const entitiesDir = fileURLToPath(new URL("../../config/entities", import.meta.url))
const registry = loadRegistry(entitiesDir)
const entity = (name: string): EntityDef => {
  const e = registry.entities.get(name)
  if (e === undefined) throw new Error(`no entity ${name}`)
  return e
}
const field = (e: EntityDef, name: string): FieldDef => {
  const f = e.byName.get(name)
  if (f === undefined) throw new Error(`no field ${e.name}.${name}`)
  return f
}
const User = entity("User")
const PageView = entity("PageView")
const Session = entity("Session")
const Tree = entity("ComponentHierarchy")

const UUID_A = "0f8fad5b-d9cb-469f-a165-70867728950e"

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-entities-unit-"))
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }))

describe("loadRegistry on config/entities", () => {
  it("loads the 8 entities with their tables", () => {
    const tables = Object.fromEntries([...registry.entities.values()].map((e) => [e.name, e.table]))
    expect(tables).toEqual({
      User: "users",
      Credential: "credentials",
      Session: "sessions",
      PageView: "page_views",
      ComponentHierarchy: "component_hierarchy",
      Workflow: "workflows",
      LuaScript: "lua_scripts",
      Package: "packages"
    })
  })

  it("uses camelCase wire names over snake_case columns", () => {
    const pairs = (e: EntityDef) => e.fields.map((f) => [f.name, f.column])
    expect(pairs(Tree)).toEqual([
      ["id", "id"],
      ["pageId", "page_id"],
      ["parentId", "parent_id"],
      ["componentType", "component_type"],
      ["order", "order"],
      ["props", "props"],
      ["createdAt", "created_at"],
      ["updatedAt", "updated_at"]
    ])
    expect(field(PageView, "isActive").column).toBe("is_active")
    expect(field(entity("Workflow"), "triggerConfig").column).toBe("trigger_config")
    expect(field(entity("LuaScript"), "allowedGlobals").column).toBe("allowed_globals")
    expect(field(Session, "lastActivity").column).toBe("last_activity")
    for (const e of registry.entities.values()) {
      for (const f of e.fields) expect(f.name, `${e.name}.${f.column}`).toMatch(/^[a-z][A-Za-z0-9]*$/)
    }
  })

  it("orders creation so that referenced tables come first", () => {
    const order = registry.creationOrder.map((e) => e.name)
    expect(order).toHaveLength(8)
    expect(new Set(order).size).toBe(8)
    const before = (a: string, b: string) => expect(order.indexOf(a), `${a} before ${b}`).toBeLessThan(order.indexOf(b))
    for (const dependent of ["Session", "Credential", "Workflow", "LuaScript", "Package"]) before("User", dependent)
    before("PageView", "ComponentHierarchy")
  })

  it("never exposes Credential.passwordHash", () => {
    const Credential = entity("Credential")
    const hash = field(Credential, "passwordHash")
    expect(hash.neverExpose).toBe(true)
    expect(hash.sensitive).toBe(true)
    expect(Credential.exposed.map((f) => f.name)).not.toContain("passwordHash")
    expect(Credential.exposed.map((f) => f.name)).toContain("username")
    for (const e of registry.entities.values()) {
      if (e.name !== "Credential") expect(e.exposed).toEqual(e.fields)
    }
  })

  it("names unique indexes uq_<table>_<cols> and plain ones idx_<table>_<cols>", () => {
    const names = (e: EntityDef, unique: boolean) => e.indexes.filter((i) => i.unique === unique).map((i) => i.name)
    expect(names(User, true)).toEqual(["uq_users_username", "uq_users_email"])
    expect(names(User, false)).toEqual(["idx_users_role"])
    expect(names(entity("Package"), true)).toEqual(["uq_packages_name", "uq_packages_name_version"])
    expect(names(Session, true)).toEqual(["uq_sessions_token"])
    expect(names(Tree, false)).toEqual([
      "idx_component_hierarchy_page_id",
      "idx_component_hierarchy_parent_id",
      "idx_component_hierarchy_page_id_order"
    ])
  })

  it("finds each entity's owner field", () => {
    expect(User.ownerField?.name).toBe("id")
    expect(Session.ownerField?.name).toBe("userId")
    expect(entity("Workflow").ownerField?.name).toBe("createdBy")
    expect(entity("LuaScript").ownerField?.name).toBe("createdBy")
    expect(PageView.ownerField).toBeUndefined()
  })

  it("derives field flags from the YAML", () => {
    const id = User.primaryKey
    expect([id.name, id.primary, id.generated, id.immutable, id.nullable]).toEqual(["id", true, true, true, false])
    expect(field(User, "role")).toMatchObject({
      type: "enum",
      required: false,
      default: "user",
      values: ["user", "admin", "god", "supergod"]
    })
    expect(field(User, "username")).toMatchObject({ required: true, unique: true, minLength: 3, maxLength: 50 })
    expect(field(Tree, "parentId")).toMatchObject({
      nullable: true,
      foreignKey: { entity: "ComponentHierarchy", field: "id", onDelete: "cascade" }
    })
    expect(field(PageView, "level")).toMatchObject({ type: "integer", min: 1, max: 5 })
    // Strings in an index get a bounded length (MySQL) even when the YAML gives none.
    expect(field(Session, "token").maxLength).toBe(255)
    expect(User.orderField?.name).toBe("createdAt")
  })

  it("throws EntityLoadError for a folder that does not exist or is empty", () => {
    expect(() => loadRegistry(path.join(tmpRoot, "missing"))).toThrow(EntityLoadError)
    const empty = fs.mkdtempSync(path.join(tmpRoot, "empty-"))
    try {
      loadRegistry(empty)
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(EntityLoadError)
      expect((e as EntityLoadError).problems).toEqual([`${empty}: no entity definitions (*.yaml) found`])
    }
  })
})

describe("buildRegistry / readEntityFiles: broken definitions", () => {
  const owner = (): Record<string, unknown> => ({
    entity: "Owner",
    table: "owners",
    fields: {
      id: { type: "uuid", primary: true, generated: true },
      name: { type: "string", required: true, max_length: 50 },
      handle: { type: "string", required: true, unique: true, max_length: 50 }
    }
  })
  const item = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    entity: "Item",
    fields: {
      id: { type: "uuid", primary: true, generated: true },
      owner_id: { type: "uuid", required: true, foreign_key: { entity: "Owner", field: "id", on_delete: "cascade" } },
      ...extra
    }
  })
  const problemsOf = (...docs: Array<Record<string, unknown>>): Array<string> => {
    const built = buildRegistry(docs.map((doc, i) => ({ file: `/defs/${i}.yaml`, doc })))
    if (built.problems.length > 0) expect(built.registry).toBeUndefined()
    return built.problems
  }

  it("accepts the well-formed base definitions (default plural table name)", () => {
    const built = buildRegistry([
      { file: "/defs/0.yaml", doc: owner() },
      { file: "/defs/1.yaml", doc: item() }
    ])
    expect(built.problems).toEqual([])
    expect(built.registry?.entities.get("Item")?.table).toBe("items")
    expect(built.registry?.creationOrder.map((e) => e.name)).toEqual(["Owner", "Item"])
  })

  it("reports an unknown field type with file and key path", () => {
    expect(problemsOf(owner(), item({ price: { type: "money" } }))).toEqual([
      expect.stringMatching(/^\/defs\/1\.yaml: fields\.price\.type: expected one of uuid, string/)
    ])
  })

  it("reports a foreign key to a missing entity", () => {
    expect(problemsOf(owner(), item({ tag_id: { type: "uuid", foreign_key: { entity: "Tag", field: "id" } } }))).toEqual([
      "/defs/1.yaml: fields.tag_id.foreign_key.entity: no entity Tag"
    ])
  })

  it("reports a foreign key to a missing field and to a non-unique field", () => {
    expect(problemsOf(owner(), item({ x: { type: "string", foreign_key: { entity: "Owner", field: "nope" } } }))).toEqual([
      "/defs/1.yaml: fields.x.foreign_key.field: Owner has no field nope"
    ])
    expect(problemsOf(owner(), item({ owner_name: { type: "string", foreign_key: { entity: "Owner", field: "name" } } }))).toEqual([
      "/defs/1.yaml: fields.owner_name.foreign_key.field: Owner.name must be primary or unique"
    ])
    expect(problemsOf(owner(), item({ owner_handle: { type: "string", foreign_key: { entity: "Owner", field: "handle" } } }))).toEqual([])
  })

  it("reports a foreign key whose type does not match", () => {
    expect(problemsOf(owner(), item({ h: { type: "integer", foreign_key: { entity: "Owner", field: "handle" } } }))).toEqual([
      "/defs/1.yaml: fields.h.foreign_key: type integer does not match Owner.handle (string)"
    ])
  })

  it("reports an unknown acl role and an unknown acl operation", () => {
    expect(problemsOf(owner(), { ...item(), acl: { read: { role: ["admin", "root"] }, list: { public: true } } })).toEqual([
      '/defs/1.yaml: acl.read.role: unknown role "root" (expected one of user, admin, god, supergod)',
      "/defs/1.yaml: acl.list: unknown operation (expected create, read, update or delete)"
    ])
  })

  it("reports a self rule without an owner field", () => {
    expect(problemsOf({ ...owner(), acl: { read: { self: true } } })).toEqual([
      "/defs/0.yaml: acl: a self rule needs an owner field (owner_field: <field>)"
    ])
  })

  it("reports a pattern that is not a regular expression", () => {
    expect(problemsOf(owner(), item({ code: { type: "string", pattern: "([a-z" } }))).toEqual([
      "/defs/1.yaml: fields.code.pattern: not a valid regular expression"
    ])
  })

  it("reports an entity defined twice and a table used twice", () => {
    const problems = problemsOf(owner(), owner())
    expect(problems).toContain("/defs/0.yaml: entity: Owner is defined twice")
    expect(problems).toContain("/defs/1.yaml: entity: Owner is defined twice")
    expect(problemsOf(owner(), { ...item(), table: "owners" })).toContain("/defs/1.yaml: table: owners is used twice")
  })

  it("reports field names that are not snake_case", () => {
    expect(problemsOf(owner(), item({ ownerName: { type: "string" } }))).toEqual([
      "/defs/1.yaml: fields.ownerName: field names must be snake_case identifiers (a-z, 0-9, _), at most 63 characters"
    ])
    expect(problemsOf(owner(), item({ "drop table": { type: "string" } }))).toHaveLength(1)
  })

  it("reports unknown keys, a missing primary key and a bad entity name", () => {
    expect(problemsOf(owner(), item({ x: { type: "string", max_lenght: 3 } }))).toEqual(["/defs/1.yaml: fields.x.max_lenght: unknown key"])
    expect(problemsOf({ entity: "NoKey", fields: { name: { type: "string" } } })).toEqual([
      "/defs/0.yaml: fields: expected exactly one primary field (found 0)"
    ])
    expect(problemsOf({ ...owner(), entity: "bad name" })).toEqual([
      "/defs/0.yaml: entity: expected a PascalCase entity name (A-Z, a-z, 0-9)"
    ])
  })

  it("reports every problem at once", () => {
    expect(
      problemsOf(owner(), {
        ...item({ a: { type: "money" }, bCamel: { type: "string" }, c: { type: "string", pattern: "(" } }),
        acl: { read: { role: "root" } }
      })
    ).toHaveLength(4)
  })

  it("readEntityFiles names the file of each problem, including YAML syntax errors", () => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, "defs-"))
    fs.mkdirSync(path.join(dir, "nested"))
    fs.writeFileSync(path.join(dir, "owner.yaml"), "entity: Owner\nfields:\n  id: {type: uuid, primary: true, generated: true}\n")
    fs.writeFileSync(path.join(dir, "nested", "broken.yml"), "entity: Broken\nfields: [\n  id: x\n")
    fs.writeFileSync(path.join(dir, "list.yaml"), "- a\n- b\n")
    fs.writeFileSync(path.join(dir, "notes.txt"), "not an entity")
    const { raws, problems } = readEntityFiles(dir)
    expect(raws.map((r) => path.basename(r.file))).toEqual(["owner.yaml"])
    expect(problems.some((p) => p.startsWith(`${path.join(dir, "nested", "broken.yml")}: line `) && p.includes("YAML syntax error"))).toBe(
      true
    )
    expect(problems).toContain(`${path.join(dir, "list.yaml")}: expected a mapping with entity, fields, ...`)
    expect(() => loadRegistry(dir)).toThrow(/broken\.yml: line \d+: YAML syntax error/)
  })

  it("loadRegistry reports a broken definition with its file path", () => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, "defs-"))
    const file = path.join(dir, "item.yaml")
    fs.writeFileSync(
      file,
      "entity: Item\nfields:\n  id: {type: uuid, primary: true}\n  owner_id: {type: uuid, foreign_key: {entity: Owner, field: id}}\n"
    )
    expect(() => loadRegistry(dir)).toThrow(`${file}: fields.owner_id.foreign_key.entity: no entity Owner`)
  })
})

const issuesOf = (r: Either.Either<unknown, ValidationFailed>): Array<{ field: string; error: string }> => {
  if (Either.isRight(r)) throw new Error("expected validation to fail")
  expect(toWireError(r.left).code).toBe(422)
  return r.left.fields.map((f) => ({ field: f.field, error: f.error }))
}
const valuesOf = (r: Either.Either<Values, ValidationFailed>): Record<string, unknown> => {
  if (Either.isLeft(r)) throw new Error(`expected valid data, got ${JSON.stringify(r.left.fields)}`)
  return Object.fromEntries([...r.right].map(([f, v]) => [f.name, v]))
}
const errorOf = (e: EntityDef, data: Record<string, unknown>, key: string): string | undefined =>
  issuesOf(validateCreate(e, data)).find((i) => i.field === key)?.error

describe("validateCreate", () => {
  const alice = { username: "alice", email: "alice@example.com" }

  it("accepts a valid user and applies defaults", () => {
    expect(valuesOf(validateCreate(User, alice))).toEqual({ username: "alice", email: "alice@example.com", role: "user" })
    expect(valuesOf(validateCreate(User, { ...alice, role: "admin" })).role).toBe("admin")
  })

  it("applies JSON defaults as fresh copies", () => {
    const page = { pageId: UUID_A, componentType: "box" }
    const a = valuesOf(validateCreate(Tree, page))
    const b = valuesOf(validateCreate(Tree, page))
    expect(a.props).toEqual({})
    expect(a.order).toBe(0)
    expect(a.props).not.toBe(b.props)
  })

  it("reports missing required fields", () => {
    expect(issuesOf(validateCreate(User, {}))).toEqual([
      { field: "username", error: "is required" },
      { field: "email", error: "is required" }
    ])
  })

  it("refuses a record that is not an object", () => {
    for (const data of [null, [], "x", 3])
      expect(issuesOf(validateCreate(User, data))).toEqual([{ field: "data", error: "must be an object of field values" }])
  })

  it("refuses fields the daemon sets", () => {
    expect(issuesOf(validateCreate(User, { ...alice, id: UUID_A, createdAt: "2024-01-01T00:00:00Z" }))).toEqual([
      { field: "id", error: "is set by the daemon" },
      { field: "createdAt", error: "is set by the daemon" }
    ])
  })

  it("refuses unknown fields (including column names and never_expose-free typos)", () => {
    expect(issuesOf(validateCreate(User, { ...alice, nickname: "x", created_at: "x" }))).toEqual([
      { field: "nickname", error: "unknown field of User" },
      { field: "created_at", error: "unknown field of User" }
    ])
  })

  it("checks lengths in code points (an emoji counts as one)", () => {
    expect(errorOf(User, { ...alice, username: "ab" }, "username")).toBe("must be at least 3 characters long")
    expect(errorOf(User, { ...alice, username: "a".repeat(51) }, "username")).toBe("must be at most 50 characters long")
    const componentType = field(Tree, "componentType")
    expect(Either.isRight(checkValue(componentType, "😀".repeat(100)))).toBe(true)
    expect(checkValue(componentType, "😀".repeat(101))).toEqual(Either.left("must be at most 100 characters long"))
  })

  it("checks patterns, emails and enum values", () => {
    expect(errorOf(User, { ...alice, username: "al ice" }, "username")).toBe("must match the pattern ^[a-zA-Z0-9_-]+$")
    expect(errorOf(User, { ...alice, email: "not-an-email" }, "email")).toBe("must be an email address")
    expect(errorOf(User, { ...alice, role: "root" }, "role")).toBe("must be one of user, admin, god, supergod")
    expect(errorOf(User, { ...alice, role: "Admin" }, "role")).toBe("must be one of user, admin, god, supergod")
  })

  it("checks value types", () => {
    expect(errorOf(User, { ...alice, username: 42 }, "username")).toBe("must be a string")
    expect(errorOf(PageView, { level: "3" }, "level")).toBe("must be an integer")
    expect(errorOf(PageView, { level: 2.5 }, "level")).toBe("must be an integer")
    expect(errorOf(PageView, { isActive: "true" }, "isActive")).toBe("must be true or false")
    expect(errorOf(User, { ...alice, role: null }, "role")).toBe("must not be null")
  })

  it("checks integer ranges (PageView.level between 1 and 5)", () => {
    expect(errorOf(PageView, { level: 99 }, "level")).toBe("must be between 1 and 5")
    expect(errorOf(PageView, { level: 0 }, "level")).toBe("must be between 1 and 5")
    expect(Either.isRight(checkValue(field(PageView, "level"), 5))).toBe(true)
  })

  it("refuses NUL characters and lone surrogates in strings and JSON", () => {
    const bad = "must not contain NUL characters or invalid Unicode"
    expect(errorOf(User, { ...alice, username: "ali\u0000ce" }, "username")).toBe(bad)
    expect(checkValue(field(PageView, "title"), "x\ud800y")).toEqual(Either.left(bad))
    expect(checkValue(field(PageView, "title"), "\udc00")).toEqual(Either.left(bad))
    expect(checkValue(field(PageView, "layout"), { a: ["\u0000"] })).toEqual(Either.left(bad))
    expect(checkValue(field(PageView, "layout"), { ["k\ud800"]: 1 })).toEqual(Either.left(bad))
    expect(Either.isRight(checkValue(field(PageView, "title"), "ok 😀"))).toBe(true)
  })

  it("accepts JSON values and refuses non-JSON ones", () => {
    const layout = field(PageView, "layout")
    expect(checkValue(layout, { a: [1, "x", null, true] })).toEqual(Either.right({ a: [1, "x", null, true] }))
    expect(Either.isLeft(checkValue(layout, { n: Number.POSITIVE_INFINITY }))).toBe(true)
    let deep: unknown = 1
    for (let i = 0; i < 70; i++) deep = [deep]
    expect(checkValue(layout, deep)).toEqual(Either.left("must not nest deeper than 64 levels"))
  })

  it("requires date-times with a zone between the years 1000 and 9999, and decodes them to Date", () => {
    const expiresAt = field(Session, "expiresAt")
    const ok = checkValue(expiresAt, "2024-01-01T00:30:00+02:00")
    expect(Either.isRight(ok) && ok.right instanceof Date && ok.right.toISOString()).toBe("2023-12-31T22:30:00.000Z")
    expect(checkValue(expiresAt, "2024-01-01T00:00:00")).toEqual(
      Either.left("must be an ISO-8601 date-time with a time zone, e.g. 2024-01-15T10:30:00Z")
    )
    expect(checkValue(expiresAt, "2024-01-01")).toEqual(
      Either.left("must be an ISO-8601 date-time with a time zone, e.g. 2024-01-15T10:30:00Z")
    )
    expect(checkValue(expiresAt, "0999-12-31T23:59:59Z")).toEqual(Either.left("must be between the years 1000 and 9999"))
    expect(Either.isRight(checkValue(expiresAt, "1000-01-01T00:00:00Z"))).toBe(true)
    expect(Either.isRight(checkValue(expiresAt, "9999-12-31T23:59:59.999Z"))).toBe(true)
    expect(checkValue(expiresAt, "2024-13-01T00:00:00Z")).toEqual(Either.left("must be a valid date-time"))
    expect(checkValue(expiresAt, 1704067200000)).toEqual(Either.left("must be an ISO-8601 date-time string"))
  })

  it("refuses days a month does not have instead of rolling them over", () => {
    const expiresAt = field(Session, "expiresAt")
    expect(checkValue(expiresAt, "2023-02-29T00:00:00Z")).toEqual(Either.left("must be a valid date-time"))
    expect(checkValue(expiresAt, "2024-04-31T12:00:00Z")).toEqual(Either.left("must be a valid date-time"))
    const leap = checkValue(expiresAt, "2024-02-29T12:00:00Z")
    expect(Either.isRight(leap) && (leap.right as Date).toISOString()).toBe("2024-02-29T12:00:00.000Z")
  })

  it("lower-cases UUIDs and refuses non-UUIDs", () => {
    const userId = field(Session, "userId")
    expect(checkValue(userId, UUID_A.toUpperCase())).toEqual(Either.right(UUID_A))
    expect(checkValue(userId, "not-a-uuid")).toEqual(Either.left("must be a UUID"))
    expect(checkValue(userId, 7)).toEqual(Either.left("must be a UUID"))
  })

  it("accepts null for optional fields only", () => {
    expect(checkValue(field(Tree, "parentId"), null)).toEqual(Either.right(null))
    expect(checkValue(field(Tree, "pageId"), null)).toEqual(Either.left("must not be null"))
  })
})

describe("validateUpdate / validateCreateMany", () => {
  it("refuses changing createdAt and id", () => {
    const issues = issuesOf(validateUpdate(User, { createdAt: "2024-01-01T00:00:00Z", id: UUID_A }))
    expect(issues.map((i) => i.field)).toEqual(["createdAt", "id"])
  })

  it("refuses changing an immutable field with 'cannot be changed'", () => {
    const built = buildRegistry([
      {
        file: "/defs/doc.yaml",
        doc: {
          entity: "Doc",
          fields: {
            id: { type: "uuid", primary: true, generated: true },
            slug: { type: "string", required: true, immutable: true },
            title: { type: "string" }
          }
        }
      }
    ])
    const Doc = built.registry?.entities.get("Doc")
    if (Doc === undefined) throw new Error(built.problems.join("\n"))
    expect(issuesOf(validateUpdate(Doc, { slug: "new", title: "t" }))).toEqual([{ field: "slug", error: "cannot be changed" }])
    expect(valuesOf(validateCreate(Doc, { slug: "s" }))).toEqual({ slug: "s" })
  })

  it("refuses an update that sets nothing", () => {
    expect(issuesOf(validateUpdate(User, {}))).toEqual([{ field: "data", error: "must set at least one field" }])
  })

  it("validates the fields an update sets, without requiring the others", () => {
    expect(valuesOf(validateUpdate(User, { role: "god" }))).toEqual({ role: "god" })
    expect(issuesOf(validateUpdate(User, { email: "x" }))).toEqual([{ field: "email", error: "must be an email address" }])
    expect(issuesOf(validateUpdate(User, { username: null }))).toEqual([{ field: "username", error: "must not be null" }])
  })

  it("reports createMany issues as data[i].field", () => {
    const r = validateCreateMany(User, [
      { username: "alice", email: "a@x.io" },
      { username: "bob", email: "nope" },
      { email: "c@x.io", extra: 1 }
    ])
    expect(issuesOf(r)).toEqual([
      { field: "data[1].email", error: "must be an email address" },
      { field: "data[2].extra", error: "unknown field of User" },
      { field: "data[2].username", error: "is required" }
    ])
  })

  it("returns one value map per record when all are valid", () => {
    const r = validateCreateMany(User, [
      { username: "alice", email: "a@x.io" },
      { username: "bob", email: "b@x.io", role: "admin" }
    ])
    if (Either.isLeft(r)) throw new Error("expected valid records")
    expect(r.right.map((v) => Object.fromEntries([...v].map(([f, x]) => [f.name, x])))).toEqual([
      { username: "alice", email: "a@x.io", role: "user" },
      { username: "bob", email: "b@x.io", role: "admin" }
    ])
  })
})

describe("schemaDdl", () => {
  const dialects: ReadonlyArray<Dialect> = ["sqlite", "pg", "mysql"]
  const q = (d: Dialect, s: string) => (d === "mysql" ? `\`${s}\`` : `"${s}"`)
  const tableSql = (d: Dialect, table: string): string => {
    const stmt = schemaDdl(d, registry).find((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS ${q(d, table)} (`))
    if (stmt === undefined) throw new Error(`no CREATE TABLE for ${table} on ${d}`)
    return stmt
  }

  for (const d of dialects) {
    it(`${d}: creates every table, in creation order`, () => {
      const creates = schemaDdl(d, registry).filter((s) => s.startsWith("CREATE TABLE IF NOT EXISTS "))
      expect(creates).toHaveLength(8)
      expect(creates.map((s) => /^CREATE TABLE IF NOT EXISTS [`"]([a-z_]+)[`"]/.exec(s)?.[1])).toEqual(
        registry.creationOrder.map((e) => e.table)
      )
    })

    it(`${d}: names foreign keys fk_<table>_<col> with ON DELETE CASCADE where the YAML says cascade`, () => {
      const fk = (table: string, col: string, target: string) =>
        `CONSTRAINT ${q(d, `fk_${table}_${col}`)} FOREIGN KEY (${q(d, col)}) REFERENCES ${q(d, target)} (${q(d, table === "credentials" ? "username" : "id")})`
      expect(tableSql(d, "sessions")).toContain(`${fk("sessions", "user_id", "users")} ON DELETE CASCADE`)
      expect(tableSql(d, "credentials")).toContain(`${fk("credentials", "username", "users")} ON DELETE CASCADE`)
      expect(tableSql(d, "component_hierarchy")).toContain(`${fk("component_hierarchy", "page_id", "page_views")} ON DELETE CASCADE`)
      expect(tableSql(d, "component_hierarchy")).toContain(
        `${fk("component_hierarchy", "parent_id", "component_hierarchy")} ON DELETE CASCADE`
      )
      // No on_delete in the YAML: no ON DELETE clause.
      const workflows = tableSql(d, "workflows")
      expect(workflows).toContain(fk("workflows", "created_by", "users"))
      expect(workflows).not.toContain("ON DELETE")
      expect(tableSql(d, "packages")).toContain(fk("packages", "installed_by", "users"))
    })

    it(`${d}: declares unique constraints and enum / range checks`, () => {
      const users = tableSql(d, "users")
      expect(users).toMatch(
        d === "mysql" ? /UNIQUE KEY `uq_users_username` \(`username`\)/ : /CONSTRAINT "uq_users_username" UNIQUE \("username"\)/
      )
      expect(users).toContain(`CHECK (${q(d, "role")} IN ('user', 'admin', 'god', 'supergod'))`)
      expect(tableSql(d, "page_views")).toContain(`CHECK (${q(d, "level")} BETWEEN 1 AND 5)`)
    })
  }

  it("mysql: tables use utf8mb4_bin and declare their plain indexes inline", () => {
    const ddl = schemaDdl("mysql", registry)
    expect(ddl).toHaveLength(8)
    for (const s of ddl) expect(s).toMatch(/\) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin$/)
    expect(tableSql("mysql", "users")).toContain("KEY `idx_users_role` (`role`)")
    expect(tableSql("mysql", "users")).toContain("`username` VARCHAR(50) NOT NULL")
    expect(tableSql("mysql", "sessions")).toContain("`expires_at` DATETIME(3) NOT NULL")
  })

  it('pg: string columns use COLLATE "C"; uuid, jsonb and timestamptz types', () => {
    const users = tableSql("pg", "users")
    expect(users).toContain(`"username" varchar(50) COLLATE "C" NOT NULL`)
    expect(users).toContain(`"email" varchar(255) COLLATE "C" NOT NULL`)
    expect(users).toContain(`"id" uuid NOT NULL PRIMARY KEY`)
    expect(tableSql("pg", "lua_scripts")).toContain(`"code" text COLLATE "C" NOT NULL`)
    expect(tableSql("pg", "page_views")).toContain(`"layout" jsonb NOT NULL`)
    expect(tableSql("pg", "sessions")).toContain(`"expires_at" timestamptz(3) NOT NULL`)
    for (const e of registry.entities.values()) {
      const sql = tableSql("pg", e.table)
      for (const f of e.fields.filter((f) => ["string", "text", "email", "enum"].includes(f.type))) {
        expect(sql, `${e.table}.${f.column}`).toMatch(new RegExp(`"${f.column}" (varchar\\(\\d+\\)|text) COLLATE "C"`))
      }
    }
    expect(schemaDdl("pg", registry)).toContain(`CREATE INDEX IF NOT EXISTS "idx_users_role" ON "users" ("role")`)
  })

  it("sqlite: runs on an in-memory database, twice (idempotent), and enforces its constraints", async () => {
    const ddl = schemaDdl("sqlite", registry)
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe("PRAGMA foreign_keys = ON")
        for (let round = 0; round < 2; round++) for (const stmt of ddl) yield* sql.unsafe(stmt)
        const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
        const indexes = yield* sql<{
          name: string
        }>`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name`
        const now = "2024-01-01T00:00:00.000Z"
        const badRole = yield* Effect.either(
          sql`INSERT INTO users (id, username, email, role, created_at, updated_at) VALUES (${UUID_A}, ${"a"}, ${"a@x.io"}, ${"root"}, ${now}, ${now})`
        )
        const orphan = yield* Effect.either(
          sql`INSERT INTO sessions (id, user_id, token, expires_at, created_at, last_activity) VALUES (${UUID_A}, ${UUID_A}, ${"t"}, ${now}, ${now}, ${now})`
        )
        return {
          tables: tables.map((t) => t.name),
          indexes: indexes.length,
          badRole: Either.isLeft(badRole),
          orphan: Either.isLeft(orphan)
        }
      }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
    )
    expect(result.tables).toEqual([...registry.creationOrder.map((e) => e.table)].sort())
    expect(result.indexes).toBe(ddl.filter((s) => s.startsWith("CREATE INDEX")).length)
    expect(result.badRole).toBe(true)
    expect(result.orphan).toBe(true)
  })
})

describe("dialectOf / adapterOf", () => {
  it("maps each adapter to the dialect it speaks and back", () => {
    expect([dialectOf("sqlite"), dialectOf("postgresql"), dialectOf("mysql")]).toEqual(["sqlite", "pg", "mysql"])
    expect([adapterOf("sqlite"), adapterOf("pg"), adapterOf("mysql")]).toEqual(["sqlite", "postgresql", "mysql"])
  })
})
