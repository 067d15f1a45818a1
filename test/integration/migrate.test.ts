/**
 * `dbal-daemon migrate` run as users run it (`node bin/dbal-daemon.mjs`), on each dialect, from
 * an older definition set to a newer one:
 *
 * 1. v1 (Author; Post without summary, views, index or foreign key) is migrated onto an empty
 *    database, and a row is written beside the daemon.
 * 2. v2 adds a nullable column, a NOT NULL column with a default, an index, a foreign key and a
 *    wider title: `migrate --plan` prints the SQL of the dialect and changes nothing; `migrate`
 *    applies it (SQLite by rebuilding the table), keeps the row, and records it in
 *    dbal_migrations; a second run is "up to date" and records nothing.
 * 3. v3 drops the column: `migrate` refuses (exit code 1, the change named, nothing applied);
 *    `--allow-destructive` applies it and records it as destructive.
 * 4. At start with `auto_migrate: true`, the daemon applies additive changes and leaves
 *    destructive ones; with `auto_migrate: false` it changes nothing (no-migrate.test.ts covers
 *    an empty database).
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { root } from "../support/daemon.js"
import { startInProcess } from "../support/inprocess.js"
import { rawDb, type RawDb } from "../support/rawdb.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  skipDialect,
  tempDir,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { DIALECTS } from "./harness.js"

// Each spawn loads the TypeScript sources through tsx: seconds each on a busy machine.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 })

interface Run {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

const cleanEnv = (): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DBAL_")) out[k] = v
  return out
}

const cli = (args: ReadonlyArray<string>): Promise<Run> =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(root, "bin", "dbal-daemon.mjs"), ...args],
      { cwd: root, env: cleanEnv(), encoding: "utf8", timeout: 180_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== "number")
          return reject(new Error(`dbal-daemon ${args.join(" ")}: ${error.message}\n${stderr}`))
        resolve({ status: error === null ? 0 : (error.code as number), stdout, stderr })
      }
    )
  })

const AUTHOR = `entity: Author
fields:
  id: {type: uuid, primary: true, generated: true}
  name: {type: string, required: true, max_length: 100}
`
const POST_V1 = `entity: Post
fields:
  id: {type: uuid, primary: true, generated: true}
  title: {type: string, required: true, max_length: 100}
  author_id: {type: uuid, optional: true}
`
const POST_V2 = `entity: Post
fields:
  id: {type: uuid, primary: true, generated: true}
  title: {type: string, required: true, max_length: 200}
  author_id:
    type: uuid
    optional: true
    foreign_key: {entity: Author, field: id, on_delete: set_null}
  summary: {type: text, optional: true}
  views: {type: integer, required: true, default: 0}
indexes:
  - fields: [title]
`
const POST_V3 = POST_V2.replace("  summary: {type: text, optional: true}\n", "")

/** What `migrate --plan` prints for v1 → v2: the statements, one per line, in order. */
const PLAN_V2: Record<DialectName, ReadonlyArray<string>> = {
  postgresql: [
    `ALTER TABLE "posts" ALTER COLUMN "title" TYPE varchar(200) COLLATE "C";`,
    `ALTER TABLE "posts" ADD COLUMN "summary" text COLLATE "C";`,
    `ALTER TABLE "posts" ADD COLUMN "views" integer NOT NULL DEFAULT 0;`,
    `ALTER TABLE "posts" ALTER COLUMN "views" DROP DEFAULT;`,
    `CREATE INDEX IF NOT EXISTS "idx_posts_title" ON "posts" ("title");`,
    `ALTER TABLE "posts" ADD CONSTRAINT "fk_posts_author_id" FOREIGN KEY ("author_id") REFERENCES "authors" ("id") ON DELETE SET NULL;`
  ],
  mysql: [
    "ALTER TABLE `posts` MODIFY COLUMN `title` VARCHAR(200) NOT NULL;",
    "ALTER TABLE `posts` ADD COLUMN `summary` MEDIUMTEXT;",
    "ALTER TABLE `posts` ADD COLUMN `views` INT NOT NULL DEFAULT (0);",
    "ALTER TABLE `posts` ALTER COLUMN `views` DROP DEFAULT;",
    "CREATE INDEX `idx_posts_title` ON `posts` (`title`);",
    "ALTER TABLE `posts` ADD CONSTRAINT `fk_posts_author_id` FOREIGN KEY (`author_id`) REFERENCES `authors` (`id`) ON DELETE SET NULL;"
  ],
  // SQLite adds no foreign key in place: the table is rebuilt (rows copied, views filled with its default).
  sqlite: [
    `CREATE TABLE "posts__dbal_rebuild" (`,
    `"id" TEXT NOT NULL PRIMARY KEY,`,
    `"title" TEXT NOT NULL,`,
    `"author_id" TEXT,`,
    `"summary" TEXT,`,
    `"views" INTEGER NOT NULL,`,
    `CONSTRAINT "fk_posts_author_id" FOREIGN KEY ("author_id") REFERENCES "authors" ("id") ON DELETE SET NULL`,
    `);`,
    `INSERT INTO "posts__dbal_rebuild" ("id", "title", "author_id", "views") SELECT "id", "title", "author_id", 0 FROM "posts";`,
    `DROP TABLE "posts";`,
    `ALTER TABLE "posts__dbal_rebuild" RENAME TO "posts";`,
    `CREATE INDEX IF NOT EXISTS "idx_posts_title" ON "posts" ("title");`
  ]
}

