/**
 * The schema of the live database, read for the migration plan (src/entity/MigrationPlan.ts):
 * tables, columns, indexes, foreign keys, and whether each table of the definitions holds rows.
 * One query set per dialect (PostgreSQL's catalog in the current schema, MySQL's
 * information_schema in the current database, SQLite's pragma functions), chosen with
 * `sql.onDialectOrElse` as @effect/sql does. Every query binds its values; the one identifier
 * written into SQL (the row probe) is a table of the definitions.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import { quoteIdent, type Dialect } from "../../src/entity/Ddl.js"
import type { LiveColumn, LiveForeignKey, LiveIndex, LiveSchema, LiveTable } from "../../src/entity/MigrationPlan.js"
import type { OnDelete } from "../../src/entity/Model.js"

type Row = Record<string, unknown>

interface Parts {
  readonly tables: ReadonlyArray<string>
  readonly columns: ReadonlyMap<string, Array<LiveColumn>>
  readonly indexes: ReadonlyMap<string, Array<LiveIndex>>
  readonly foreignKeys: ReadonlyMap<string, Array<LiveForeignKey>>
}

const push = <A>(m: Map<string, Array<A>>, k: string, v: A) => {
  const list = m.get(k)
  if (list === undefined) m.set(k, [v])
  else list.push(v)
}

/** A list of names as a driver returns a JSON array (parsed or as text). */
const names = (v: unknown): Array<string> => {
  const parsed = typeof v === "string" ? (JSON.parse(v) as unknown) : v
  return Array.isArray(parsed) ? parsed.map(String) : []
}

const onDeleteOf = (rule: string): OnDelete => {
  switch (rule.toUpperCase()) {
    case "CASCADE":
    case "C":
      return "cascade"
    case "SET NULL":
    case "N":
      return "set_null"
    case "RESTRICT":
    case "R":
      return "restrict"
    default:
      return "no_action"
  }
}

const pg = (sql: SqlClient.SqlClient): Effect.Effect<Parts, SqlError> =>
  Effect.gen(function* () {
    const tables = yield* sql<Row>`SELECT c.relname AS tbl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1`
    const columnRows =
      yield* sql<Row>`SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS typ, NOT a.attnotnull AS nul
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum`
    const indexRows = yield* sql<Row>`SELECT t.relname AS tbl, i.relname AS idx, ix.indisunique AS uniq,
        EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid AND k.conrelid = t.oid AND k.contype = 'u') AS con,
        array_to_json(ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord)) AS cols
      FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = current_schema() AND NOT ix.indisprimary AND ix.indpred IS NULL AND NOT (0 = ANY (ix.indkey::int2[]))
      ORDER BY t.relname, i.relname`
    const fkRows = yield* sql<Row>`SELECT t.relname AS tbl, k.conname AS con, r.relname AS ref, k.confdeltype AS del,
        array_to_json(ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS x(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.attnum ORDER BY x.ord)) AS cols,
        array_to_json(ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS x(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = x.attnum ORDER BY x.ord)) AS refcols
      FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = current_schema() AND k.contype = 'f' ORDER BY t.relname, k.conname`
    const columns = new Map<string, Array<LiveColumn>>()
    for (const r of columnRows) push(columns, String(r.tbl), { name: String(r.col), type: String(r.typ), nullable: r.nul === true })
    const indexes = new Map<string, Array<LiveIndex>>()
    for (const r of indexRows)
      push(indexes, String(r.tbl), { name: String(r.idx), columns: names(r.cols), unique: r.uniq === true, constraint: r.con === true })
    const foreignKeys = new Map<string, Array<LiveForeignKey>>()
    for (const r of fkRows) {
      push(foreignKeys, String(r.tbl), {
        name: String(r.con),
        columns: names(r.cols),
        refTable: String(r.ref),
        refColumns: names(r.refcols),
        onDelete: onDeleteOf(String(r.del))
      })
    }
    return { tables: tables.map((r) => String(r.tbl)), columns, indexes, foreignKeys }
  })

const mysql = (sql: SqlClient.SqlClient): Effect.Effect<Parts, SqlError> =>
  Effect.gen(function* () {
    const tables = yield* sql<Row>`SELECT TABLE_NAME AS tbl FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1`
    const columnRows = yield* sql<Row>`SELECT TABLE_NAME AS tbl, COLUMN_NAME AS col, COLUMN_TYPE AS typ, IS_NULLABLE AS nul
      FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION`
    const indexRows = yield* sql<Row>`SELECT TABLE_NAME AS tbl, INDEX_NAME AS idx, NON_UNIQUE AS nonuniq, COLUMN_NAME AS col
      FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY'
      ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`
    const fkRows = yield* sql<Row>`SELECT k.TABLE_NAME AS tbl, k.CONSTRAINT_NAME AS con, k.COLUMN_NAME AS col,
        k.REFERENCED_TABLE_NAME AS ref, k.REFERENCED_COLUMN_NAME AS refcol, r.DELETE_RULE AS del
      FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r
        ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME
      WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL
      ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION`
    const columns = new Map<string, Array<LiveColumn>>()
    for (const r of columnRows)
      push(columns, String(r.tbl), { name: String(r.col), type: String(r.typ), nullable: String(r.nul) === "YES" })
    const byIndex = new Map<string, { table: string; name: string; unique: boolean; columns: Array<string> }>()
    for (const r of indexRows) {
      const key = `${String(r.tbl)}\u0000${String(r.idx)}`
      const ix = byIndex.get(key) ?? { table: String(r.tbl), name: String(r.idx), unique: Number(r.nonuniq) === 0, columns: [] }
      ix.columns.push(String(r.col))
      byIndex.set(key, ix)
    }
    const indexes = new Map<string, Array<LiveIndex>>()
    for (const ix of byIndex.values()) push(indexes, ix.table, { name: ix.name, columns: ix.columns, unique: ix.unique, constraint: false })
    const byKey = new Map<
      string,
      { table: string; fk: { name: string; columns: Array<string>; refTable: string; refColumns: Array<string>; onDelete: OnDelete } }
    >()
    for (const r of fkRows) {
      const key = `${String(r.tbl)}\u0000${String(r.con)}`
      const k = byKey.get(key) ?? {
        table: String(r.tbl),
        fk: { name: String(r.con), columns: [], refTable: String(r.ref), refColumns: [], onDelete: onDeleteOf(String(r.del)) }
      }
      k.fk.columns.push(String(r.col))
      k.fk.refColumns.push(String(r.refcol))
      byKey.set(key, k)
    }
    const foreignKeys = new Map<string, Array<LiveForeignKey>>()
    for (const k of byKey.values()) push(foreignKeys, k.table, k.fk)
    return { tables: tables.map((r) => String(r.tbl)), columns, indexes, foreignKeys }
  })

