/**
 * DDL from entity definitions, for each dialect. Types are chosen so that the three dialects
 * behave the same: binary (case-sensitive) string comparison and ordering everywhere, UTC
 * timestamps with millisecond precision, JSON stored as JSON (jsonb, JSON, TEXT).
 * Identifiers come only from the registry (checked by the loader to be snake_case).
 */
import type { Adapter } from "../Config.js"
import type { EntityDef, EntityRegistryShape, FieldDef } from "./Model.js"

export type Dialect = "sqlite" | "pg" | "mysql"

/** The SQL dialect each `database.adapter` speaks (one to one). */
const dialects: { readonly [A in Adapter]: Dialect } = { sqlite: "sqlite", postgresql: "pg", mysql: "mysql" }

export const dialectOf = (adapter: Adapter): Dialect => dialects[adapter]

/** The `database.adapter` name of a dialect: the name clients see. */
const adapters = Object.fromEntries(Object.entries(dialects).map(([adapter, dialect]) => [dialect, adapter])) as {
  readonly [D in Dialect]: Adapter
}

export const adapterOf = (dialect: Dialect): Adapter => adapters[dialect]

/** An identifier quoted for DDL text; identifiers come only from the registry (snake_case), so nothing is escaped. */
export const quoteIdent = (dialect: Dialect, ident: string): string => (dialect === "mysql" ? `\`${ident}\`` : `"${ident}"`)

const q = quoteIdent

/** The column type a field type is stored as (also the audit table's, layers/AuditLog.ts). */
export const columnType = (
  dialect: Dialect,
  f: Pick<FieldDef, "type" | "maxLength"> & Partial<Pick<FieldDef, "autoIncrement" | "precision" | "scale" | "epochMillis">>
): string => {
  switch (f.type) {
    case "uuid":
      return dialect === "pg" ? "uuid" : dialect === "mysql" ? "CHAR(36)" : "TEXT"
    case "string":
    case "email":
    case "enum":
      if (dialect === "sqlite") return "TEXT"
      if (f.maxLength !== undefined) return dialect === "pg" ? `varchar(${f.maxLength}) COLLATE "C"` : `VARCHAR(${f.maxLength})`
      return dialect === "pg" ? `text COLLATE "C"` : "MEDIUMTEXT"
    case "text":
      return dialect === "pg" ? `text COLLATE "C"` : dialect === "mysql" ? "MEDIUMTEXT" : "TEXT"
    case "integer":
      if (f.autoIncrement === true) return dialect === "pg" ? "serial" : dialect === "mysql" ? "INT AUTO_INCREMENT" : "INTEGER"
      return dialect === "pg" ? "integer" : dialect === "mysql" ? "INT" : "INTEGER"
    // As Prisma's migrate makes them (BigInt, Decimal, Float, String[]).
    case "bigint":
      return "BIGINT"
    case "decimal":
      return dialect === "sqlite" ? "DECIMAL" : `DECIMAL(${f.precision ?? 65},${f.scale ?? 30})`
    case "float":
      return dialect === "pg" ? "DOUBLE PRECISION" : dialect === "mysql" ? "DOUBLE" : "REAL"
    case "string_list":
      return "TEXT[]"
    case "boolean":
      return dialect === "pg" ? "boolean" : dialect === "mysql" ? "BOOLEAN" : "INTEGER"
    case "datetime":
      return dialect === "pg" ? "timestamptz(3)" : dialect === "mysql" ? "DATETIME(3)" : f.epochMillis === true ? "DATETIME" : "TEXT"
    case "json":
      return dialect === "pg" ? "jsonb" : dialect === "mysql" ? "JSON" : "TEXT"
  }
}

const checks = (dialect: Dialect, f: FieldDef): Array<string> => {
  const c = q(dialect, f.column)
  const out: Array<string> = []
  if (f.type === "enum" && f.values !== undefined) {
    out.push(`${c} IN (${f.values.map((v) => `'${v.replace(/'/g, "''")}'`).join(", ")})`)
  }
  if (f.type === "integer" && f.min !== undefined && f.max !== undefined && (f.min > -2147483648 || f.max < 2147483647)) {
    out.push(`${c} BETWEEN ${f.min} AND ${f.max}`)
  }
  if (f.type === "boolean" && dialect === "sqlite") out.push(`${c} IN (0, 1)`)
  if (f.type === "json" && dialect === "sqlite") out.push(`json_valid(${c})`)
  return out
}

const onDelete = (f: FieldDef): string => {
  switch (f.foreignKey?.onDelete) {
    case "cascade":
      return " ON DELETE CASCADE"
    case "set_null":
      return " ON DELETE SET NULL"
    case "restrict":
      return " ON DELETE RESTRICT"
    default:
      return ""
  }
}