const AUTHOR_ID = "a0000000-0000-4000-8000-000000000001"
const POST_ID = "b0000000-0000-4000-8000-000000000001"

/** The schema facts the test looks at, read over a direct connection. */
const schemaOf = async (raw: RawDb, dialect: DialectName) => {
  if (dialect === "sqlite") {
    const columns = (await raw.query(`SELECT name FROM pragma_table_info('posts') ORDER BY cid`)).map((r) => String(r.name))
    const indexes = (await raw.query(`SELECT name FROM pragma_index_list('posts')`)).map((r) => String(r.name))
    const fks = (await raw.query(`SELECT "table" AS ref, "from" AS col, on_delete AS del FROM pragma_foreign_key_list('posts')`)).map(
      (r) => `${String(r.col)}→${String(r.ref)} ${String(r.del)}`
    )
    return { columns, indexes, fks }
  }
  if (dialect === "postgresql") {
    const columns = (
      await raw.query(
        `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'posts' ORDER BY ordinal_position`
      )
    ).map((r) => String(r.name))
    const indexes = (await raw.query(`SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'posts'`)).map(
      (r) => String(r.name)
    )
    const fks = (
      await raw.query(
        `SELECT kcu.column_name AS col, ccu.table_name AS ref, rc.delete_rule AS del FROM information_schema.referential_constraints rc
         JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
         JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.constraint_name AND ccu.constraint_schema = rc.constraint_schema
         WHERE kcu.table_name = 'posts'`
      )
    ).map((r) => `${String(r.col)}→${String(r.ref)} ${String(r.del)}`)
    return { columns, indexes, fks }
  }
  const columns = (
    await raw.query(
      `SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'posts' ORDER BY ORDINAL_POSITION`
    )
  ).map((r) => String(r.name))
  const indexes = [
    ...new Set(
      (
        await raw.query(
          `SELECT INDEX_NAME AS name FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'posts'`
        )
      ).map((r) => String(r.name))
    )
  ]
  const fks = (
    await raw.query(
      `SELECT k.COLUMN_NAME AS col, k.REFERENCED_TABLE_NAME AS ref, r.DELETE_RULE AS del FROM information_schema.KEY_COLUMN_USAGE k
       JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
       WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = 'posts' AND k.REFERENCED_TABLE_NAME IS NOT NULL`
    )
  ).map((r) => `${String(r.col)}→${String(r.ref)} ${String(r.del)}`)
  return { columns, indexes, fks }
}

const records = async (raw: RawDb) =>
  (await raw.query(`SELECT daemon_version, checksum, destructive, steps FROM dbal_migrations ORDER BY applied_at`)).map((r) => ({
    version: String(r.daemon_version),
    checksum: String(r.checksum),
    destructive: r.destructive === true || Number(r.destructive) === 1,
    steps: JSON.parse(String(r.steps)) as Array<{ kind: string; reason: string; statements: Array<string> }>
  }))

