/**
 * The Prisma bridge (src/entity/Prisma.ts): metabuilder's schema.prisma (test/fixtures/metabuilder) gives the same
 * eight entities as config/entities (modulo the differences listed below, which are what the
 * Prisma file says or does not say), and broken or unsupported Prisma input is reported with the
 * file, model and field, never thrown.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { schemaDdl } from "../../src/entity/Ddl.js"
import { buildRegistry, EntityLoadError, loadRegistry, yamlTables } from "../../src/entity/Load.js"
import type { EntityDef, EntityRegistryShape, FieldDef } from "../../src/entity/Model.js"
import { loadPrismaRegistry, prismaToRaws, readPrismaSchema } from "../../src/entity/Prisma.js"
import { validateCreate } from "../../src/entity/Validate.js"

/** metabuilder's schema.prisma (a copy: the project reads nothing outside itself). */
const METABUILDER_PRISMA = fileURLToPath(new URL("../fixtures/metabuilder/backends/prisma/schema.prisma", import.meta.url))
const YAML_DIR = fileURLToPath(new URL("../../config/entities", import.meta.url))

/** In snake_case naming, over the shipped YAML's tables: the daemon's own database. */
const prisma = loadPrismaRegistry(METABUILDER_PRISMA, { naming: "snake_case", tables: yamlTables(YAML_DIR) })
/** In Prisma's naming (the default): the database `prisma migrate` makes of the file. */
const prismaNamed = loadPrismaRegistry(METABUILDER_PRISMA)
const yaml = loadRegistry(YAML_DIR)

const entity = (r: EntityRegistryShape, name: string): EntityDef => {
  const e = r.entities.get(name)
  if (e === undefined) throw new Error(`no entity ${name}`)
  return e
}
const field = (r: EntityRegistryShape, e: string, f: string): FieldDef => {
  const d = entity(r, e).byName.get(f)
  if (d === undefined) throw new Error(`no field ${e}.${f}`)
  return d
}

/** Registry of an inline schema (no problems expected). */
const registryOf = (src: string): EntityRegistryShape => {
  const { raws, problems } = prismaToRaws(src, "inline.prisma")
  expect(problems).toEqual([])
  const built = buildRegistry(raws)
  expect(built.problems).toEqual([])
  return built.registry!
}
/** Problems of an inline schema: the bridge's own, else buildRegistry's. */
const problemsOf = (src: string): Array<string> => {
  const { raws, problems } = prismaToRaws(src, "bad.prisma")
  return problems.length > 0 ? problems : buildRegistry(raws).problems
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-prisma-unit-"))
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }))

