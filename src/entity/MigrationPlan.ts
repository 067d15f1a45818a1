/**
 * What it takes to bring a database to the entity definitions: the pure diff between the
 * registry and the schema read from the live database (layers/db/Introspect.ts), as a list of
 * steps, each with its SQL for the dialect, whether it is additive (nothing that exists is lost
 * or narrowed) or destructive, and why it is needed.
 *
 * Identifiers of the definitions come from the registry (checked by the loader); names read from
 * the database (tables, columns, indexes, constraints the definitions do not have) are quoted with
 * their quote characters doubled, since nothing checked them.
 *
 * What is compared: tables, columns (type, NULL or NOT NULL), indexes (by columns and
 * uniqueness; an index the definitions do not name is kept unless it is unique), foreign keys (by
 * columns, referenced table and columns, ON DELETE). CHECK constraints (enum values, integer
 * bounds) and column defaults are not compared.
 */
import {
  columnClause,
  columnType,
  createIndexes,
  createTable,
  type Dialect,
  fkName,
  foreignKeyClause,
  quoteIdent,
  references
} from "./Ddl.js"
import type { EntityDef, EntityRegistryShape, FieldDef, IndexDef, OnDelete } from "./Model.js"

// ---------------------------------------------------------------------------------------------
// The live schema (what introspection returns)

export interface LiveColumn {
  readonly name: string
  /** As the database reports it (format_type on PostgreSQL, COLUMN_TYPE on MySQL, the declared type on SQLite). */
  readonly type: string
  readonly nullable: boolean
}

export interface LiveIndex {
  readonly name: string
  readonly columns: ReadonlyArray<string>
  readonly unique: boolean
  /**
   * Made by a table constraint rather than CREATE INDEX: a UNIQUE constraint on PostgreSQL (dropped
   * with ALTER TABLE … DROP CONSTRAINT), an autoindex on SQLite (dropped only by rebuilding the table).
   */
  readonly constraint: boolean
}

export interface LiveForeignKey {
  /** The constraint's name ("" on SQLite, which does not keep it). */
  readonly name: string
  readonly columns: ReadonlyArray<string>
  readonly refTable: string
  readonly refColumns: ReadonlyArray<string>
  readonly onDelete: OnDelete
}

export interface LiveTable {
  readonly name: string
  readonly columns: ReadonlyArray<LiveColumn>
  /** Without the primary key's index, expression and partial indexes. */
  readonly indexes: ReadonlyArray<LiveIndex>
  readonly foreignKeys: ReadonlyArray<LiveForeignKey>
  /** The table holds at least one row (a new NOT NULL column without a default cannot be added then). */
  readonly hasRows: boolean
}

export interface LiveSchema {
  readonly tables: ReadonlyMap<string, LiveTable>
}

// ---------------------------------------------------------------------------------------------
// Steps

export type StepKind = "additive" | "destructive"

export interface Step {
  readonly kind: StepKind
  readonly table: string
  /** What changes and why, one line (named in `migrate`'s refusal and in the record). */
  readonly reason: string
  readonly statements: ReadonlyArray<string>
}

export interface PlanOptions {
  /** Tables of the daemon's own that are not entities (the migrations record, the audit table): never dropped. */
  readonly keep?: ReadonlyArray<string>
  /** MySQL's table collation for new tables (layers/Database.ts picks the NO PAD binary one). */
  readonly collation?: string
}

/**
 * Phases, so that a plan runs in an order every database accepts (constraints dropped before their
 * columns, tables created before foreign keys to them).
 */
const enum Phase {
  DropForeignKeys = 0,
  DropUnique = 1,
  Build = 2,
  Constrain = 3,
  DropColumns = 4,
  DropTables = 5
}

interface Planned extends Step {
  readonly phase: Phase
}

// ---------------------------------------------------------------------------------------------
// Names and literals

/** A name read from the database: quoted, its quote characters doubled. */
export const quoteName = (dialect: Dialect, name: string): string =>
  dialect === "mysql" ? `\`${name.replace(/`/g, "``")}\`` : `"${name.replace(/"/g, '""')}"`