const statementLines = (stdout: string) =>
  stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("--"))

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: dbal-daemon migrate`, () => {
    let db: TestDatabase | undefined
    let raw: RawDb | undefined
    const dir = tempDir(`migrate-${dialect}`)
    /** A configuration whose entities are this version's files. */
    const configFor = (version: string, post: string, autoMigrate = false): string => {
      const entities = path.join(dir, version)
      fs.mkdirSync(entities, { recursive: true })
      fs.writeFileSync(path.join(entities, "author.yaml"), AUTHOR)
      fs.writeFileSync(path.join(entities, "post.yaml"), post)
      return writeConfig(
        daemonConfig(db!, { entities: { dir: entities }, database: { ...db!.databaseConfig, auto_migrate: autoMigrate } }),
        fs.mkdtempSync(path.join(dir, "cfg-"))
      )
    }

    beforeAll(async () => {
      db = await createDatabase(dialect)
      raw = await rawDb(db)
    })
    afterAll(async () => {
      await raw?.close()
      await db?.drop()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it("v1 onto an empty database: creates the tables and records it", async () => {
      const r = await cli(["migrate", `--config=${configFor("v1", POST_V1)}`])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^migrated: authors, posts$/m)
      expect(await raw!.tables()).toEqual(["authors", "dbal_migrations", "posts"])
      expect((await schemaOf(raw!, dialect)).columns).toEqual(["id", "title", "author_id"])
      const recs = await records(raw!)
      expect(recs).toHaveLength(1)
      expect(recs[0]!.steps.map((s) => s.reason)).toEqual(["create table authors", "create table posts"])
      await raw!.exec(`INSERT INTO authors (id, name) VALUES ('${AUTHOR_ID}', 'Ann');
        INSERT INTO posts (id, title, author_id) VALUES ('${POST_ID}', 'hello', '${AUTHOR_ID}')`)
    })

    it("v2 --plan prints the dialect's SQL and changes nothing", async () => {
      const r = await cli(["migrate", "--plan", `--config=${configFor("v2", POST_V2)}`])
      expect(r.status, r.stderr).toBe(0)
      expect(statementLines(r.stdout)).toEqual(PLAN_V2[dialect])
      expect(r.stdout).toMatch(
        dialect === "sqlite" ? /^-- sqlite: 1 change \(1 additive, 0 destructive\)$/m : /: 5 changes \(5 additive, 0 destructive\)$/m
      )
      expect((await schemaOf(raw!, dialect)).columns).toEqual(["id", "title", "author_id"])
      expect(await records(raw!)).toHaveLength(1)
    })

    it("v2: migrate adds the column, the index and the foreign key, keeps the row, and records it", async () => {
      const r = await cli(["migrate", `--config=${configFor("v2", POST_V2)}`])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^migrated: posts$/m)
      expect(r.stdout).toMatch(/^recorded in dbal_migrations: [0-9a-f-]{36}$/m)
      const s = await schemaOf(raw!, dialect)
      expect(s.columns).toEqual(["id", "title", "author_id", "summary", "views"])
      expect(s.indexes).toContain("idx_posts_title")
      expect(s.fks).toEqual([`author_id→authors SET NULL`])
      const rows = await raw!.query(`SELECT id, title, author_id, summary, views FROM posts`)
      expect(rows.map((x) => ({ ...x, views: Number(x.views) }))).toEqual([
        { id: POST_ID, title: "hello", author_id: AUTHOR_ID, summary: null, views: 0 }
      ])
      const recs = await records(raw!)
      expect(recs).toHaveLength(2)
      expect(recs[1]!.version).toMatch(/^\d+\.\d+\.\d+/)
      expect(recs[1]!.checksum).toMatch(/^[0-9a-f]{64}$/)
      expect(recs[1]!.destructive).toBe(false)
      expect(
        recs[1]!.steps
          .flatMap((x) => x.statements)
          .map((t) => `${t};`)
          .join("\n")
          .split("\n")
          .map((l) => l.trim())
      ).toEqual(PLAN_V2[dialect])
    })

    it("v2 again: up to date, nothing recorded", async () => {
      const r = await cli(["migrate", `--config=${configFor("v2", POST_V2)}`])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout.trim()).toBe("up to date: the database matches the definitions")
      const p = await cli(["migrate", "--plan", `--config=${configFor("v2", POST_V2)}`])
      expect(p.stdout).toMatch(/up to date/)
      expect(statementLines(p.stdout)).toEqual([])
      expect(await records(raw!)).toHaveLength(2)
    })

    it("v3 drops a column: refused without --allow-destructive (exit 1, the change named, nothing applied)", async () => {
      const r = await cli(["migrate", `--config=${configFor("v3", POST_V3)}`])
      expect(r.status).toBe(1)
      expect(r.stdout).toBe("")
      expect(r.stderr).toMatch(/^dbal-daemon: refused 1 destructive change, nothing was applied/m)
      expect(r.stderr).toContain("drop column posts.summary (not in the definitions; its data is lost)")
      expect(r.stderr).not.toMatch(/ALTER|DROP TABLE| {4}at /)
      expect((await schemaOf(raw!, dialect)).columns).toContain("summary")
      expect(await records(raw!)).toHaveLength(2)
    })

    it("v3 --allow-destructive drops it, keeps the row, records it as destructive", async () => {
      const r = await cli(["migrate", "--allow-destructive", `--config=${configFor("v3", POST_V3)}`])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/destructive: .*drop column posts\.summary/)
      const s = await schemaOf(raw!, dialect)
      expect(s.columns).toEqual(["id", "title", "author_id", "views"])
      expect(s.fks).toEqual([`author_id→authors SET NULL`])
      expect(s.indexes).toContain("idx_posts_title")
      expect((await raw!.query(`SELECT title FROM posts`)).map((x) => x.title)).toEqual(["hello"])
      const recs = await records(raw!)
      expect(recs).toHaveLength(3)
      expect(recs[2]!.destructive).toBe(true)
    })

    it("at start, auto_migrate applies the additive changes only; auto_migrate false changes nothing", async () => {
      // v2's definitions again: `summary` is missing (additive). A definition set without `views` would drop it (destructive).
      const withoutViews = POST_V2.replace("  views: {type: integer, required: true, default: 0}\n", "")
      const off = await startInProcess(configFor("v4-off", withoutViews, false))
      await off.runtime.dispose()
      expect((await schemaOf(raw!, dialect)).columns).toEqual(["id", "title", "author_id", "views"])
      const on = await startInProcess(configFor("v4-on", withoutViews, true))
      await on.runtime.dispose()
      // summary added; views, not in these definitions, kept.
      expect((await schemaOf(raw!, dialect)).columns).toEqual(["id", "title", "author_id", "views", "summary"])
      const recs = await records(raw!)
      expect(recs).toHaveLength(4)
      expect(recs[3]!.steps.map((x) => x.reason)).toEqual(["add column posts.summary"])
      expect(recs[3]!.destructive).toBe(false)
    })

    it("a failing step: PostgreSQL and SQLite roll the whole plan back; MySQL keeps the statements before it and says how many", async () => {
      // Two rows with the same title, then definitions that add a column (additive) and make the title unique (fails).
      await raw!.exec(`INSERT INTO posts (id, title, author_id, views) VALUES ('b0000000-0000-4000-8000-000000000002', 'hello', NULL, 1)`)
      const unique = POST_V2.replace(
        "title: {type: string, required: true, max_length: 200}",
        "title: {type: string, required: true, max_length: 200, unique: true}"
      ).replace(
        "  summary: {type: text, optional: true}\n",
        "  summary: {type: text, optional: true}\n  subtitle: {type: text, optional: true}\n"
      )
      const r = await cli(["migrate", "--allow-destructive", `--config=${configFor("v5", unique)}`])
      expect(r.status).toBe(1)
      const line = r.stderr.split("\n").find((l) => l.startsWith("dbal-daemon: migration failed at")) ?? r.stderr
      expect(line).toContain(
        `migration failed at "add unique index posts.uq_posts_title on (title) (fails if existing rows have duplicates)"`
      )
      expect(line).not.toMatch(/CREATE|ALTER| {4}at /)
      const columns = (await schemaOf(raw!, dialect)).columns
      if (dialect === "mysql") {
        expect(line).toMatch(/; 1 statement was applied before it \(MySQL\/MariaDB commit each DDL statement/)
        expect(columns).toContain("subtitle")
      } else {
        expect(line).toMatch(/; nothing was applied \(rolled back\)$/)
        expect(columns).not.toContain("subtitle")
      }
      expect(await records(raw!)).toHaveLength(4)
    })
  })
}