describe("metabuilder's schema.prisma (test/fixtures)", () => {
  it("parses without problems into the eight entities", () => {
    const { problems, raws } = readPrismaSchema(METABUILDER_PRISMA)
    expect(problems).toEqual([])
    expect(raws.map((r) => r.doc.entity)).toEqual([
      "User",
      "Credential",
      "Session",
      "PageView",
      "ComponentHierarchy",
      "Workflow",
      "LuaScript",
      "Package"
    ])
    expect([...prisma.entities.keys()].sort()).toEqual([...yaml.entities.keys()].sort())
  })

  it("in snake_case naming, gets the same tables as the shipped YAML entities (no @@map in the file)", () => {
    const tables = (r: EntityRegistryShape) => Object.fromEntries([...r.entities.values()].map((e) => [e.name, e.table]))
    expect(tables(prisma)).toEqual({
      User: "users",
      Credential: "credentials",
      Session: "sessions",
      PageView: "page_views",
      // config/entities/component_hierarchy.yaml says `table: component_hierarchy`
      ComponentHierarchy: "component_hierarchy",
      Workflow: "workflows",
      LuaScript: "lua_scripts",
      Package: "packages"
    })
    expect(tables(prisma)).toEqual(tables(yaml))
    // without a YAML definition of the entity: the snake_case plural of its name
    const alone = loadPrismaRegistry(METABUILDER_PRISMA, { naming: "snake_case" })
    expect(tables(alone)).toEqual({ ...tables(yaml), ComponentHierarchy: "component_hierarchies" })
  })

  it("in Prisma's naming (the default), names tables, columns and unique indexes as prisma migrate does", () => {
    for (const e of prismaNamed.entities.values()) {
      expect(e.table).toBe(e.name)
      for (const f of e.fields) expect(f.column, `${e.name}.${f.name}`).toBe(f.name)
      // the wire is the same whatever the naming
      expect(e.fields.map((f) => f.name)).toEqual(entity(prisma, e.name).fields.map((f) => f.name))
    }
    expect(entity(prismaNamed, "User").indexes.map((i) => [i.name, i.unique])).toEqual([
      ["User_username_key", true],
      ["User_email_key", true]
    ])
    expect(entity(prismaNamed, "Package").indexes.map((i) => i.name)).toEqual(["Package_name_version_key", "Package_isInstalled_idx"])
    expect(entity(prismaNamed, "ComponentHierarchy").indexes.map((i) => i.name)).toEqual([
      "ComponentHierarchy_pageId_idx",
      "ComponentHierarchy_parentId_idx",
      "ComponentHierarchy_pageId_order_idx"
    ])
    expect(entity(prismaNamed, "Workflow").orderField?.column).toBe("createdAt")
    expect(entity(prismaNamed, "Workflow").ownerField?.column).toBe("createdBy")
  })

  it("has the same wire names and columns as the YAML entities, in the same order", () => {
    for (const y of yaml.entities.values()) {
      const p = entity(prisma, y.name)
      expect(
        p.fields.map((f) => [f.name, f.column]),
        y.name
      ).toEqual(y.fields.map((f) => [f.name, f.column]))
    }
  })

  it("has the same types as the YAML entities except where Prisma says less", () => {
    // Prisma String cannot say json, text or email; metabuilder's file stores JSON as String
    // (SQLite-era Prisma).
    const expectedDifferences: Record<string, [string, string]> = {
      "User.email": ["email", "string"],
      "PageView.description": ["text", "string"],
      "PageView.layout": ["json", "string"],
      "ComponentHierarchy.props": ["json", "string"],
      "Workflow.description": ["text", "string"],
      "Workflow.trigger": ["enum", "string"],
      "Workflow.triggerConfig": ["json", "string"],
      "Workflow.steps": ["json", "string"],
      "LuaScript.description": ["text", "string"],
      "LuaScript.code": ["text", "string"],
      "LuaScript.allowedGlobals": ["json", "string"],
      "Package.description": ["text", "string"],
      "Package.manifest": ["json", "string"]
    }
    const differences: Record<string, [string, string]> = {}
    for (const y of yaml.entities.values()) {
      for (const yf of y.fields) {
        const pf = field(prisma, y.name, yf.name)
        if (pf.type !== yf.type) differences[`${y.name}.${yf.name}`] = [yf.type, pf.type]
      }
    }
    expect(differences).toEqual(expectedDifferences)
  })

  it("gives User.role the daemon's roles as an enum (the file has a String)", () => {
    const role = field(prisma, "User", "role")
    expect(role.type).toBe("enum")
    expect(role.values).toEqual(field(yaml, "User", "role").values)
    // but no default: the Prisma file has none (the YAML's is `user`)
    expect(role.required).toBe(true)
    expect(role.default).toBeUndefined()
  })

  it("maps ids, timestamps, optional fields and literal defaults", () => {
    for (const e of prisma.entities.values()) {
      expect(e.primaryKey.name, e.name).toBe("id")
      expect(e.primaryKey).toMatchObject({ type: "uuid", primary: true, generated: true, immutable: true, unique: true, nullable: false })
      expect(e.byName.get("createdAt"), e.name).toMatchObject({ type: "datetime", generated: true, immutable: true, nullable: false })
      expect(e.orderField?.name, e.name).toBe("createdAt")
    }
    expect(field(prisma, "User", "updatedAt")).toMatchObject({ autoUpdate: true, required: false, nullable: false })
    expect(field(prisma, "Session", "lastActivity")).toMatchObject({ type: "datetime", autoUpdate: true })
    expect(field(prisma, "PageView", "description")).toMatchObject({ required: false, nullable: true })
    expect(field(prisma, "Package", "installedAt")).toMatchObject({ type: "datetime", required: false, nullable: true })
    expect(field(prisma, "PageView", "title")).toMatchObject({ type: "string", required: true, nullable: false })
    const defaults = {
      "Credential.firstLogin": true,
      "PageView.isActive": true,
      "ComponentHierarchy.order": 0,
      "Workflow.isActive": true,
      "LuaScript.isSandboxed": true,
      "LuaScript.timeoutMs": 5000,
      "Package.isInstalled": false
    }
    for (const [ref, value] of Object.entries(defaults)) {
      const [e, f] = ref.split(".") as [string, string]
      expect(field(prisma, e, f), ref).toMatchObject({ default: value, required: false })
      expect(field(yaml, e, f).default, ref).toEqual(value)
    }
  })

  it("has the unique indexes of the file (@unique and @@unique)", () => {
    const uniques = (r: EntityRegistryShape) =>
      Object.fromEntries(
        [...r.entities.values()].map((e) => [
          e.name,
          e.indexes
            .filter((i) => i.unique)
            .map((i) => i.fields.map((f) => f.name).join("+"))
            .sort()
        ])
      )
    expect(uniques(prisma)).toEqual({
      User: ["email", "username"],
      Credential: ["username"],
      Session: ["token"],
      PageView: ["slug"],
      ComponentHierarchy: [],
      Workflow: ["name"],
      LuaScript: ["name"],
      // the YAML also makes `name` unique on its own
      Package: ["name+version"]
    })
    expect({ ...uniques(yaml), Package: ["name+version"] }).toEqual(uniques(prisma))
    expect(field(prisma, "Package", "name").unique).toBe(false)
    expect(field(yaml, "Package", "name").unique).toBe(true)
  })

  it("has the plain indexes of the file (@@index)", () => {
    const plain = (r: EntityRegistryShape, e: string) =>
      entity(r, e)
        .indexes.filter((i) => !i.unique)
        .map((i) => i.fields.map((f) => f.name).join("+"))
    expect(plain(prisma, "ComponentHierarchy")).toEqual(["pageId", "parentId", "pageId+order"])
    expect(plain(prisma, "Session")).toEqual(["userId", "expiresAt"])
    expect(plain(prisma, "PageView")).toEqual(["level", "isActive"])
    // the YAML also indexes User.role, Workflow.createdBy and LuaScript.createdBy
    expect(plain(prisma, "User")).toEqual([])
    expect(plain(prisma, "Workflow")).toEqual(["trigger", "isActive"])
    expect(plain(prisma, "LuaScript")).toEqual(["isSandboxed"])
    expect(plain(yaml, "User")).toEqual(["role"])
  })

  it("turns @relation(fields, references, onDelete) into foreign keys on the scalar field", () => {
    const fks = Object.fromEntries(
      [...prisma.entities.values()].flatMap((e) =>
        e.fields.filter((f) => f.foreignKey !== undefined).map((f) => [`${e.name}.${f.name}`, f.foreignKey])
      )
    )
    expect(fks).toEqual({
      // relation: the name of the Prisma relation field
      "ComponentHierarchy.pageId": { entity: "PageView", field: "id", onDelete: "cascade", relation: "page" },
      "ComponentHierarchy.parentId": { entity: "ComponentHierarchy", field: "id", onDelete: "cascade", relation: "parent" },
      // no onDelete: Prisma's defaults (Restrict when required, SetNull when optional); the YAML says no_action
      "Workflow.createdBy": { entity: "User", field: "id", onDelete: "restrict", relation: "creator" },
      "LuaScript.createdBy": { entity: "User", field: "id", onDelete: "restrict", relation: "creator" },
      "Package.installedBy": { entity: "User", field: "id", onDelete: "set_null", relation: "installer" }
    })
    // the relation's scalar takes the uuid type of what it references
    expect(field(prisma, "ComponentHierarchy", "pageId").type).toBe("uuid")
    expect(field(prisma, "Package", "installedBy")).toMatchObject({ type: "uuid", nullable: true })
    // the YAML also has Session.userId -> User.id and Credential.username -> User.username (cascade)
    expect(field(yaml, "Session", "userId").foreignKey?.onDelete).toBe("cascade")
    // Session.userId has no relation in the file: no foreign key, but a uuid like User.id (the
    // daemon's sessions join the two)
    expect(field(prisma, "Session", "userId")).toMatchObject({ type: "uuid", required: true })
    expect(field(prisma, "Session", "userId").foreignKey).toBeUndefined()
    expect(field(prisma, "Credential", "username").foreignKey).toBeUndefined()
    // referenced tables first
    const order = prisma.creationOrder.map((e) => e.name)
    expect(order.indexOf("PageView")).toBeLessThan(order.indexOf("ComponentHierarchy"))
    expect(order.indexOf("User")).toBeLessThan(order.indexOf("Workflow"))
    expect(order.indexOf("User")).toBeLessThan(order.indexOf("Package"))
  })

  it("gives no default access rules, owners from the relations, nothing sensitive", () => {
    for (const e of prisma.entities.values()) expect(e.acl, e.name).toEqual({})
    expect(entity(prisma, "User").ownerField?.name).toBe("id")
    expect(entity(prisma, "Workflow").ownerField?.name).toBe("createdBy")
    expect(entity(prisma, "Session").ownerField).toBeUndefined()
    expect(prisma.entities.get("Credential")!.fields.filter((f) => f.sensitive || f.neverExpose)).toEqual([])
  })

  it("gives DDL on the three dialects and validates like a YAML entity", () => {
    for (const d of ["sqlite", "pg", "mysql"] as const) {
      const ddl = schemaDdl(d, prisma).join("\n")
      expect(ddl).toContain("component_hierarchy")
      expect(ddl).toMatch(/ON DELETE CASCADE/)
      expect(ddl).toMatch(/ON DELETE SET NULL/)
    }
    const page = entity(prisma, "PageView")
    expect(validateCreate(page, { slug: "a", title: "A", level: 1, layout: "{}" })._tag).toBe("Right")
    expect(validateCreate(page, { slug: "a", title: "A", level: 1, layout: {} })._tag).toBe("Left")
    expect(validateCreate(entity(prisma, "User"), { username: "u", email: "e@x", role: "root" })._tag).toBe("Left")
  })
})

