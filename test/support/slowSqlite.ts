/**
 * A SQLite database where one `count` runs for seconds: many PageView rows whose titles repeat a
 * filler, and a filter of many `contains` conditions that almost match at every repetition. The
 * rows are written beside the running daemon (WAL lets a second connection write).
 */
import { createRequire } from "node:module"

/** The part of better-sqlite3 the tests use (the package ships no types). */
export interface SeedConnection {
  prepare(sql: string): {
    all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>>
    get(...params: ReadonlyArray<unknown>): Record<string, unknown> | undefined
    run(...params: ReadonlyArray<unknown>): unknown
  }
  pragma(sql: string): unknown
  exec(sql: string): unknown
  close(): void
}
export const Sqlite = createRequire(import.meta.url)("better-sqlite3") as new (filename: string) => SeedConnection

const FILLER = "lorem ipsum dolor sit amet "

/**
 * 96 `contains` conditions of 60 characters (so that one count outlasts a query_timeout of
 * seconds on a fast machine too) that match nothing, each almost matching at every repetition of
 * the titles' filler: seconds of work for one count over the seeded pages. Its complexity score
 * is high (patterns are costed): the daemon must admit it (`performance.max_query_complexity`).
 */
export const slowFilter = {
  OR: Array.from({ length: 96 }, (_, i) => ({ title: { contains: `${FILLER.repeat(3).slice(0, 55)}#${String(i).padStart(4, "0")}` } }))
}

/** Adds `pages` copies of the page whose slug is `template` (which must exist), with long titles. */
export const seedPages = (filename: string, pages: number): void => {
  const seed = new Sqlite(filename)
  try {
    seed.pragma("busy_timeout = 10000")
    const columns = seed
      .prepare("SELECT name FROM pragma_table_info('page_views')")
      .all()
      .map((r) => String(r.name))
    const value = (c: string) =>
      c === "id"
        ? "printf('%08x-0000-4000-8000-%012x', n, n)"
        : c === "slug"
          ? "'seed-' || n"
          : c === "title"
            ? `substr('page ' || n || ' ' || '${FILLER.repeat(10)}', 1, 250)`
            : `t."${c}"`
    seed
      .prepare(
        `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ${pages})
         INSERT INTO page_views (${columns.map((c) => `"${c}"`).join(", ")}) SELECT ${columns.map(value).join(", ")} FROM s, page_views t WHERE t.slug = 'template'`
      )
      .run()
  } finally {
    seed.close()
  }
}
