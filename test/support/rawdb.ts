/**
 * A direct connection to a test database, beside the daemon: to run fixture SQL (tables made by
 * another tool), and to look at what the daemon did or did not create.
 */
import { createRequire } from "node:module"
import mysql from "mysql2/promise"
import pg from "pg"
import type { TestDatabase } from "./services.js"

export interface RawDb {
  /** Runs a script of `;`-separated statements (no `;` inside literals). */
  readonly exec: (script: string) => Promise<void>
  readonly query: (text: string) => Promise<ReadonlyArray<Record<string, unknown>>>
  /** The names of the database's tables, sorted. */
  readonly tables: () => Promise<ReadonlyArray<string>>
  readonly close: () => Promise<void>
}

const statements = (script: string): Array<string> =>
  script
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.replace(/^\s*--.*$/gm, "").trim())
    .filter((s) => s !== "")

/** The part of better-sqlite3 used here (the package ships no types). */
interface SqliteDb {
  exec(sql: string): void
  prepare(sql: string): { all(): Array<unknown> }
  close(): void
}
const SqliteDatabase = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => SqliteDb

export const rawDb = async (db: TestDatabase): Promise<RawDb> => {
  const conn = db.databaseConfig.connection as Record<string, unknown>
  if (db.dialect === "postgresql") {
    const c = new pg.Client({ host: String(conn.host), port: Number(conn.port), user: String(conn.user), database: String(conn.database) })
    await c.connect()
    const query = async (text: string) => (await c.query(text)).rows as ReadonlyArray<Record<string, unknown>>
    return {
      exec: async (script) => {
        for (const s of statements(script)) await c.query(s)
      },
      query,
      tables: async () =>
        (await query("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).map((r) =>
          String(r.name)
        ),
      close: () => c.end()
    }
  }
  if (db.dialect === "mysql") {
    const c = await mysql.createConnection({
      host: String(conn.host),
      port: Number(conn.port),
      user: String(conn.user),
      password: "",
      database: String(conn.database)
    })
    const query = async (text: string) => (await c.query(text))[0] as ReadonlyArray<Record<string, unknown>>
    return {
      exec: async (script) => {
        for (const s of statements(script)) await c.query(s)
      },
      query,
      tables: async () =>
        (await query("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1")).map((r) =>
          String(r.name)
        ),
      close: () => c.end()
    }
  }
  const c = new SqliteDatabase(String(conn.filename))
  const query = async (text: string) => c.prepare(text).all() as ReadonlyArray<Record<string, unknown>>
  return {
    exec: async (script) => {
      for (const s of statements(script)) c.exec(s)
    },
    query,
    tables: async () =>
      (await query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")).map((r) =>
        String(r.name)
      ),
    close: async () => void c.close()
  }
}