describe("mapping of Prisma features", () => {
  it("honours @@map, @map, @db.Uuid/@db.Text/@db.VarChar, enums, Json and literal defaults", () => {
    const r = registryOf(`
/// People who sign in.
/// Second line.
model Person {
  id       String   @id @default(cuid())
  nick     String   @db.VarChar(40) @unique
  bio      String?  @db.Text
  kind     Kind     @default(staff)
  extId    String   @db.Uuid @map("ext_id")
  settings Json     @default("{\\"a\\": [1]}")
  note     String   @default("hello \\"you\\"")
  since    DateTime @default("2020-01-02T03:04:05Z")
  score    Int?     @default(-3)
  @@map("people")
  @@index([kind, since(sort: Desc)])
}

enum Kind {
  staff
  guest
}
`)
    const p = entity(r, "Person")
    expect(p.table).toBe("people")
    expect(p.description).toBe("People who sign in.\nSecond line.")
    // cuid() ids are cuids, made by the daemon (rows a Prisma client made keep theirs)
    expect(p.byName.get("id")).toMatchObject({ type: "string", primary: true, generated: true, defaultFn: "cuid" })
    expect(p.byName.get("nick")).toMatchObject({ type: "string", maxLength: 40, unique: true })
    expect(p.byName.get("bio")).toMatchObject({ type: "text", nullable: true })
    expect(p.byName.get("kind")).toMatchObject({ type: "enum", values: ["staff", "guest"], default: "staff", required: false })
    expect(p.byName.get("extId")).toMatchObject({ type: "uuid", column: "ext_id" })
    expect(p.byName.get("settings")).toMatchObject({ type: "json", default: { a: [1] } })
    expect(p.byName.get("note")?.default).toBe('hello "you"')
    expect(p.byName.get("since")?.default).toBe("2020-01-02T03:04:05.000Z")
    expect(p.byName.get("score")).toMatchObject({ type: "integer", default: -3, nullable: true })
    expect(p.indexes.map((i) => [i.fields.map((f) => f.column), i.unique])).toEqual([
      [["nick"], true],
      [["kind", "since"], false]
    ])
  })

  it("tolerates CRLF line ends and blanks after braces, ignores other native types and onUpdate", () => {
    const r = registryOf(
      'model Tag { \r\n  id   String @id @db.Char(36)\r\n  name String @unique @db.VarChar(20)\r\n  ownerId String?\r\n  owner Tag? @relation("o", fields: [ownerId], references: [id], onUpdate: Cascade)\r\n  owned Tag[] @relation("o")\r\n}\r\n'
    )
    expect(entity(r, "Tag").byName.get("name")).toMatchObject({ type: "string", maxLength: 20 })
    expect(entity(r, "Tag").byName.get("id")).toMatchObject({ type: "string", primary: true, defaultFn: "uuid" })
    expect(entity(r, "Tag").byName.get("ownerId")).toMatchObject({
      type: "string",
      foreignKey: { entity: "Tag", field: "id", onDelete: "set_null", relation: "owner" }
    })
  })

  it("applies the daemon's contract to User.role and Session.userId only", () => {
    const r = registryOf(`
model User {
  id   String @id
  role String
}
model Session {
  id     String @id
  userId String
}
model Member {
  id     String @id
  role   String
  userId String
}
`)
    expect(field(r, "User", "role")).toMatchObject({ type: "enum", values: ["user", "admin", "god", "supergod"] })
    expect(field(r, "Session", "userId")).toMatchObject({ type: "uuid" })
    expect(field(r, "Member", "role").type).toBe("string")
    expect(field(r, "Member", "userId").type).toBe("string")
    // a Prisma enum is taken as declared
    const e = registryOf("model User {\n  id String @id\n  role Role @default(member)\n}\nenum Role {\n  member\n  admin\n}\n")
    expect(field(e, "User", "role")).toMatchObject({ type: "enum", values: ["member", "admin"], default: "member" })
  })

  it("follows a relation to a non-id unique field with its type", () => {
    const r = registryOf(`
model Owner {
  id     String @id @default(uuid())
  handle String @unique
  items  Item[]
}
model Item {
  id          String @id @default(uuid())
  ownerHandle String
  owner       Owner  @relation(fields: [ownerHandle], references: [handle], onDelete: NoAction)
}
`)
    expect(field(r, "Item", "ownerHandle")).toMatchObject({
      type: "string",
      foreignKey: { entity: "Owner", field: "handle", onDelete: "no_action", relation: "owner" }
    })
  })
})

