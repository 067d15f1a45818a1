/**
 * The migration plan (src/entity/MigrationPlan.ts) as a pure function: definitions + a live
 * schema → steps, each additive or destructive, with its SQL per dialect. The live schemas here
 * are written as introspection returns them (layers/db/Introspect.ts); test/integration/migrate.test.ts
 * runs the same against the three real databases.
 */
import { describe, expect, it } from "vitest"
import { columnType, type Dialect } from "../../src/entity/Ddl.js"
import { buildRegistry } from "../../src/entity/Load.js"
import {
  canonicalType,
  compareTypes,
  defaultLiteral,
  type LiveIndex,
  type LiveSchema,
  type LiveTable,
  planMigration,
  quoteName,
  type Step
} from "../../src/entity/MigrationPlan.js"
import type { EntityRegistryShape } from "../../src/entity/Model.js"

type Doc = Record<string, unknown>

const registryOf = (...docs: ReadonlyArray<Doc>): EntityRegistryShape => {
  const built = buildRegistry(docs.map((doc, i) => ({ file: `/defs/${i}.yaml`, doc })))
  expect(built.problems).toEqual([])
  return built.registry!
}

const author: Doc = {
  entity: "Author",
  fields: { id: { type: "uuid", primary: true, generated: true }, name: { type: "string", required: true, max_length: 100 } }
}
const post = (fields: Doc = {}, indexes?: ReadonlyArray<Doc>): Doc => ({
  entity: "Post",
  fields: {
    id: { type: "uuid", primary: true, generated: true },
    title: { type: "string", required: true, max_length: 100 },
    author_id: { type: "uuid", optional: true },
    ...fields
  },
  ...(indexes === undefined ? {} : { indexes })
})

/** The live table a registry's entity would be after CREATE TABLE (types as the DDL writes them: the plan canonicalizes both sides). */
const liveOf = (dialect: Dialect, registry: EntityRegistryShape, hasRows = true): LiveSchema => {
  const tables = new Map<string, LiveTable>()
  for (const e of registry.creationOrder) {
    tables.set(e.table, {
      name: e.table,
      columns: e.fields.map((f) => ({ name: f.column, type: columnType(dialect, f), nullable: f.nullable })),
      indexes: e.indexes.map((ix) => ({
        name: ix.name,
        columns: ix.fields.map((f) => f.column),
        unique: ix.unique,
        constraint: ix.unique && dialect !== "mysql"
      })),
      foreignKeys: e.fields
        .filter((f) => f.foreignKey !== undefined)
        .map((f) => {
          const t = registry.entities.get(f.foreignKey!.entity)!
          return {
            name: `fk_${e.table}_${f.column}`,
            columns: [f.column],
            refTable: t.table,
            refColumns: [t.byName.get(f.foreignKey!.field)!.column],
            onDelete: f.foreignKey!.onDelete
          }
        }),
      hasRows
    })
  }
  return { tables }
}

const withTable = (live: LiveSchema, name: string, change: (t: LiveTable) => LiveTable): LiveSchema => {
  const tables = new Map(live.tables)
  tables.set(name, change(live.tables.get(name)!))
  return { tables }
}

const brief = (steps: ReadonlyArray<Step>) => steps.map((s) => ({ kind: s.kind, reason: s.reason, statements: s.statements }))

const DIALECTS: ReadonlyArray<Dialect> = ["pg", "mysql", "sqlite"]

