/**
 * The real database servers the tests use (CONTRIBUTING.md, "Services"). Each run gets its own
 * database with a random name and drops it at the end. A server that does not answer skips its
 * suites with a line saying why, unless DBAL_REQUIRE_SERVICES=1, where it is a failure.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import mysql from "mysql2/promise"
import pg from "pg"

export type DialectName = "sqlite" | "postgresql" | "mysql"
export const requireServices = process.env.DBAL_REQUIRE_SERVICES === "1"

export const PG = {
  host: process.env.DBAL_TEST_PG_HOST ?? "127.0.0.1",
  port: Number(process.env.DBAL_TEST_PG_PORT ?? 5432),
  user: process.env.DBAL_TEST_PG_USER ?? "postgres"
}

/** The daemon's statements still running pg_sleep in database `name`, counted over a separate connection. */
export const pgSleepingStatements = async (name: string): Promise<number> => {
  const c = new pg.Client({ ...PG, database: "postgres", connectionTimeoutMillis: 3000 })
  await c.connect()
  try {
    const r = await c.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'dbal-daemon' AND state = 'active' AND query ILIKE '%pg_sleep%'",
      [name]
    )
    return (r.rows[0] as { n: number }).n
  } finally {
    await c.end()
  }
}
export const MY = {
  host: process.env.DBAL_TEST_MYSQL_HOST ?? "127.0.0.1",
  port: Number(process.env.DBAL_TEST_MYSQL_PORT ?? 3306),
  user: process.env.DBAL_TEST_MYSQL_USER ?? "root"
}

const pgAdmin = () => new pg.Client({ ...PG, database: "postgres", connectionTimeoutMillis: 3000 })
const myAdmin = () => mysql.createConnection({ ...MY, password: "", connectTimeout: 3000 })

/** Why a dialect cannot be tested here, or undefined when it can. */
export const unavailable = async (dialect: DialectName): Promise<string | undefined> => {
  try {
    if (dialect === "postgresql") {
      const c = pgAdmin()
      await c.connect()
      await c.end()
    } else if (dialect === "mysql") {
      const c = await myAdmin()
      await c.end()
    }
    return undefined
  } catch (e) {
    return `${dialect} at ${dialect === "postgresql" ? `${PG.host}:${PG.port}` : `${MY.host}:${MY.port}`} does not answer (${(e as Error).message})`
  }
}

/**
 * For `describe.skipIf`: true when the dialect must be skipped. With DBAL_REQUIRE_SERVICES=1 a
 * missing server throws, failing the file.
 */
export const skipDialect = async (dialect: DialectName): Promise<boolean> => {
  const why = await unavailable(dialect)
  if (why === undefined) return false
  if (requireServices) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${why}`)
  console.warn(`skipping ${dialect} tests: ${why}`)
  return true
}

export interface TestDatabase {
  readonly dialect: DialectName
  /** The `database:` section of a daemon configuration for it. */
  readonly databaseConfig: Record<string, unknown>
  readonly drop: () => Promise<void>
}

/**
 * Folders made by tempDir: removed after each test file (test/support/cleanup.ts, a vitest setup
 * file) and, for the bench and scripts, when the process exits.
 */
interface TempDirs {
  readonly dirs: Set<string>
  exitHook: boolean
}
// Shared by every evaluation of this module in a process (a fork that runs several test files
// evaluates it for each), so that one exit hook removes them all.
const made: TempDirs = ((globalThis as Record<symbol, TempDirs | undefined>)[Symbol.for("dbal.test.tempDirs")] ??= {
  dirs: new Set(),
  exitHook: false
})
export const removeTempDirs = () => {
  for (const d of made.dirs) fs.rmSync(d, { recursive: true, force: true })
  made.dirs.clear()
}
if (!made.exitHook) {
  made.exitHook = true
  process.once("exit", removeTempDirs)
}
export const tempDir = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dbal-${prefix}-`))
  made.dirs.add(dir)
  return dir
}

export const createDatabase = async (dialect: DialectName): Promise<TestDatabase> => {
  const name = `dbal_test_${randomBytes(5).toString("hex")}`
  if (dialect === "postgresql") {
    const c = pgAdmin()
    await c.connect()
    await c.query(`CREATE DATABASE ${name}`)
    await c.end()
    return {
      dialect,
      databaseConfig: {
        adapter: "postgresql",
        connection: { host: PG.host, port: PG.port, database: name, user: PG.user },
        pool_size: 5,
        auto_migrate: true
      },
      drop: async () => {
        const d = pgAdmin()
        await d.connect()
        await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        await d.end()
      }
    }
  }
  if (dialect === "mysql") {
    const c = await myAdmin()
    await c.query(`CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`)
    await c.end()
    return {
      dialect,
      databaseConfig: {
        adapter: "mysql",
        connection: { host: MY.host, port: MY.port, database: name, user: MY.user },
        pool_size: 5,
        auto_migrate: true
      },
      drop: async () => {
        const d = await myAdmin()
        await d.query(`DROP DATABASE IF EXISTS ${name}`)
        await d.end()
      }
    }
  }
  const dir = tempDir("sqlite")
  return {
    dialect,
    databaseConfig: { adapter: "sqlite", connection: { filename: path.join(dir, `${name}.sqlite`) }, auto_migrate: true },
    drop: async () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

export const SERVICE_TOKEN = "test-service-token-0123456789abcdef"
export const serviceAuth = { token: SERVICE_TOKEN, user_id: "tests" }

/** A complete daemon configuration for a test database (port 0: the OS picks a free one). */
export const daemonConfig = (db: TestDatabase, overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  server: { host: "127.0.0.1", port: 0 },
  database: db.databaseConfig,
  security: {
    audit_log: false,
    rate_limit: { enabled: false },
    auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] }
  },
  ...overrides
})

export const writeConfig = (config: Record<string, unknown>, dir = tempDir("config")): string => {
  const file = path.join(dir, "config.yaml")
  fs.writeFileSync(file, JSON.stringify(config, null, 2))
  return file
}