/** A definition's default as an SQL literal, or undefined when it has none that can be written as one. */
export const defaultLiteral = (dialect: Dialect, f: FieldDef): string | undefined => {
  const v = f.default
  if (v === undefined || v === null) return undefined
  const text = (s: string): string | undefined =>
    s.includes("\0") ? undefined : `'${(dialect === "mysql" ? s.replace(/\\/g, "\\\\") : s).replace(/'/g, "''")}'`
  switch (f.type) {
    case "boolean":
      return typeof v === "boolean" ? (dialect === "pg" ? (v ? "TRUE" : "FALSE") : v ? "1" : "0") : undefined
    case "json":
      return text(JSON.stringify(v))
    case "datetime":
      return undefined
    default:
      if (typeof v === "number") return Number.isFinite(v) ? String(v) : undefined
      if (typeof v === "string") return text(v)
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Types: canonical text, and how one type relates to another

/** A type as text both sides agree on: what the database reports for what the DDL says. */
export const canonicalType = (dialect: Dialect, type: string): string => {
  let t = type
    .trim()
    .toLowerCase()
    .replace(/\s+/g, " ")
    .replace(/ collate "?[a-z0-9_]+"?/g, "")
  if (dialect === "pg") {
    t = t
      .replace(/^varchar\b/, "character varying")
      .replace(/^char\b/, "character")
      .replace(/^timestamptz(\(\d+\))?$/, (_m, p: string | undefined) => `timestamp${p ?? ""} with time zone`)
      .replace(/^timestamp(\(\d+\))?$/, (_m, p: string | undefined) => `timestamp${p ?? ""} without time zone`)
      .replace(/^(int|int4|serial|serial4)$/, "integer")
      .replace(/^(int8|bigserial|serial8)$/, "bigint")
      .replace(/^(int2|smallserial|serial2)$/, "smallint")
      .replace(/^float8$/, "double precision")
      .replace(/^float4$/, "real")
      .replace(/^decimal\b/, "numeric")
      .replace(/^bool$/, "boolean")
    return t
  }
  if (dialect === "mysql") {
    if (/^(boolean|bool|tinyint\(1\))$/.test(t)) return "tinyint(1)"
    t = t
      .replace(/^(tinyint|smallint|mediumint|int|integer|bigint)\(\d+\)/, "$1")
      .replace(/^integer\b/, "int")
      .replace(/^(dec|numeric|fixed)\b/, "decimal")
      .replace(/^(double precision|real)$/, "double")
      // MariaDB's JSON is LONGTEXT (with a json_valid check).
      .replace(/^json$/, "longtext")
    return t
  }
  return t
}

interface Shape {
  readonly family: "string" | "char" | "integer" | "numeric" | "float" | "other"
  readonly size: number
  readonly scale?: number
}

const shapeOf = (canonical: string): Shape => {
  const n = (s: string | undefined) => Number(s)
  let m: RegExpMatchArray | null
  if ((m = canonical.match(/^(?:character varying|varchar)\((\d+)\)$/))) return { family: "string", size: n(m[1]) }
  if ((m = canonical.match(/^(?:character|char)\((\d+)\)$/))) return { family: "char", size: n(m[1]) }
  const texts: Record<string, number> = { tinytext: 255, text: 65_535, mediumtext: 16_777_215, longtext: 4_294_967_295 }
  if (canonical in texts) return { family: "string", size: texts[canonical]! }
  if (canonical === "character varying") return { family: "string", size: Number.POSITIVE_INFINITY }
  const ints: Record<string, number> = { tinyint: 8, smallint: 16, mediumint: 24, int: 32, integer: 32, bigint: 64 }
  if (canonical in ints) return { family: "integer", size: ints[canonical]! }
  if ((m = canonical.match(/^(?:numeric|decimal)\((\d+)(?:,\s*(\d+))?\)$/)))
    return { family: "numeric", size: n(m[1]) - n(m[2] ?? "0"), scale: n(m[2] ?? "0") }
  const floats: Record<string, number> = { real: 32, float: 32, "double precision": 64, double: 64 }
  if (canonical in floats) return { family: "float", size: floats[canonical]! }
  return { family: "other", size: 0 }
}

/** How the type `to` relates to `from`: the same, wider (every value fits), narrower, or another type. */
export const compareTypes = (dialect: Dialect, from: string, to: string): "same" | "wider" | "narrower" | "other" => {
  const a = canonicalType(dialect, from)
  const b = canonicalType(dialect, to)
  if (a === b) return "same"
  // PostgreSQL's text is unbounded; so is each dialect's JSON/text family as far as strings go.
  const sa = dialect === "pg" && a === "text" ? { family: "string" as const, size: Number.POSITIVE_INFINITY } : shapeOf(a)
  const sb = dialect === "pg" && b === "text" ? { family: "string" as const, size: Number.POSITIVE_INFINITY } : shapeOf(b)
  if (sa.family !== sb.family || sa.family === "other") return "other"
  const wider = sb.size >= sa.size && (sb.scale ?? 0) >= (sa.scale ?? 0)
  const narrower = sb.size <= sa.size && (sb.scale ?? 0) <= (sa.scale ?? 0)
  return wider ? "wider" : narrower ? "narrower" : "other"
}

// ---------------------------------------------------------------------------------------------
// The diff

const sameColumns = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => a.length === b.length && a.every((c, i) => c === b[i])

const onDeleteMatches = (dialect: Dialect, a: OnDelete, b: OnDelete) =>
  a === b || (dialect === "mysql" && (a === "restrict" || a === "no_action") && (b === "restrict" || b === "no_action"))

const describeOnDelete = (o: OnDelete) => o.replace("_", " ")

/** The foreign key a field of the definitions declares, as the database would report it. */
const wantedForeignKey = (f: FieldDef, registry: EntityRegistryShape): { refTable: string; refColumn: string; onDelete: OnDelete } => {
  const target = registry.entities.get(f.foreignKey!.entity)!
  return { refTable: target.table, refColumn: target.byName.get(f.foreignKey!.field)!.column, onDelete: f.foreignKey!.onDelete }
}

/** `ALTER TABLE t ADD CONSTRAINT uq UNIQUE (…)` or the dialect's equivalent. */
const addUnique = (dialect: Dialect, table: string, ix: IndexDef): string => {
  const cols = ix.fields.map((f) => quoteIdent(dialect, f.column)).join(", ")
  if (dialect === "pg") return `ALTER TABLE ${quoteIdent(dialect, table)} ADD CONSTRAINT ${quoteIdent(dialect, ix.name)} UNIQUE (${cols})`
  return `CREATE UNIQUE INDEX ${dialect === "sqlite" ? "IF NOT EXISTS " : ""}${quoteIdent(dialect, ix.name)} ON ${quoteIdent(dialect, table)} (${cols})`
}

const dropIndex = (dialect: Dialect, table: string, ix: LiveIndex): string => {
  if (dialect === "pg") {
    return ix.constraint
      ? `ALTER TABLE ${quoteName(dialect, table)} DROP CONSTRAINT ${quoteName(dialect, ix.name)}`
      : `DROP INDEX ${quoteName(dialect, ix.name)}`
  }
  if (dialect === "mysql") return `DROP INDEX ${quoteName(dialect, ix.name)} ON ${quoteName(dialect, table)}`
  return `DROP INDEX ${quoteName(dialect, ix.name)}`
}

const dropForeignKey = (dialect: Dialect, table: string, fk: LiveForeignKey): string =>
  `ALTER TABLE ${quoteName(dialect, table)} DROP ${dialect === "mysql" ? "FOREIGN KEY" : "CONSTRAINT"} ${quoteName(dialect, fk.name)}`

/** The rebuilt table's temporary name (SQLite). */
const rebuildName = (table: string) => `${table}__dbal_rebuild`

/**
 * SQLite alters little in place (no ADD CONSTRAINT, no ALTER COLUMN): a table whose foreign keys,
 * unique constraints, types or NOT NULL change is rebuilt, as SQLite's documentation describes:
 * created anew under another name, filled from the old one, the old one dropped and the new one
 * renamed, its indexes made again. The plan runs with foreign keys off (layers/db/Migrate.ts),
 * so dropping the old table deletes nothing elsewhere, and checks them before it commits.
 */
const rebuild = (entity: EntityDef, live: LiveTable, registry: EntityRegistryShape): ReadonlyArray<string> => {
  const q = (s: string) => quoteIdent("sqlite", s)
  const tmp = rebuildName(entity.table)
  const created = createTable("sqlite", entity, registry).replace(/^CREATE TABLE IF NOT EXISTS "[^"]+" \(/, `CREATE TABLE ${q(tmp)} (`)
  const had = new Map(live.columns.map((c) => [c.name, c]))
  const targets: Array<string> = []
  const sources: Array<string> = []
  for (const f of entity.fields) {
    const old = had.get(f.column)
    const fill = defaultLiteral("sqlite", f)
    if (old !== undefined) {
      targets.push(q(f.column))
      sources.push(!f.nullable && old.nullable && fill !== undefined ? `COALESCE(${q(f.column)}, ${fill})` : q(f.column))
    } else if (fill !== undefined && !f.nullable) {
      targets.push(q(f.column))
      sources.push(fill)
    }
  }
  return [
    created,
    `INSERT INTO ${q(tmp)} (${targets.join(", ")}) SELECT ${sources.join(", ")} FROM ${q(entity.table)}`,
    `DROP TABLE ${q(entity.table)}`,
    `ALTER TABLE ${q(tmp)} RENAME TO ${q(entity.table)}`,
    ...createIndexes("sqlite", entity).map((i) => i.sql)
  ]
}

interface Change {
  readonly kind: StepKind
  readonly reason: string
  readonly phase: Phase
  /** Empty: SQLite rebuilds the table for it. */
  readonly statements: ReadonlyArray<string>
}

/** The changes of one table that exists in both. */
const tableChanges = (dialect: Dialect, entity: EntityDef, live: LiveTable, registry: EntityRegistryShape): Array<Change> => {
  const out: Array<Change> = []
  const T = quoteIdent(dialect, entity.table)
  const t = entity.table
  const add = (kind: StepKind, phase: Phase, reason: string, statements: ReadonlyArray<string>) =>
    out.push({ kind, phase, reason, statements })
  const sqlite = dialect === "sqlite"
  const liveColumns = new Map(live.columns.map((c) => [c.name, c]))
  /** Columns this plan adds, and `fk:<column>` for foreign keys it adds with them. */
  const added = new Set<string>()

  for (const f of entity.fields) {
    const c = liveColumns.get(f.column)
    const C = quoteIdent(dialect, f.column)
    if (c === undefined) {
      added.add(f.column)
      const fill = defaultLiteral(dialect, f)
      const fk =
        f.foreignKey === undefined ? undefined : `CONSTRAINT ${quoteIdent(dialect, fkName(entity, f))} ${references(dialect, f, registry)}`
      if (f.nullable) {
        // SQLite adds a nullable column with its foreign key in place; the others add the constraint after (Constrain).
        add("additive", Phase.Build, `add column ${t}.${f.column}`, [
          `ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false })}${sqlite && fk !== undefined ? ` ${fk}` : ""}`
        ])
        if (sqlite && fk !== undefined) added.add(`fk:${f.column}`)
      } else if (fill !== undefined) {
        const why = `add column ${t}.${f.column} (NOT NULL; existing rows get the default ${fill})`
        if (dialect === "pg") {
          add("additive", Phase.Build, why, [
            `ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false }).replace(/ NOT NULL/, ` NOT NULL DEFAULT ${fill}`)}`,
            `ALTER TABLE ${T} ALTER COLUMN ${C} DROP DEFAULT`
          ])
        } else if (dialect === "mysql") {
          add("additive", Phase.Build, why, [
            `ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false }).replace(/ NOT NULL/, ` NOT NULL DEFAULT (${fill})`)}`,
            `ALTER TABLE ${T} ALTER COLUMN ${C} DROP DEFAULT`
          ])
        } else if (fk === undefined) {
          // SQLite keeps the default: it cannot drop one without a rebuild, and the daemon always sends a value.
          add("additive", Phase.Build, why, [
            `ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false }).replace(/ NOT NULL/, ` NOT NULL DEFAULT ${fill}`)}`
          ])
        } else {
          // A column added with REFERENCES must default to NULL on SQLite: rebuilt.
          add("additive", Phase.Build, why, [])
          added.add(`fk:${f.column}`)
        }
      } else if (!live.hasRows) {
        const why = `add column ${t}.${f.column} (NOT NULL; the table is empty)`
        // SQLite refuses ADD COLUMN … NOT NULL without a default even on an empty table: rebuilt.
        add("additive", Phase.Build, why, sqlite ? [] : [`ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false })}`])
      } else {
        add(
          "destructive",
          Phase.Build,
          `add column ${t}.${f.column}: NOT NULL without a default, and the table has rows (they have no value for it; fails unless they are deleted first)`,
          sqlite ? [] : [`ALTER TABLE ${T} ADD COLUMN ${columnClause(dialect, f, { primary: false })}`]
        )
      }
      continue
    }

    // The type.
    const wanted = columnType(dialect, f)
    const relation = compareTypes(dialect, c.type, wanted)
    const typeChanged = relation !== "same"
    if (typeChanged) {
      const kind: StepKind = relation === "wider" ? "additive" : "destructive"
      const what = relation === "wider" ? "widen" : relation === "narrower" ? "narrow" : "change the type of"
      const reason = `${what} column ${t}.${f.column}: ${canonicalType(dialect, c.type)} → ${canonicalType(dialect, wanted)}`
      if (dialect === "pg") {
        const cast = wanted.replace(/ COLLATE "[^"]+"$/, "")
        add(kind, Phase.Build, reason, [
          `ALTER TABLE ${T} ALTER COLUMN ${C} TYPE ${wanted}${relation === "other" ? ` USING ${C}::${cast}` : ""}`
        ])
      } else if (dialect === "mysql") {
        // MODIFY restates the whole column, NOT NULL included (its nullability is the live one until the next change).
        add(kind, Phase.Build, reason, [
          `ALTER TABLE ${T} MODIFY COLUMN ${columnClause(dialect, f, { primary: false, nullable: c.nullable })}`
        ])
      } else add(kind, Phase.Build, reason, [])
    }

    // NULL / NOT NULL.
    if (c.nullable && !f.nullable && !f.primary) {
      const fill = defaultLiteral(dialect, f)
      const update = fill === undefined ? [] : [`UPDATE ${T} SET ${C} = ${fill} WHERE ${C} IS NULL`]
      const reason =
        fill === undefined
          ? `make column ${t}.${f.column} NOT NULL: no default to give the rows where it is NULL (fails if there are any)`
          : `make column ${t}.${f.column} NOT NULL (rows where it is NULL get the default ${fill})`
      const kind: StepKind = fill === undefined ? "destructive" : "additive"
      if (dialect === "pg") add(kind, Phase.Build, reason, [...update, `ALTER TABLE ${T} ALTER COLUMN ${C} SET NOT NULL`])
      else if (dialect === "mysql")
        add(kind, Phase.Build, reason, [...update, `ALTER TABLE ${T} MODIFY COLUMN ${columnClause(dialect, f, { primary: false })}`])
      else add(kind, Phase.Build, reason, [])
    } else if (!c.nullable && f.nullable) {
      const reason = `allow NULL in column ${t}.${f.column}`
      if (dialect === "pg") add("additive", Phase.Build, reason, [`ALTER TABLE ${T} ALTER COLUMN ${C} DROP NOT NULL`])
      else if (dialect === "mysql")
        add("additive", Phase.Build, reason, [`ALTER TABLE ${T} MODIFY COLUMN ${columnClause(dialect, f, { primary: false })}`])
      else add("additive", Phase.Build, reason, [])
    }
  }

  // Columns the definitions do not have.
  const defined = new Set(entity.fields.map((f) => f.column))
  for (const c of live.columns) {
    if (defined.has(c.name)) continue
    add(
      "destructive",
      Phase.DropColumns,
      `drop column ${t}.${c.name} (not in the definitions; its data is lost)`,
      sqlite ? [] : [`ALTER TABLE ${T} DROP COLUMN ${quoteName(dialect, c.name)}`]
    )
  }

  // Indexes: matched by columns and uniqueness; a definition's index whose name is taken by another index replaces it.
  const matches = (ix: IndexDef, l: LiveIndex) =>
    l.unique === ix.unique &&
    sameColumns(
      l.columns,
      ix.fields.map((f) => f.column)
    )
  const unmatchedLive = live.indexes.filter((l) => !entity.indexes.some((ix) => matches(ix, l)))
  const dropLive = (l: LiveIndex, reason: string) => {
    add("destructive", Phase.DropUnique, reason, sqlite && l.constraint ? [] : [dropIndex(dialect, t, l)])
  }
  for (const l of unmatchedLive) {
    const sameName = entity.indexes.find((ix) => ix.name === l.name)
    if (sameName !== undefined)
      dropLive(
        l,
        `replace index ${t}.${l.name}: (${l.columns.join(", ")})${l.unique ? " unique" : ""} → (${sameName.fields.map((f) => f.column).join(", ")})${sameName.unique ? " unique" : ""}`
      )
    else if (l.unique) dropLive(l, `drop unique index ${t}.${l.name} on (${l.columns.join(", ")}) (not in the definitions)`)
    // A plain index the definitions do not name is kept: it loses no data, and InnoDB keeps one for each foreign key.
  }
  for (const ix of entity.indexes) {
    if (live.indexes.some((l) => matches(ix, l))) continue
    const cols = ix.fields.map((f) => f.column)
    if (ix.unique) {
      // A unique index over columns added by this plan holds NULLs only: nothing can conflict.
      const kind: StepKind = cols.every((c) => added.has(c)) ? "additive" : "destructive"
      const reason = `add unique index ${t}.${ix.name} on (${cols.join(", ")})${kind === "destructive" ? " (fails if existing rows have duplicates)" : ""}`
      add(kind, Phase.Constrain, reason, [addUnique(dialect, t, ix)])
    } else {
      const [created] = createIndexes(dialect, { ...entity, indexes: [ix] })
      add("additive", Phase.Constrain, `add index ${t}.${ix.name} on (${cols.join(", ")})`, [created!.sql])
    }
  }

  // Foreign keys: matched by columns and referenced table and columns.
  const fkFields = entity.fields.filter((f) => f.foreignKey !== undefined)
  for (const f of fkFields) {
    if (added.has(`fk:${f.column}`)) continue
    const w = wantedForeignKey(f, registry)
    const same = live.foreignKeys.find(
      (k) => sameColumns(k.columns, [f.column]) && k.refTable === w.refTable && sameColumns(k.refColumns, [w.refColumn])
    )
    const addSql = sqlite ? [] : [`ALTER TABLE ${T} ADD ${foreignKeyClause(dialect, entity, f, registry)}`]
    if (same === undefined) {
      add(
        "additive",
        Phase.Constrain,
        `add foreign key ${t}.${f.column} → ${w.refTable}.${w.refColumn} (on delete ${describeOnDelete(w.onDelete)}; fails if rows refer to nothing)`,
        addSql
      )
    } else if (!onDeleteMatches(dialect, same.onDelete, w.onDelete)) {
      add(
        "destructive",
        Phase.Constrain,
        `change foreign key ${t}.${f.column} → ${w.refTable}.${w.refColumn}: on delete ${describeOnDelete(same.onDelete)} → ${describeOnDelete(w.onDelete)}`,
        sqlite ? [] : [dropForeignKey(dialect, t, same), ...addSql]
      )
    }
  }
  for (const k of live.foreignKeys) {
    const wanted = fkFields.some((f) => {
      const w = wantedForeignKey(f, registry)
      return sameColumns(k.columns, [f.column]) && k.refTable === w.refTable && sameColumns(k.refColumns, [w.refColumn])
    })
    if (wanted) continue
    add(
      "destructive",
      Phase.DropForeignKeys,
      `drop foreign key ${t}.(${k.columns.join(", ")}) → ${k.refTable}.(${k.refColumns.join(", ")}) (not in the definitions)`,
      sqlite ? [] : [dropForeignKey(dialect, t, k)]
    )
  }
  return out
}

/** Extra tables in an order that drops referencing tables before the tables they refer to. */
const dropOrder = (tables: ReadonlyArray<LiveTable>): ReadonlyArray<LiveTable> => {
  const names = new Set(tables.map((t) => t.name))
  const done = new Set<string>()
  const out: Array<LiveTable> = []
  const visit = (t: LiveTable, path: Set<string>) => {
    if (done.has(t.name) || path.has(t.name)) return
    path.add(t.name)
    // Tables referring to this one go first.
    for (const other of tables) if (other.foreignKeys.some((k) => k.refTable === t.name) && other.name !== t.name) visit(other, path)
    done.add(t.name)
    out.push(t)
  }
  for (const t of [...tables].sort((a, b) => a.name.localeCompare(b.name))) if (names.has(t.name)) visit(t, new Set())
  return out
}

/** The steps that bring `live` to the definitions of `registry`, in the order they must run. */
export const planMigration = (
  dialect: Dialect,
  registry: EntityRegistryShape,
  live: LiveSchema,
  options: PlanOptions = {}
): ReadonlyArray<Step> => {
  const steps: Array<Planned> = []
  for (const entity of registry.creationOrder) {
    const table = live.tables.get(entity.table)
    if (table === undefined) {
      steps.push({
        kind: "additive",
        phase: Phase.Build,
        table: entity.table,
        reason: `create table ${entity.table}`,
        statements: [
          createTable(dialect, entity, registry, options.collation),
          ...(dialect === "mysql" ? [] : createIndexes(dialect, entity).map((i) => i.sql))
        ]
      })
      continue
    }
    const changes = tableChanges(dialect, entity, table, registry)
    if (changes.length === 0) continue
    if (dialect === "sqlite" && changes.some((c) => c.statements.length === 0)) {
      // A rebuild makes the table exactly as defined, so it does every change of the table. When
      // only destructive changes need it, the additive ones are made in place first, so that they
      // are not held back with it (auto_migrate leaves destructive steps out).
      const onlyDestructive = changes.every((c) => c.statements.length > 0 || c.kind === "destructive")
      const inPlace = onlyDestructive ? changes.filter((c) => c.kind === "additive") : []
      for (const c of inPlace) steps.push({ kind: c.kind, phase: c.phase, table: entity.table, reason: c.reason, statements: c.statements })
      const rest = changes.filter((c) => !inPlace.includes(c))
      steps.push({
        kind: rest.some((c) => c.kind === "destructive") ? "destructive" : "additive",
        phase: Phase.Build,
        table: entity.table,
        reason: `rebuild table ${entity.table}: ${rest.map((c) => c.reason).join("; ")}`,
        statements: rebuild(entity, table, registry)
      })
      continue
    }
    for (const c of changes) steps.push({ kind: c.kind, phase: c.phase, table: entity.table, reason: c.reason, statements: c.statements })
  }
  const defined = new Set(registry.creationOrder.map((e) => e.table))
  const keep = new Set(options.keep ?? [])
  const extra = [...live.tables.values()].filter((t) => !defined.has(t.name) && !keep.has(t.name) && !t.name.endsWith("__dbal_rebuild"))
  for (const t of dropOrder(extra)) {
    steps.push({
      kind: "destructive",
      phase: Phase.DropTables,
      table: t.name,
      reason: `drop table ${t.name} (not in the definitions; its data is lost)`,
      statements: [`DROP TABLE ${quoteName(dialect, t.name)}`]
    })
  }
  return steps
    .map((s, i) => ({ s, i }))
    .sort((a, b) => a.s.phase - b.s.phase || a.i - b.i)
    .map(({ s }) => ({ kind: s.kind, table: s.table, reason: s.reason, statements: s.statements }))
}