describe("types: what the database reports is what the DDL wrote", () => {
  it("canonical text agrees per dialect", () => {
    expect(canonicalType("pg", `varchar(200) COLLATE "C"`)).toBe(canonicalType("pg", "character varying(200)"))
    expect(canonicalType("pg", "timestamptz(3)")).toBe("timestamp(3) with time zone")
    expect(canonicalType("pg", `text COLLATE "C"`)).toBe("text")
    expect(canonicalType("pg", "int4")).toBe("integer")
    expect(canonicalType("mysql", "INT")).toBe(canonicalType("mysql", "int(11)"))
    expect(canonicalType("mysql", "BOOLEAN")).toBe(canonicalType("mysql", "tinyint(1)"))
    // MariaDB reports JSON as LONGTEXT.
    expect(canonicalType("mysql", "JSON")).toBe(canonicalType("mysql", "longtext"))
    expect(canonicalType("mysql", "DATETIME(3)")).toBe("datetime(3)")
    expect(canonicalType("sqlite", "TEXT")).toBe(canonicalType("sqlite", "text"))
  })

  it("wider, narrower, other", () => {
    expect(compareTypes("pg", "character varying(100)", `varchar(200) COLLATE "C"`)).toBe("wider")
    expect(compareTypes("pg", "character varying(200)", `varchar(100) COLLATE "C"`)).toBe("narrower")
    expect(compareTypes("pg", "character varying(200)", `text COLLATE "C"`)).toBe("wider")
    expect(compareTypes("pg", "text", `varchar(100) COLLATE "C"`)).toBe("narrower")
    expect(compareTypes("pg", "integer", "bigint")).toBe("wider")
    expect(compareTypes("pg", "bigint", "integer")).toBe("narrower")
    expect(compareTypes("pg", "numeric(10,2)", "numeric(12,4)")).toBe("wider")
    expect(compareTypes("pg", "numeric(10,2)", "numeric(10,4)")).toBe("other")
    expect(compareTypes("pg", "text", "uuid")).toBe("other")
    expect(compareTypes("mysql", "varchar(255)", "MEDIUMTEXT")).toBe("wider")
    expect(compareTypes("mysql", "mediumtext", "VARCHAR(255)")).toBe("narrower")
    expect(compareTypes("mysql", "int(11)", "INT")).toBe("same")
    expect(compareTypes("mysql", "char(36)", "VARCHAR(36)")).toBe("other")
    expect(compareTypes("sqlite", "TEXT", "INTEGER")).toBe("other")
  })
})

describe("names and literals", () => {
  it("quotes names read from the database with their quote characters doubled", () => {
    expect(quoteName("pg", 'we"ird')).toBe('"we""ird"')
    expect(quoteName("sqlite", 'we"ird')).toBe('"we""ird"')
    expect(quoteName("mysql", "we`ird")).toBe("`we``ird`")
  })

  it("writes defaults as literals, escaped for the dialect; none for what has no literal", () => {
    const reg = registryOf({
      entity: "Thing",
      fields: {
        id: { type: "uuid", primary: true, generated: true },
        label: { type: "string", required: true, default: "it's a \\ test" },
        on: { type: "boolean", required: true, default: true },
        n: { type: "integer", required: true, default: 5 },
        meta: { type: "json", required: true, default: { a: "b'c" } },
        at: { type: "datetime", required: true, default: "2025-01-01T00:00:00Z" }
      }
    })
    const f = (name: string) => reg.entities.get("Thing")!.byName.get(name)!
    expect(defaultLiteral("pg", f("label"))).toBe(`'it''s a \\ test'`)
    expect(defaultLiteral("mysql", f("label"))).toBe(`'it''s a \\\\ test'`)
    expect(defaultLiteral("pg", f("on"))).toBe("TRUE")
    expect(defaultLiteral("sqlite", f("on"))).toBe("1")
    expect(defaultLiteral("mysql", f("n"))).toBe("5")
    expect(defaultLiteral("pg", f("meta"))).toBe(`'{"a":"b''c"}'`)
    expect(defaultLiteral("pg", f("at"))).toBeUndefined()
    expect(defaultLiteral("pg", f("id"))).toBeUndefined()
  })
})