const sqlite = (sql: SqlClient.SqlClient): Effect.Effect<Parts, SqlError> =>
  Effect.gen(function* () {
    const tables = (yield* sql<Row>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).map(
      (r) => String(r.name)
    )
    const columns = new Map<string, Array<LiveColumn>>()
    const indexes = new Map<string, Array<LiveIndex>>()
    const foreignKeys = new Map<string, Array<LiveForeignKey>>()
    const primaryKeys = new Map<string, Array<string>>()
    for (const table of tables) {
      const cols = yield* sql<Row>`SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info(${table}) ORDER BY cid`
      // A PRIMARY KEY column is NOT NULL for the daemon's tables (uuid ids), whatever the pragma says.
      for (const c of cols)
        push(columns, table, { name: String(c.name), type: String(c.type), nullable: Number(c.nn) === 0 && Number(c.pk) === 0 })
      primaryKeys.set(
        table,
        cols
          .filter((c) => Number(c.pk) > 0)
          .sort((a, b) => Number(a.pk) - Number(b.pk))
          .map((c) => String(c.name))
      )
      const list = yield* sql<Row>`SELECT name, "unique" AS uniq, origin, partial FROM pragma_index_list(${table})`
      for (const ix of list) {
        if (String(ix.origin) === "pk" || Number(ix.partial) === 1) continue
        const info = yield* sql<Row>`SELECT name FROM pragma_index_info(${String(ix.name)}) ORDER BY seqno`
        if (info.some((i) => i.name === null)) continue
        push(indexes, table, {
          name: String(ix.name),
          columns: info.map((i) => String(i.name)),
          unique: Number(ix.uniq) === 1,
          constraint: String(ix.origin) === "u"
        })
      }
      const fks =
        yield* sql<Row>`SELECT id, seq, "table" AS ref, "from" AS col, "to" AS refcol, on_delete AS del FROM pragma_foreign_key_list(${table}) ORDER BY id, seq`
      const byId = new Map<number, { columns: Array<string>; refTable: string; refColumns: Array<string | null>; onDelete: OnDelete }>()
      for (const r of fks) {
        const k = byId.get(Number(r.id)) ?? { columns: [], refTable: String(r.ref), refColumns: [], onDelete: onDeleteOf(String(r.del)) }
        k.columns.push(String(r.col))
        k.refColumns.push(r.refcol === null ? null : String(r.refcol))
        byId.set(Number(r.id), k)
      }
      for (const k of byId.values()) push(foreignKeys, table, { name: "", ...k, refColumns: k.refColumns.map((c) => c ?? "") })
    }
    // `REFERENCES t` without columns means t's primary key.
    for (const [table, list] of foreignKeys) {
      foreignKeys.set(
        table,
        list.map((k) => (k.refColumns.every((c) => c !== "") ? k : { ...k, refColumns: primaryKeys.get(k.refTable) ?? k.refColumns }))
      )
    }
    return { tables, columns, indexes, foreignKeys }
  })

/**
 * The live schema. `probe`: the tables (of the definitions) to look into for rows; only those
 * are named in SQL, quoted as the registry's identifiers are.
 */
export const introspect = (sql: SqlClient.SqlClient, dialect: Dialect, probe: ReadonlyArray<string>): Effect.Effect<LiveSchema, SqlError> =>
  Effect.gen(function* () {
    const parts = yield* sql.onDialectOrElse({
      pg: () => pg(sql),
      mysql: () => mysql(sql),
      sqlite: () => sqlite(sql),
      orElse: () => Effect.dieMessage(`no schema introspection for this SQL dialect`)
    })
    const tables = new Map<string, LiveTable>()
    for (const name of parts.tables) {
      const hasRows = probe.includes(name)
        ? (yield* sql.unsafe<Row>(`SELECT 1 AS x FROM ${quoteIdent(dialect, name)} LIMIT 1`)).length > 0
        : true
      tables.set(name, {
        name,
        columns: parts.columns.get(name) ?? [],
        indexes: parts.indexes.get(name) ?? [],
        foreignKeys: parts.foreignKeys.get(name) ?? [],
        hasRows
      })
    }
    return { tables }
  })