describe("broken or unsupported Prisma input", () => {
  it("names the file, line, model and field of every unsupported field", () => {
    const problems = problemsOf(`model Shop {
  id       String   @id @default(uuid())
  price    Float    @default(1.5)
  total    Decimal  @default("x")
  big      BigInt   @id
  blob     Bytes
  ints     Int[]
  geo      Unsupported("point")
  seq      Int      @default(autoincrement())
  token    String   @default(uuid(7))
  userID   String
  nope     Gadget
  wrong    Boolean  @default("yes")
  @@schema("x")
}
`)
    expect(problems).toEqual([
      "bad.prisma:6: Shop.blob: type Bytes is not supported (supported: String, Int, BigInt, Float, Decimal, Boolean, DateTime, Json, enums and String[])",
      "bad.prisma:7: Shop.ints: lists of scalars or enums other than String[] (Int[]) are not supported (use Json)",
      "bad.prisma:8: Shop.geo: type Unsupported(...) is not supported",
      'bad.prisma:11: Shop.userID: field names must be camelCase words (lower-case first letter, no runs of capitals: "userId" rather than "userID"); keep the column with @map',
      "bad.prisma:12: Shop.nope: unknown type Gadget",
      "bad.prisma:4: Shop.total: @default: expected a decimal number",
      "bad.prisma:5: Shop.big: @id must be a String or an Int @default(autoincrement()) (BigInt ids are not supported)",
      "bad.prisma:9: Shop.seq: @default(autoincrement()) is not supported on a field that is not an Int @id",
      "bad.prisma:10: Shop.token: @default(uuid(...)) is not supported",
      "bad.prisma:13: Shop.wrong: @default: expected true or false",
      "bad.prisma:1: Shop: @@schema: not supported"
    ])
  })

  it("reports composite ids and keys, bad relations and indexes", () => {
    const problems = problemsOf(`model A {
  x  String
  y  String
  @@id([x, y])
}

model B {
  id   String @id
  ax   String
  ay   String
  a    A      @relation(fields: [ax, ay], references: [x, y])
  c    C      @relation(fields: [cid], references: [id], onDelete: SetDefault)
  cid  String
  d    C      @relation(fields: [missing], references: [id])
  @@index([ghost])
}

model C {
  id String @id
  n  Int    @id
  bs B[]
}
`)
    expect(problems).toEqual([
      "bad.prisma:11: B.a: @relation: composite foreign keys (ax, ay) are not supported",
      'bad.prisma:12: B.c: @relation: onDelete: "SetDefault" is not supported (Cascade, Restrict, SetNull or NoAction)',
      "bad.prisma:14: B.d: @relation: fields: B has no scalar field missing",
      "bad.prisma:1: A: @@id: composite ids are not supported (use a String @id and @@unique)",
      "bad.prisma:7: B: @@index: B has no scalar field ghost",
      "bad.prisma:20: C.n: an Int @id needs @default(autoincrement()) (the daemon does not take ids from callers)"
    ])
  })

  it("reports implicit many-to-many relations (Prisma's hidden join table)", () => {
    expect(problemsOf(`model Post {\n  id String @id\n  tags Tag[]\n}\nmodel Tag {\n  id String @id\n  posts Post[]\n}\n`)).toEqual([
      "bad.prisma:3: Post.tags: implicit many-to-many relations are not supported (declare the join model)",
      "bad.prisma:7: Tag.posts: implicit many-to-many relations are not supported (declare the join model)"
    ])
  })

  it("passes on what only buildRegistry knows, with the file, line and model", () => {
    expect(problemsOf(`model Thing {\n  id String @id\n  @@map("Bad-Table")\n}\n`)).toEqual([
      "bad.prisma:1 (model Thing): table: expected an identifier (letters, digits, _), at most 63 characters"
    ])
    expect(
      problemsOf(
        `model Thing {\n  id String @id\n  name String\n}\nmodel Other {\n  id String @id\n  thingName String\n  thing Thing @relation(fields: [thingName], references: [name])\n}\n`
      )
    ).toEqual(["bad.prisma:5 (model Other): fields.thing_name.foreign_key.field: Thing.name must be primary or unique"])
    expect(problemsOf(`model Thing {\n  name String\n}\n`)).toEqual([
      "bad.prisma:1 (model Thing): fields: expected exactly one primary field (found 0)"
    ])
  })

  it("reports syntax errors with a line and never throws", () => {
    const problems = problemsOf(`model Thing {\n  id String @id\n  name String @@@\n}\n`)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(/^bad\.prisma:3:\d+: Prisma syntax error/)
    expect(problemsOf("")).toEqual(["bad.prisma: no model found"])
    expect(problemsOf("view V {\n  id String @id\n}\nmodel M {\n  id String @id\n}\n")).toEqual([
      "bad.prisma:1: view V: views are not supported (use a model)"
    ])
  })

  it("loadPrismaRegistry throws EntityLoadError with every problem, also for a missing file", () => {
    const missing = path.join(tmpRoot, "missing.prisma")
    expect(() => loadPrismaRegistry(missing)).toThrow(EntityLoadError)
    try {
      loadPrismaRegistry(missing)
    } catch (e) {
      expect((e as EntityLoadError).problems).toEqual([`${missing}: cannot read the Prisma schema (ENOENT)`])
    }
    const bad = path.join(tmpRoot, "bad.prisma")
    fs.writeFileSync(bad, "model A {\n  id String @id\n  f Float[]\n  b Bytes\n}\n")
    try {
      loadPrismaRegistry(bad)
      expect.unreachable()
    } catch (e) {
      expect((e as EntityLoadError).problems).toEqual([
        `${bad}:3: A.f: lists of scalars or enums other than String[] (Float[]) are not supported (use Json)`,
        `${bad}:4: A.b: type Bytes is not supported (supported: String, Int, BigInt, Float, Decimal, Boolean, DateTime, Json, enums and String[])`
      ])
    }
  })
})