export const fkName = (entity: EntityDef, f: FieldDef): string => `fk_${entity.table}_${f.column}`.slice(0, 63)

/**
 * A column's definition as in CREATE TABLE (also ALTER TABLE ADD/MODIFY COLUMN, src/entity/MigrationPlan.ts).
 * `nullable` overrides the field's (a column added with a default is filled first, then made NOT NULL).
 */
export const columnClause = (
  dialect: Dialect,
  f: FieldDef,
  options: { readonly nullable?: boolean; readonly primary?: boolean } = {}
): string => {
  const parts = [q(dialect, f.column), columnType(dialect, f)]
  if (!(options.nullable ?? f.nullable)) parts.push("NOT NULL")
  if (f.primary && options.primary !== false)
    parts.push(f.autoIncrement === true && dialect === "sqlite" ? "PRIMARY KEY AUTOINCREMENT" : "PRIMARY KEY")
  for (const c of checks(dialect, f)) parts.push(`CHECK (${c})`)
  return parts.join(" ")
}

/** The referenced table and column of a foreign key field, and its ON DELETE clause. */
export const references = (dialect: Dialect, f: FieldDef, registry: EntityRegistryShape): string => {
  const target = registry.entities.get(f.foreignKey!.entity)!
  const tf = target.byName.get(f.foreignKey!.field)!
  return `REFERENCES ${q(dialect, target.table)} (${q(dialect, tf.column)})${onDelete(f)}`
}

/** `CONSTRAINT fk_… FOREIGN KEY (…) REFERENCES …` of a foreign key field. */
export const foreignKeyClause = (dialect: Dialect, entity: EntityDef, f: FieldDef, registry: EntityRegistryShape): string =>
  `CONSTRAINT ${q(dialect, fkName(entity, f))} FOREIGN KEY (${q(dialect, f.column)}) ${references(dialect, f, registry)}`

/** `collation`: MySQL's table collation (binary; NO PAD where the server has one). */
export const createTable = (dialect: Dialect, entity: EntityDef, registry: EntityRegistryShape, collation = "utf8mb4_bin"): string => {
  const lines: Array<string> = []
  for (const f of entity.fields) lines.push(columnClause(dialect, f))
  for (const f of entity.fields) {
    if (f.foreignKey === undefined) continue
    lines.push(foreignKeyClause(dialect, entity, f, registry))
  }
  // MySQL 8 has no CREATE INDEX IF NOT EXISTS: its indexes are declared with the table.
  if (dialect === "mysql") {
    for (const ix of entity.indexes) {
      lines.push(`${ix.unique ? "UNIQUE KEY" : "KEY"} ${q(dialect, ix.name)} (${ix.fields.map((f) => q(dialect, f.column)).join(", ")})`)
    }
  } else {
    for (const ix of entity.indexes.filter((i) => i.unique)) {
      lines.push(`CONSTRAINT ${q(dialect, ix.name)} UNIQUE (${ix.fields.map((f) => q(dialect, f.column)).join(", ")})`)
    }
  }
  const tail = dialect === "mysql" ? ` ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${collation}` : ""
  return `CREATE TABLE IF NOT EXISTS ${q(dialect, entity.table)} (\n  ${lines.join(",\n  ")}\n)${tail}`
}

/** Plain indexes (unique ones are table constraints); `IF NOT EXISTS` on PostgreSQL and SQLite. */
export const createIndexes = (dialect: Dialect, entity: EntityDef): Array<{ name: string; sql: string }> =>
  entity.indexes
    .filter((ix) => !ix.unique || dialect === "mysql")
    .map((ix) => ({
      name: ix.name,
      sql:
        dialect === "mysql"
          ? `CREATE ${ix.unique ? "UNIQUE " : ""}INDEX ${q(dialect, ix.name)} ON ${q(dialect, entity.table)} (${ix.fields.map((f) => q(dialect, f.column)).join(", ")})`
          : `CREATE INDEX IF NOT EXISTS ${q(dialect, ix.name)} ON ${q(dialect, entity.table)} (${ix.fields.map((f) => q(dialect, f.column)).join(", ")})`
    }))

/** The whole schema, in creation order (referenced tables first). */
export const schemaDdl = (dialect: Dialect, registry: EntityRegistryShape): Array<string> =>
  registry.creationOrder.flatMap((e) => [
    createTable(dialect, e, registry),
    ...(dialect === "mysql" ? [] : createIndexes(dialect, e).map((i) => i.sql))
  ])