describe("planMigration", () => {
  it("is empty when the database matches the definitions, on each dialect", () => {
    const reg = registryOf(
      author,
      post({ author_id: { type: "uuid", optional: true, foreign_key: { entity: "Author", field: "id" } } }, [{ fields: ["title"] }])
    )
    for (const d of DIALECTS) expect(planMigration(d, reg, liveOf(d, reg)), d).toEqual([])
  })

  it("creates a missing table with its indexes (additive)", () => {
    const reg = registryOf(author, post({}, [{ fields: ["title"] }]))
    const live = liveOf("pg", registryOf(author))
    const steps = planMigration("pg", reg, live)
    expect(steps).toHaveLength(1)
    expect(steps[0]).toMatchObject({ kind: "additive", table: "posts", reason: "create table posts" })
    expect(steps[0]!.statements[0]).toMatch(/^CREATE TABLE IF NOT EXISTS "posts" \(/)
    expect(steps[0]!.statements[1]).toBe(`CREATE INDEX IF NOT EXISTS "idx_posts_title" ON "posts" ("title")`)
  })

  it("adds a nullable column in place on each dialect", () => {
    const before = registryOf(author, post())
    const after = registryOf(author, post({ summary: { type: "text", optional: true } }))
    const expected: Record<Dialect, string> = {
      pg: `ALTER TABLE "posts" ADD COLUMN "summary" text COLLATE "C"`,
      mysql: "ALTER TABLE `posts` ADD COLUMN `summary` MEDIUMTEXT",
      sqlite: `ALTER TABLE "posts" ADD COLUMN "summary" TEXT`
    }
    for (const d of DIALECTS) {
      expect(brief(planMigration(d, after, liveOf(d, before))), d).toEqual([
        { kind: "additive", reason: "add column posts.summary", statements: [expected[d]] }
      ])
    }
  })

  it("adds a NOT NULL column with a default: existing rows get it, then the default goes (PostgreSQL, MySQL)", () => {
    const before = registryOf(author, post())
    const after = registryOf(author, post({ views: { type: "integer", required: true, default: 0 } }))
    expect(planMigration("pg", after, liveOf("pg", before))[0]!.statements).toEqual([
      `ALTER TABLE "posts" ADD COLUMN "views" integer NOT NULL DEFAULT 0`,
      `ALTER TABLE "posts" ALTER COLUMN "views" DROP DEFAULT`
    ])
    expect(planMigration("mysql", after, liveOf("mysql", before))[0]!.statements).toEqual([
      "ALTER TABLE `posts` ADD COLUMN `views` INT NOT NULL DEFAULT (0)",
      "ALTER TABLE `posts` ALTER COLUMN `views` DROP DEFAULT"
    ])
    expect(planMigration("sqlite", after, liveOf("sqlite", before))[0]!.statements).toEqual([
      `ALTER TABLE "posts" ADD COLUMN "views" INTEGER NOT NULL DEFAULT 0`
    ])
    for (const d of DIALECTS) expect(planMigration(d, after, liveOf(d, before))[0]!.kind).toBe("additive")
  })

  it("a NOT NULL column without a default: additive on an empty table, destructive when the table has rows", () => {
    const before = registryOf(author, post())
    const after = registryOf(author, post({ code: { type: "string", required: true, max_length: 10 } }))
    const empty = planMigration("pg", after, liveOf("pg", before, false))
    expect(brief(empty)).toEqual([
      {
        kind: "additive",
        reason: "add column posts.code (NOT NULL; the table is empty)",
        statements: [`ALTER TABLE "posts" ADD COLUMN "code" varchar(10) COLLATE "C" NOT NULL`]
      }
    ])
    const full = planMigration("pg", after, liveOf("pg", before, true))
    expect(full[0]!.kind).toBe("destructive")
    expect(full[0]!.reason).toMatch(/^add column posts\.code: NOT NULL without a default, and the table has rows/)
    // SQLite cannot ADD COLUMN … NOT NULL without a default: the table is rebuilt.
    const sqlite = planMigration("sqlite", after, liveOf("sqlite", before, false))
    expect(sqlite).toHaveLength(1)
    expect(sqlite[0]!.reason).toMatch(/^rebuild table posts: add column posts\.code/)
    expect(sqlite[0]!.kind).toBe("additive")
  })

  it("widens a column in place (additive) and narrows it only as a destructive step", () => {
    const narrow = registryOf(author, post())
    const wide = registryOf(author, post({ title: { type: "string", required: true, max_length: 200 } }))
    expect(brief(planMigration("pg", wide, liveOf("pg", narrow)))).toEqual([
      {
        kind: "additive",
        reason: "widen column posts.title: character varying(100) → character varying(200)",
        statements: [`ALTER TABLE "posts" ALTER COLUMN "title" TYPE varchar(200) COLLATE "C"`]
      }
    ])
    expect(brief(planMigration("mysql", wide, liveOf("mysql", narrow)))).toEqual([
      {
        kind: "additive",
        reason: "widen column posts.title: varchar(100) → varchar(200)",
        statements: ["ALTER TABLE `posts` MODIFY COLUMN `title` VARCHAR(200) NOT NULL"]
      }
    ])
    // SQLite stores both as TEXT: nothing to do.
    expect(planMigration("sqlite", wide, liveOf("sqlite", narrow))).toEqual([])
    const back = planMigration("pg", narrow, liveOf("pg", wide))
    expect(back.map((s) => [s.kind, s.reason])).toEqual([
      ["destructive", "narrow column posts.title: character varying(200) → character varying(100)"]
    ])
  })

  it("drops a column only as a destructive step (SQLite: by rebuilding the table, rows kept)", () => {
    const before = registryOf(author, post({ summary: { type: "text", optional: true } }))
    const after = registryOf(author, post())
    expect(brief(planMigration("pg", after, liveOf("pg", before)))).toEqual([
      {
        kind: "destructive",
        reason: "drop column posts.summary (not in the definitions; its data is lost)",
        statements: [`ALTER TABLE "posts" DROP COLUMN "summary"`]
      }
    ])
    const sqlite = planMigration("sqlite", after, liveOf("sqlite", before))
    expect(sqlite).toHaveLength(1)
    expect(sqlite[0]!.kind).toBe("destructive")
    expect(sqlite[0]!.statements.slice(1, 4)).toEqual([
      `INSERT INTO "posts__dbal_rebuild" ("id", "title", "author_id") SELECT "id", "title", "author_id" FROM "posts"`,
      `DROP TABLE "posts"`,
      `ALTER TABLE "posts__dbal_rebuild" RENAME TO "posts"`
    ])
  })

  it("adds a foreign key (additive; SQLite rebuilds), and a changed ON DELETE is destructive", () => {
    const withFk = (onDelete: string) =>
      registryOf(
        author,
        post({ author_id: { type: "uuid", optional: true, foreign_key: { entity: "Author", field: "id", on_delete: onDelete } } })
      )
    const none = registryOf(author, post())
    expect(brief(planMigration("pg", withFk("set_null"), liveOf("pg", none)))).toEqual([
      {
        kind: "additive",
        reason: "add foreign key posts.author_id → authors.id (on delete set null; fails if rows refer to nothing)",
        statements: [
          `ALTER TABLE "posts" ADD CONSTRAINT "fk_posts_author_id" FOREIGN KEY ("author_id") REFERENCES "authors" ("id") ON DELETE SET NULL`
        ]
      }
    ])
    const sqlite = planMigration("sqlite", withFk("set_null"), liveOf("sqlite", none))
    expect(sqlite.map((s) => s.kind)).toEqual(["additive"])
    expect(sqlite[0]!.statements[0]).toContain(
      `CONSTRAINT "fk_posts_author_id" FOREIGN KEY ("author_id") REFERENCES "authors" ("id") ON DELETE SET NULL`
    )
    const changed = planMigration("mysql", withFk("cascade"), liveOf("mysql", withFk("set_null")))
    expect(brief(changed)).toEqual([
      {
        kind: "destructive",
        reason: "change foreign key posts.author_id → authors.id: on delete set null → cascade",
        statements: [
          "ALTER TABLE `posts` DROP FOREIGN KEY `fk_posts_author_id`",
          "ALTER TABLE `posts` ADD CONSTRAINT `fk_posts_author_id` FOREIGN KEY (`author_id`) REFERENCES `authors` (`id`) ON DELETE CASCADE"
        ]
      }
    ])
    // MySQL reports no ON DELETE as RESTRICT: the same thing there.
    expect(planMigration("mysql", withFk("no_action"), liveOf("mysql", withFk("restrict")))).toEqual([])
    // A foreign key the definitions no longer have is dropped (destructive), before anything else.
    const dropped = planMigration(
      "pg",
      registryOf(author, post({ summary: { type: "text", optional: true } })),
      liveOf("pg", withFk("cascade"))
    )
    expect(dropped.map((s) => [s.kind, s.reason])).toEqual([
      ["destructive", "drop foreign key posts.(author_id) → authors.(id) (not in the definitions)"],
      ["additive", "add column posts.summary"]
    ])
  })

  it("indexes: a new one is additive; a unique one is destructive unless its columns are new; a unique one not defined is dropped; a plain one not defined is kept", () => {
    const plain = registryOf(author, post())
    const indexed = registryOf(author, post({}, [{ fields: ["title"] }]))
    expect(brief(planMigration("mysql", indexed, liveOf("mysql", plain)))).toEqual([
      {
        kind: "additive",
        reason: "add index posts.idx_posts_title on (title)",
        statements: ["CREATE INDEX `idx_posts_title` ON `posts` (`title`)"]
      }
    ])
    // Not in the definitions, not unique: kept.
    expect(planMigration("pg", plain, liveOf("pg", indexed))).toEqual([])

    const unique = registryOf(author, post({ title: { type: "string", required: true, max_length: 100, unique: true } }))
    expect(brief(planMigration("pg", unique, liveOf("pg", plain)))).toEqual([
      {
        kind: "destructive",
        reason: "add unique index posts.uq_posts_title on (title) (fails if existing rows have duplicates)",
        statements: [`ALTER TABLE "posts" ADD CONSTRAINT "uq_posts_title" UNIQUE ("title")`]
      }
    ])
    const newUnique = registryOf(author, post({ slug: { type: "string", optional: true, unique: true, max_length: 50 } }))
    expect(planMigration("pg", newUnique, liveOf("pg", plain)).map((s) => [s.kind, s.reason])).toEqual([
      ["additive", "add column posts.slug"],
      ["additive", "add unique index posts.uq_posts_slug on (slug)"]
    ])
    expect(brief(planMigration("pg", plain, liveOf("pg", unique)))).toEqual([
      {
        kind: "destructive",
        reason: "drop unique index posts.uq_posts_title on (title) (not in the definitions)",
        statements: [`ALTER TABLE "posts" DROP CONSTRAINT "uq_posts_title"`]
      }
    ])
    // A unique index made by CREATE UNIQUE INDEX (not a constraint) is dropped as an index.
    const asIndex = withTable(liveOf("pg", unique), "posts", (t) => ({
      ...t,
      indexes: t.indexes.map((i): LiveIndex => ({ ...i, constraint: false }))
    }))
    expect(planMigration("pg", plain, asIndex)[0]!.statements).toEqual([`DROP INDEX "uq_posts_title"`])
  })

  it("NULL ↔ NOT NULL: allowing NULL is additive; requiring it fills the default (additive) or is destructive without one", () => {
    const optional = registryOf(author, post({ summary: { type: "text", optional: true } }))
    const required = registryOf(author, post({ summary: { type: "text", required: true } }))
    const requiredWithDefault = registryOf(author, post({ summary: { type: "text", required: true, default: "none" } }))
    expect(brief(planMigration("pg", optional, liveOf("pg", required)))).toEqual([
      {
        kind: "additive",
        reason: "allow NULL in column posts.summary",
        statements: [`ALTER TABLE "posts" ALTER COLUMN "summary" DROP NOT NULL`]
      }
    ])
    expect(brief(planMigration("pg", requiredWithDefault, liveOf("pg", optional)))).toEqual([
      {
        kind: "additive",
        reason: "make column posts.summary NOT NULL (rows where it is NULL get the default 'none')",
        statements: [
          `UPDATE "posts" SET "summary" = 'none' WHERE "summary" IS NULL`,
          `ALTER TABLE "posts" ALTER COLUMN "summary" SET NOT NULL`
        ]
      }
    ])
    const noDefault = planMigration("mysql", required, liveOf("mysql", optional))
    expect(noDefault.map((s) => s.kind)).toEqual(["destructive"])
    expect(noDefault[0]!.statements).toEqual(["ALTER TABLE `posts` MODIFY COLUMN `summary` MEDIUMTEXT NOT NULL"])
  })

  it("drops tables the definitions do not have (destructive, last, referencing ones first), never the kept ones", () => {
    const reg = registryOf(author)
    const base = liveOf(
      "pg",
      registryOf(author, post({ author_id: { type: "uuid", optional: true, foreign_key: { entity: "Author", field: "id" } } }))
    )
    const tables = new Map(base.tables)
    tables.set("audit_records", {
      name: "audit_records",
      columns: [{ name: "id", type: "uuid", nullable: false }],
      indexes: [],
      foreignKeys: [],
      hasRows: true
    })
    tables.set('odd"name', { name: 'odd"name', columns: [], indexes: [], foreignKeys: [], hasRows: true })
    const steps = planMigration("pg", reg, { tables }, { keep: ["audit_records"] })
    expect(brief(steps)).toEqual([
      {
        kind: "destructive",
        reason: 'drop table odd"name (not in the definitions; its data is lost)',
        statements: [`DROP TABLE "odd""name"`]
      },
      { kind: "destructive", reason: "drop table posts (not in the definitions; its data is lost)", statements: [`DROP TABLE "posts"`] }
    ])
  })

  it("orders steps so that every database accepts them: foreign keys dropped first, tables created before foreign keys to them", () => {
    const before = registryOf(author, post({ legacy: { type: "uuid", optional: true, foreign_key: { entity: "Author", field: "id" } } }))
    const tag: Doc = {
      entity: "Tag",
      fields: { id: { type: "uuid", primary: true, generated: true }, label: { type: "string", required: true, max_length: 20 } }
    }
    const after = registryOf(author, tag, post({ tag_id: { type: "uuid", optional: true, foreign_key: { entity: "Tag", field: "id" } } }))
    const steps = planMigration("pg", after, liveOf("pg", before))
    expect(steps.map((s) => s.reason)).toEqual([
      "drop foreign key posts.(legacy) → authors.(id) (not in the definitions)",
      "create table tags",
      "add column posts.tag_id",
      "add foreign key posts.tag_id → tags.id (on delete no action; fails if rows refer to nothing)",
      "drop column posts.legacy (not in the definitions; its data is lost)"
    ])
  })
})
