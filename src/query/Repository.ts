/**
 * The SQL of every method, written once for the three dialects. Ids are generated here and
 * rows are read back by id, so nothing relies on RETURNING (MySQL 8 has none) — except the ids
 * a database numbers itself (autoincrement), which come back from the INSERT. Every statement
 * is built from registry identifiers and bound parameters; writes that touch several rows run in
 * one transaction.
 */
import type { Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { SqlClient } from "@effect/sql"
import { Context, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { generate } from "../entity/Generate.js"
import { FieldIssue, Forbidden, NotFound, type RequestError, ValidationFailed } from "../Errors.js"
import type { Dialect } from "../entity/Ddl.js"
import type { EntityDef, EntityRegistryShape, FieldDef } from "../entity/Model.js"
import { isUuid, storableText, type Values } from "../entity/Validate.js"
import type { RowChange } from "../services/Changes.js"
import type { DatabaseShape } from "../services/Database.js"
import { decodeRow, encodeValue, type Row, type WireRecord, wireOfValues } from "./Codec.js"
import { capturing, note } from "./Capture.js"
import { makeReadBatch } from "./ReadBatch.js"
import { classify, toRequestError } from "./DbErrors.js"
import { and, compileFilter, filterFields, type FilterNode, TRUE } from "./Filter.js"
import { currentJournal, type JournalEntry } from "./Journal.js"
import { admitsNewRecord, newRecordAdmitter, touchesFilter } from "./WritePlan.js"
import { defaultRetrySettings, type RetrySettings, retryOutsideTransaction, withRetry } from "./Retry.js"

/** What the access decision allows: the rows (a filter added to every statement) and fields. */
export interface Access {
  readonly rowFilter: FilterNode
  readonly readable: ReadonlyArray<FieldDef>
}

export const fullAccess = (entity: EntityDef): Access => ({ rowFilter: TRUE, readable: entity.exposed })

/** A relation followed by `include`, with the access decision for the referenced entity. */
export interface Include {
  readonly name: string
  readonly field: FieldDef
  readonly target: EntityDef
  readonly targetField: FieldDef
  readonly access: Access
}

export interface SortKey {
  readonly field: FieldDef
  readonly direction: "asc" | "desc"
}

export interface Page {
  readonly data: ReadonlyArray<WireRecord>
  readonly total: number
}

/** Rows per INSERT statement, well under every dialect's parameter limit. */
const INSERT_CHUNK = 200

const columns = (sql: Statement.Constructor, fields: ReadonlyArray<FieldDef>) =>
  sql.join(", ", false)(fields.map((f) => sql`${sql(f.column)}`))

/**
 * A column as a SELECT reads it. SQLite answers a BIGINT or DECIMAL as a JavaScript number,
 * which loses digits past 2^53: there it is read as text (the exact integer, or the 15 digits
 * SQLite keeps of a REAL).
 */
const readColumn = (sql: Statement.Constructor, dialect: Dialect, f: FieldDef, alias?: string, as: string = f.column) => {
  const c = alias === undefined ? sql`${sql(f.column)}` : sql`${sql(alias)}.${sql(f.column)}`
  return dialect === "sqlite" && (f.type === "bigint" || f.type === "decimal")
    ? sql`CAST(${c} AS TEXT) AS ${sql(as)}`
    : alias === undefined && as === f.column
      ? c
      : sql`${c} AS ${sql(as)}`
}

const selectList = (sql: Statement.Constructor, dialect: Dialect, fields: ReadonlyArray<FieldDef>) =>
  sql.join(", ", false)(fields.map((f) => readColumn(sql, dialect, f)))

/**
 * A primary key value as a request names it, or undefined when no record can have it (the
 * record is then not found): a UUID, an integer (autoincrement ids; digits in a string too) or
 * a string.
 */
export const pkValue = (entity: EntityDef, raw: unknown): unknown => {
  const pk = entity.primaryKey
  switch (pk.type) {
    case "uuid":
      return typeof raw === "string" && isUuid(raw) ? raw.toLowerCase() : undefined
    case "integer": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d{1,10}$/.test(raw) ? Number(raw) : Number.NaN
      return Number.isSafeInteger(n) && n >= -2147483648 && n <= 2147483647 ? n : undefined
    }
    default:
      return typeof raw === "string" && raw !== "" && storableText(raw) && raw.length <= (pk.maxLength ?? 255) ? raw : undefined
  }
}

/** The fields an INSERT names: all but an autoincrement key, which the database assigns. */
const insertedFields = (entity: EntityDef) => entity.fields.filter((f) => f.autoIncrement !== true)

const orderBy = (sql: Statement.Constructor, entity: EntityDef, sort: ReadonlyArray<SortKey>, alias?: string) => {
  const keys: Array<SortKey> = [...sort]
  if (keys.length === 0 && entity.orderField !== undefined) keys.push({ field: entity.orderField, direction: "asc" })
  if (!keys.some((k) => k.field === entity.primaryKey)) keys.push({ field: entity.primaryKey, direction: "asc" })
  // NULLs sort as the largest value on every dialect (PostgreSQL's rule), so pages agree.
  const parts = keys.flatMap((k) => {
    const dir = sql.literal(k.direction === "asc" ? "ASC" : "DESC")
    const c = alias === undefined ? sql`${sql(k.field.column)}` : sql`${sql(alias)}.${sql(k.field.column)}`
    return k.field.nullable ? [sql`${c} IS NULL ${dir}`, sql`${c} ${dir}`] : [sql`${c} ${dir}`]
  })
  return sql.join(", ", false)(parts)
}

/** The columns a SELECT reads for these readable fields (never none: a rule may allow no field). */
const selected = (entity: EntityDef, readable: ReadonlyArray<FieldDef>) => (readable.length === 0 ? [entity.primaryKey] : readable)

const intLiteral = (sql: Statement.Constructor, n: number) => sql.literal(String(Math.max(0, Math.trunc(n))))

/** Maps a driver failure; a foreign-key failure of a write is resolved into which field is wrong. */
const mapWriteError =
  (db: DatabaseShape, registry: EntityRegistryShape, entity: EntityDef, written: ReadonlyArray<Values>, timeoutMs = 0) =>
  (error: SqlError): Effect.Effect<never, RequestError> => {
    const failure = classify(entity, error)
    if (failure.kind !== "foreignKey" || written.length === 0) return Effect.fail(toRequestError(entity, error, failure, timeoutMs))
    return missingReferences(db, registry, entity, written).pipe(
      Effect.flatMap((issues) =>
        issues.length > 0 ? Effect.fail(new ValidationFailed({ fields: issues })) : Effect.fail(toRequestError(entity, error, failure))
      )
    )
  }

/** Which foreign-key values of the written records point at no row (run after the failed write). */
const missingReferences = (
  db: DatabaseShape,
  registry: EntityRegistryShape,
  entity: EntityDef,
  written: ReadonlyArray<Values>
): Effect.Effect<Array<FieldIssue>, RequestError> =>
  Effect.gen(function* () {
    const { sql, dialect } = db
    const issues: Array<FieldIssue> = []
    for (const [i, values] of written.entries()) {
      for (const [f, v] of values) {
        if (f.foreignKey === undefined || v === null) continue
        const target = registry.entities.get(f.foreignKey.entity)!
        const tf = target.byName.get(f.foreignKey.field)!
        const rows = yield* sql<Row>`SELECT 1 AS x FROM ${sql(target.table)} WHERE ${sql(tf.column)} = ${encodeValue(dialect, tf, v)}`.pipe(
          Effect.mapError((e) => toRequestError(entity, e))
        )
        if (rows.length === 0) {
          issues.push(
            new FieldIssue({
              field: written.length > 1 ? `data[${i}].${f.name}` : f.name,
              error: `refers to a ${target.name} that does not exist`
            })
          )
        }
      }
    }
    return issues
  })

const isTrue = (n: FilterNode) => n._tag === "And" && n.nodes.length === 0

/** Keys per `IN (...)` list, well under every dialect's parameter limit. */
const ID_CHUNK = 500

const chunked = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * A write may not leave a row outside the rows its author may write (for example a user giving
 * their record to someone else): checked inside the write's transaction, which a 403 rolls back.
 */
const stillAdmitted = (db: DatabaseShape, entity: EntityDef, ids: ReadonlyArray<unknown>, rowFilter: FilterNode) =>
  Effect.gen(function* () {
    if (isTrue(rowFilter) || ids.length === 0) return
    const { sql, dialect } = db
    const pk = entity.primaryKey
    let admitted = 0
    for (const chunk of chunked(ids, ID_CHUNK)) {
      const idIn: FilterNode = { _tag: "In", field: pk, values: chunk, negate: false }
      const rows = yield* sql<{
        n: unknown
      }>`SELECT COUNT(*) AS n FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(idIn, rowFilter))}`
      admitted += Number(rows[0]?.n ?? 0)
    }
    if (admitted < ids.length) {
      return yield* new Forbidden({ reason: `the written ${entity.name} would fall outside the rows you may write` })
    }
  })

/** The key of a new record when the daemon makes it; undefined when the database numbers it (autoincrement). */
const newKey = (pk: FieldDef): unknown =>
  pk.autoIncrement === true ? undefined : pk.defaultFn === undefined ? randomUUID() : generate(pk.defaultFn)

/**
 * The value an inserted field of a new record gets: the key made for it, the request's instant
 * for the daemon-set date-times, else the value given, else null.
 */
const createdValue = (f: FieldDef, values: Values, key: unknown, now: Date): unknown =>
  f.primary
    ? key
    : f.generated && f.type === "datetime"
      ? now
      : values.has(f)
        ? values.get(f)
        : f.autoUpdate && f.type === "datetime"
          ? now
          : null

/** Assigns the daemon-set fields of a new record. */
const completeForCreate = (entity: EntityDef, values: Values, now: Date): Values => {
  const out: Values = new Map(values)
  const key = newKey(entity.primaryKey)
  for (const f of entity.fields) if (f.autoIncrement !== true) out.set(f, createdValue(f, values, key, now))
  return out
}

const completeForUpdate = (entity: EntityDef, values: Values, now: Date): Values => {
  const out: Values = new Map(values)
  for (const f of entity.fields) if (f.autoUpdate && f.type === "datetime" && !out.has(f)) out.set(f, now)
  return out
}

const selectWhere = (db: DatabaseShape, entity: EntityDef, access: Access, where: FilterNode, limit?: number) => {
  const { sql, dialect } = db
  return sql<Row>`SELECT ${selectList(sql, dialect, selected(entity, access.readable))} FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(where, access.rowFilter))}${
    limit === undefined ? sql.literal("") : sql` ORDER BY ${orderBy(sql, entity, [])} LIMIT ${intLiteral(sql, limit)}`
  }`
}

const byPk = (entity: EntityDef, id: unknown): FilterNode => ({ _tag: "Cmp", field: entity.primaryKey, op: "eq", value: id })
const byField = (f: FieldDef, v: unknown): FilterNode => ({ _tag: "Cmp", field: f, op: "eq", value: v })

const decodeAll = (dialect: Dialect, entity: EntityDef, access: Access, rows: ReadonlyArray<Row>) =>
  rows.map((r) => decodeRow(dialect, entity, r, access.readable))

const insertStatement = (db: DatabaseShape, entity: EntityDef, records: ReadonlyArray<Values>) => {
  const { sql, dialect } = db
  const fields = insertedFields(entity)
  const rows = records.map((rec) => sql`(${sql.join(", ", false)(fields.map((f) => sql`${encodeValue(dialect, f, rec.get(f) ?? null)}`))})`)
  return sql`INSERT INTO ${sql(entity.table)} (${columns(sql, fields)}) VALUES ${sql.join(", ", false)(rows)}`
}

const insertRows = (db: DatabaseShape, entity: EntityDef, records: ReadonlyArray<Values>) =>
  Effect.forEach(chunked(records, INSERT_CHUNK), (chunk) => db.execute(insertStatement(db, entity, chunk)), { discard: true })

/**
 * Inserts one record whose key the database assigns (autoincrement) and answers that key:
 * RETURNING on PostgreSQL and SQLite, the insert id of the statement's own result on MySQL
 * (MySQL 8 has no RETURNING; LAST_INSERT_ID would need the same connection).
 */
const insertReturningKey = (db: DatabaseShape, entity: EntityDef, record: Values): Effect.Effect<unknown, SqlError> => {
  const { sql } = db
  const pk = entity.primaryKey
  if (db.dialect === "mysql")
    return Effect.map(insertStatement(db, entity, [record]).raw, (r) => (r as { insertId?: unknown } | null)?.insertId)
  return Effect.map(
    db.query(sql<Row>`${insertStatement(db, entity, [record])} RETURNING ${sql(pk.column)}`),
    (rows) => rows[0]?.[pk.column]
  )
}

/**
 * How one multi-row INSERT answers the keys the database assigned to its rows (autoincrement):
 * - `returning`: INSERT … RETURNING the key (PostgreSQL; SQLite 3.35+; MariaDB 10.5+);
 * - `consecutive`: MySQL 8 has no RETURNING, but InnoDB gives the rows of one multi-row INSERT …
 *   VALUES consecutive keys (the statement's insertId, then + auto_increment_increment each) when
 *   `innodb_autoinc_lock_mode` is 0 or 1; in mode 2 (interleaved, MySQL 8's default) a concurrent
 *   insert can take keys in between, so there:
 * - `rowByRow`: one INSERT per row, each answering its own insertId.
 * The order of keys from RETURNING is not specified (SQLite says so): callers use them as a set.
 */
type KeysBy = { readonly _tag: "returning" } | { readonly _tag: "consecutive"; readonly step: number } | { readonly _tag: "rowByRow" }

/** A server's answer, read once per database (the server does not change under a running daemon). */
const keysByOf = new WeakMap<DatabaseShape, KeysBy>()

/**
 * Sets how `db` answers keys instead of asking the server: the tests run MySQL 8's ways on
 * MariaDB's InnoDB (no MySQL 8 server there).
 */
export const assumeKeysBy = (db: DatabaseShape, by: KeysBy["_tag"], step = 1): void => {
  keysByOf.set(db, by === "consecutive" ? { _tag: by, step } : { _tag: by })
}

/** MariaDB from 10.5 has INSERT … RETURNING; MySQL has none. */
export const mariaDbReturning = (version: string): boolean => {
  const m = /^(\d+)\.(\d+)\.\d+.*mariadb/i.exec(version)
  return m !== null && (Number(m[1]) > 10 || (Number(m[1]) === 10 && Number(m[2]) >= 5))
}

const keysBy = (db: DatabaseShape): Effect.Effect<KeysBy, SqlError> => {
  const known = keysByOf.get(db)
  if (known !== undefined) return Effect.succeed(known)
  if (db.dialect !== "mysql") return Effect.succeed({ _tag: "returning" })
  return db.query(db.sql<Row>`SELECT VERSION() AS v, @@innodb_autoinc_lock_mode AS m, @@auto_increment_increment AS i`).pipe(
    Effect.map((rows): KeysBy => {
      const row = rows[0] ?? {}
      const mode = Number(row.m)
      if (mariaDbReturning(String(row.v ?? ""))) return { _tag: "returning" }
      return mode === 0 || mode === 1 ? { _tag: "consecutive", step: Number(row.i ?? 1) || 1 } : { _tag: "rowByRow" }
    }),
    Effect.tap((k) => Effect.sync(() => keysByOf.set(db, k)))
  )
}

/**
 * Inserts new records (`items`, as validated) whose keys the database assigns, one multi-row
 * INSERT per chunk, and answers their keys (in no particular order).
 */
const insertReturningKeys = (db: DatabaseShape, entity: EntityDef, items: ReadonlyArray<Values>, now: Date) =>
  Effect.flatMap(keysBy(db), (by): Effect.Effect<ReadonlyArray<unknown>, SqlError> => {
    const pk = entity.primaryKey
    switch (by._tag) {
      case "rowByRow":
        return Effect.forEach(items, (v) => insertReturningKey(db, entity, completeForCreate(entity, v, now)))
      case "consecutive":
        return Effect.map(
          Effect.forEach(chunked(items, INSERT_CHUNK), (chunk) =>
            Effect.map(bulkInsert(db, entity, chunk, undefined, now, undefined, false).raw, (r) => {
              const first = Number((r as { insertId?: unknown } | null)?.insertId)
              return chunk.map((_, i) => first + i * by.step)
            })
          ),
          (keys) => keys.flat()
        )
      case "returning":
        return Effect.map(
          Effect.forEach(chunked(items, INSERT_CHUNK), (chunk) => db.query(bulkInsert(db, entity, chunk, undefined, now, undefined, true))),
          (rows) => rows.flat().map((row) => row[pk.column])
        )
    }
  })

/** New records with the keys made for them (`keys[i]` is `items[i]`'s), one multi-row INSERT per chunk. */
const insertChunks = (db: DatabaseShape, entity: EntityDef, items: ReadonlyArray<Values>, keys: ReadonlyArray<unknown>, now: Date) =>
  Effect.forEach(
    chunked(
      items.map((_, i) => i),
      INSERT_CHUNK
    ),
    (rows) =>
      db.execute(
        bulkInsert(
          db,
          entity,
          rows.map((i) => items[i]!),
          rows.map((i) => keys[i]),
          now,
          undefined,
          false
        )
      ),
    { discard: true }
  )

/**
 * Whether the row filter admits every new record in memory (`newRecordAdmitter`), each seen as
 * `completeForCreate` would complete it, through the fields the filter tests only. A key the
 * database assigns is not known yet: a filter on it is left to the database.
 */
const admittedInMemory = (
  entity: EntityDef,
  items: ReadonlyArray<Values>,
  keys: ReadonlyArray<unknown> | undefined,
  now: Date,
  rowFilter: FilterNode
): boolean => {
  const admits = newRecordAdmitter(rowFilter)
  const tested = [...filterFields(rowFilter)].filter((f) => f.autoIncrement !== true && entity.fields.includes(f))
  return items.every((v, i) => admits(new Map(tested.map((f) => [f, createdValue(f, v, keys?.[i], now)]))))
}

/**
 * A multi-row INSERT as createMany runs it: on PostgreSQL after the journal's row (`journal`),
 * RETURNING the key when `returningKey`. Every value is a parameter.
 */
const bulkStatement = (
  db: DatabaseShape,
  entity: EntityDef,
  records: ReadonlyArray<Values>,
  journal: JournalEntry | undefined,
  returningKey: boolean
): Statement.Statement<Row> => {
  const { sql } = db
  return sql<Row>`${journal === undefined ? sql.literal("") : sql`WITH j AS (${journalInto(sql, journal)} VALUES (${journal.key}, ${journal.replica}, ${null}, ${journal.record})) `}${insertStatement(db, entity, records)}${returningKey ? sql` RETURNING ${sql(entity.primaryKey.column)}` : sql.literal("")}`
}

/**
 * createMany's INSERT texts by shape (rows, journal table, RETURNING), per SQL constructor (the
 * dialect's compiler) and entity. A statement whose every value is a parameter has one text per
 * shape: compiled once, each call then binds its values in order instead of building a fragment
 * per value and compiling them all (900 for 100 rows of 9 columns; that was over half of createMany's
 * own CPU). null: the compiled parameters were not one per value (the shape is built each time).
 */
const bulkTexts = new WeakMap<Statement.Constructor, WeakMap<EntityDef, Map<string, string | null>>>()
/**
 * Shapes kept per entity: clients send a few batch sizes, and a text is a few characters per value
 * (~6 kB for 100 rows of 9 columns). Other shapes are compiled each time.
 */
const BULK_SHAPES = 32

/**
 * `bulkStatement` for new records (`items` as validated; `keys[i]` made for `items[i]`, undefined
 * when the database numbers them), from the shape's text compiled once. Each value is taken from
 * the validated record as `completeForCreate` would set it (`createdValue`), without copying it.
 */
const bulkInsert = (
  db: DatabaseShape,
  entity: EntityDef,
  items: ReadonlyArray<Values>,
  keys: ReadonlyArray<unknown> | undefined,
  now: Date,
  journal: JournalEntry | undefined,
  returningKey: boolean
): Statement.Statement<Row> => {
  const { sql, dialect } = db
  const fields = insertedFields(entity)
  let byEntity = bulkTexts.get(sql)
  if (byEntity === undefined) bulkTexts.set(sql, (byEntity = new WeakMap()))
  let shapes = byEntity.get(entity)
  if (shapes === undefined) byEntity.set(entity, (shapes = new Map()))
  const shape = `${items.length} ${journal?.table ?? ""} ${returningKey}`
  let text = shapes.get(shape)
  if (text === undefined) {
    const blank: Values = new Map()
    const [compiled, params] = bulkStatement(
      db,
      entity,
      items.map(() => blank),
      journal,
      returningKey
    ).compile()
    text = params.length === (journal === undefined ? 0 : 4) + items.length * fields.length ? compiled : null
    if (shapes.size < BULK_SHAPES) shapes.set(shape, text)
  }
  if (text === null) {
    const records = items.map((v, i) => {
      const out: Values = new Map(v)
      for (const f of fields) out.set(f, createdValue(f, v, keys?.[i], now))
      return out
    })
    return bulkStatement(db, entity, records, journal, returningKey)
  }
  const params: Array<unknown> = journal === undefined ? [] : [journal.key, journal.replica, null, journal.record]
  // The daemon-set instants are the request's one `now`: encoded once.
  const nowParams = fields.map((f) => (f.type === "datetime" ? encodeValue(dialect, f, now) : undefined))
  for (let r = 0; r < items.length; r++) {
    const v = items[r]!
    const key = keys?.[r]
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!
      const value = createdValue(f, v, key, now) ?? null
      params.push(value === now ? nowParams[i] : encodeValue(dialect, f, value))
    }
  }
  return sql.unsafe<Row>(text, params)
}

const setClause = (db: DatabaseShape, values: Values) =>
  db.sql.join(", ", false)([...values].map(([f, v]) => db.sql`${db.sql(f.column)} = ${encodeValue(db.dialect, f, v)}`))

const forUpdate = (db: DatabaseShape) => db.sql.literal(db.dialect === "sqlite" ? "" : " FOR UPDATE")

/** What an update or delete locks and reads first: the id, or the whole row when its before image is announced. */
const lockedColumns = (entity: EntityDef, capture: boolean) => (capture ? entity.exposed : [entity.primaryKey])

/** A column read from a table alias under another name (the one-statement writes' RETURNING lists). */
const aliased = (sql: Statement.Constructor, alias: string, f: FieldDef, as: string) => sql`${sql(alias)}.${sql(f.column)} AS ${sql(as)}`

/** The row's key in a one-statement write's answer (beside the readable columns, which may lack it). */
const KEY = "dbal__key"
/** Prefix of the before image's columns in an update's answer. */
const OLD = "dbal__old__"

/** Shapes of one-statement writes kept per access decision (bounded: an update's shape names its written columns). */
const MAX_WRITE_SHAPES = 64

/** A one-statement write compiled once (Repository's `shapedWrite`): its text and the row filter's parameters. */
interface WriteShape {
  readonly text: string
  readonly constants: ReadonlyArray<unknown>
}

/** The columns of written values, in their order, as a shape's key names them. */
const columnsKey = (fields: Iterable<FieldDef>): string => {
  let key = ""
  for (const f of fields) key += `${f.column},`
  return key
}

/** A new record's values in the order its INSERT binds them (`insertStatement`: every inserted field, null when unset). */
const insertedValues = (entity: EntityDef, record: Values): Values => {
  const out: Values = new Map()
  for (const f of insertedFields(entity)) out.set(f, record.get(f) ?? null)
  return out
}

/** A one-statement write's WHERE as a shape names it: equality on one field (the key, or upsert's unique field), first. */
const byKeyShape = (where: FilterNode): { readonly field: FieldDef; readonly value: unknown } | undefined =>
  where._tag === "Cmp" && where.op === "eq" && where.insensitive !== true ? { field: where.field, value: where.value } : undefined

/** A one-statement write's answer row, split into the readable record's and the before image's columns. */
const pickColumns = (row: Row, fields: ReadonlyArray<FieldDef>, prefix = ""): Row => {
  const out: Row = {}
  for (const f of fields) out[f.column] = row[prefix + f.column]
  return out
}

/**
 * PostgreSQL: the write `w` (a data-modifying CTE answering KEY) and, when the request has a journal
 * entry, its audit record inserted from w's rows: both commit in the one statement, or neither.
 */
const withJournal = (sql: Statement.Constructor, write: Statement.Fragment, entry: JournalEntry | undefined) =>
  entry === undefined
    ? write
    : sql`WITH w AS (${write}), j AS (${journalInto(sql, entry)} SELECT ${entry.key}, ${entry.replica}, CAST(w.${sql(KEY)} AS text), ${entry.record} FROM w) SELECT * FROM w`

/** The journal's INSERT up to its values (src/query/Journal.ts; the table layers/AuditLog.ts creates). */
const journalInto = (sql: Statement.Constructor, entry: JournalEntry) =>
  sql`INSERT INTO ${sql(entry.table)} (${sql("key")}, ${sql("replica")}, ${sql("record_id")}, ${sql("record")})`

/** A compiled read by id: its text, and its parameters with the id first. */
interface ReadStatement {
  readonly text: string
  readonly params: ReadonlyArray<unknown>
  readonly idType: string
}

export interface RepositoryOptions {
  /** performance.retry: transient failures retried (Retry.ts says which, for reads and writes). */
  readonly retry?: RetrySettings
  /** performance.query_timeout, reported when the database's own statement time limit fires. */
  readonly queryTimeoutMs?: number
  /** performance.read_batch (PostgreSQL): statements of one lane running before reads by id are coalesced; 0: never. */
  readonly readBatch?: number
}

export const makeRepository = (db: DatabaseShape, registry: EntityRegistryShape, options: RepositoryOptions = {}) => {
  const { sql, dialect } = db
  const timeoutMs = options.queryTimeoutMs ?? 0
  const settings = options.retry ?? defaultRetrySettings
  /** A read: every transient failure is retried. */
  const retryRead = withRetry(settings, "read")
  /** One autocommit statement or one whole transaction: retried only when nothing was applied. */
  const retryWrite = withRetry(settings, "write")
  const readError = (entity: EntityDef) => (e: SqlError) => toRequestError(entity, e, undefined, timeoutMs)
  const writeError = (entity: EntityDef, written: ReadonlyArray<Values>) => mapWriteError(db, registry, entity, written, timeoutMs)
  /**
   * Whether single-row writes answer with RETURNING (one statement, no read-back): PostgreSQL and
   * SQLite (3.35+; better-sqlite3 ships a newer one). MySQL 8 has no RETURNING; MariaDB's (10.5+)
   * is on INSERT and DELETE only: both keep the transaction and read-back (docs/architecture.md).
   */
  const returns = dialect === "pg" || dialect === "sqlite"
  /** INSERT and DELETE answer by RETURNING: PostgreSQL, SQLite, and MariaDB from 10.5 (asked once). */
  const insertDeleteReturn: Effect.Effect<boolean> = returns
    ? Effect.succeed(true)
    : keysBy(db).pipe(
        Effect.map((k) => k._tag === "returning"),
        Effect.orElseSucceed(() => false)
      )
  /**
   * The request's audit journal entry (src/query/Journal.ts). Only PostgreSQL has the journal (the
   * audit log sets it up there alone); the statements that carry it are written for PostgreSQL.
   */
  const journalEntry: Effect.Effect<JournalEntry | undefined> = dialect === "pg" ? currentJournal : Effect.succeed(undefined)
  /** A locked row as an announced change: with its before image when the whole row was read. */
  const beforeOf = (op: "update" | "delete", entity: EntityDef, row: Row, capture: boolean): RowChange => {
    const id = String(row[entity.primaryKey.column])
    return capture ? { op, id, before: decodeRow(dialect, entity, row, entity.exposed) } : { op, id }
  }

  /** A one-statement write's RETURNING list: the readable columns as a SELECT reads them, and the key. */
  const returning = (entity: EntityDef, readable: ReadonlyArray<FieldDef>, alias?: string) =>
    sql.join(
      ", ",
      false
    )([
      ...readable.map((f) => (alias === undefined ? readColumn(sql, dialect, f) : aliased(sql, alias, f, f.column))),
      alias === undefined ? sql`${sql(entity.primaryKey.column)} AS ${sql(KEY)}` : aliased(sql, alias, entity.primaryKey, KEY)
    ])

  /** Written values as their statement binds them, in their order. */
  const valuesOf = (values: Values): Array<unknown> => {
    const out: Array<unknown> = []
    for (const [f, v] of values) out.push(encodeValue(dialect, f, v))
    return out
  }

  /**
   * The one-statement writes' texts, compiled once per shape: per row filter and readable fields
   * (objects of the access decision, which the Acl service keeps while it is in force), then per
   * operation, entity, written columns and journal. A shape's parameters are the request's own
   * values first (`head`: the written values, the key), the row filter's (the same for every
   * request of the decision), then the journal entry's. Building the statement through
   * @effect/sql's fragments and compiling it took some 60–75 µs of CPU per create in a profile under
   * load (bench/write-ab.ts, AB_PROFILE=1); the same text also keeps layers/db/Pg.ts's name look-up cheap.
   */
  const writeShapes = new WeakMap<FilterNode, WeakMap<ReadonlyArray<FieldDef>, Map<string, WriteShape | null>>>()
  /**
   * A one-statement write with its journal row (`withJournal`): from its shape when known, else
   * built by `build` and compiled, and its shape kept when the compiled parameters are `head`, then
   * constants, then the journal's (checked, as `readStatement` checks the key's place). `key` must
   * name everything the text depends on besides the access decision.
   */
  const shapedWrite = (
    access: Access,
    key: string,
    head: ReadonlyArray<unknown>,
    entry: JournalEntry | undefined,
    build: () => Statement.Statement<Row>
  ): Statement.Statement<Row> => {
    const tail = entry === undefined ? [] : [entry.key, entry.replica, entry.record]
    const fullKey = entry === undefined ? key : `${key} journal ${entry.table}`
    let byReadable = writeShapes.get(access.rowFilter)
    let byKey = byReadable?.get(access.readable)
    const known = byKey?.get(fullKey)
    if (known !== undefined && known !== null) return sql.unsafe<Row>(known.text, [...head, ...known.constants, ...tail])
    const statement = sql<Row>`${withJournal(sql, build(), entry)}`
    if (known === null) return statement
    const [text, params] = statement.compile()
    const constants = params.length - head.length - tail.length
    const fits = constants >= 0 && head.every((v, i) => params[i] === v) && tail.every((v, i) => params[head.length + constants + i] === v)
    if (byReadable === undefined) writeShapes.set(access.rowFilter, (byReadable = new WeakMap()))
    if (byKey === undefined) byReadable.set(access.readable, (byKey = new Map()))
    if (byKey.size < MAX_WRITE_SHAPES)
      byKey.set(fullKey, fits ? { text, constants: params.slice(head.length, head.length + constants) } : null)
    return statement
  }

  /** Runs a one-statement write (with its journal row on PostgreSQL: `shapedWrite`) and marks the journal entry committed. */
  const runOne = (
    write: Statement.Statement<Row>,
    entry: JournalEntry | undefined,
    onError: (e: SqlError) => Effect.Effect<never, RequestError>
  ) =>
    db.query(write).pipe(
      retryWrite,
      Effect.catchTag("SqlError", onError),
      Effect.tap((rows) => {
        if (entry !== undefined && rows.length > 0) entry.committed = true
      })
    )

  /**
   * A one-statement create's or update's answer: the row it RETURNED, as the caller may read it,
   * noted for the change announcement; 404 when the row filter let no row through.
   */
  const writtenRow =
    (entity: EntityDef, op: "create" | "update", readable: ReadonlyArray<FieldDef>, access: Access) => (rows: ReadonlyArray<Row>) => {
      const row = rows[0]
      if (row === undefined) return Effect.fail(new NotFound({ entity: entity.name }))
      return Effect.as(
        note(entity, [{ op, id: String(row[KEY]) }]),
        decodeRow(dialect, entity, pickColumns(row, readable), access.readable)
      )
    }

  /**
   * PostgreSQL: an UPDATE of the rows `cond` admits that also answers their before images: the
   * rows are locked by a sub-select (`o`), which RETURNING can name beside the new row (`t`).
   */
  const updateLocked = (entity: EntityDef, fields: Values, cond: Statement.Fragment, answer: ReadonlyArray<Statement.Fragment>) => {
    const pk = sql(entity.primaryKey.column)
    return sql<Row>`UPDATE ${sql(entity.table)} AS t SET ${setClause(db, fields)} FROM (SELECT ${columns(sql, lockedColumns(entity, true))} FROM ${sql(entity.table)} WHERE ${cond} FOR UPDATE) AS o WHERE ${sql("t")}.${pk} = ${sql("o")}.${pk} RETURNING ${sql.join(", ", false)(answer)}`
  }

  /**
   * An update of at most one row (by id or a unique field) when the written fields cannot change
   * the row filter's answer (`touchesFilter`), so the row filter in the WHERE is the whole check:
   * UPDATE … RETURNING the readable columns, with the audit journal's row on PostgreSQL
   * (`withJournal`): one round trip, one commit. With a before image to capture (realtime), on
   * PostgreSQL from the row a sub-select locks (`updateLocked`); on SQLite, whose RETURNING cannot
   * name the FROM clause, the row is read first in the same transaction.
   */
  const updateOne = (entity: EntityDef, where: FilterNode, fields: Values, values: Values, access: Access, capture: boolean) => {
    const readable = selected(entity, access.readable)
    if (!capture) {
      // The most frequent update: a chain of plain steps (no generator, docs/architecture.md "The hot path").
      return Effect.flatMap(journalEntry, (entry) => {
        const shape = byKeyShape(where)
        const build = () =>
          sql<Row>`UPDATE ${sql(entity.table)} SET ${setClause(db, fields)} WHERE ${compileFilter(sql, dialect, and(where, access.rowFilter))} RETURNING ${returning(entity, readable)}`
        const write =
          shape === undefined
            ? sql<Row>`${withJournal(sql, build(), entry)}`
            : shapedWrite(
                access,
                `update ${entity.name} ${columnsKey(fields.keys())} where ${shape.field.column}`,
                [...valuesOf(fields), encodeValue(dialect, shape.field, shape.value)],
                entry,
                build
              )
        return Effect.flatMap(runOne(write, entry, writeError(entity, [values])), writtenRow(entity, "update", readable, access))
      })
    }
    return Effect.gen(function* () {
      const pk = entity.primaryKey
      let row: Row | undefined
      let before: Row | undefined
      if (dialect === "pg") {
        const entry = yield* journalEntry
        const write = updateLocked(entity, fields, compileFilter(sql, dialect, and(where, access.rowFilter)), [
          returning(entity, readable, "t"),
          ...entity.exposed.map((f) => aliased(sql, "o", f, OLD + f.column))
        ])
        row = (yield* runOne(sql<Row>`${withJournal(sql, write, entry)}`, entry, writeError(entity, [values])))[0]
        if (row !== undefined) before = pickColumns(row, entity.exposed, OLD)
      } else {
        const cond = compileFilter(sql, dialect, and(where, access.rowFilter))
        const both = yield* sql
          .withTransaction(
            Effect.gen(function* () {
              const found =
                (yield* sql<Row>`SELECT ${columns(sql, lockedColumns(entity, true))} FROM ${sql(entity.table)} WHERE ${cond}`)[0]
              if (found === undefined) return undefined
              const written =
                yield* sql<Row>`UPDATE ${sql(entity.table)} SET ${setClause(db, fields)} WHERE ${sql(pk.column)} = ${found[pk.column] as string | number} RETURNING ${returning(entity, readable)}`
              return { found, written: written[0] }
            })
          )
          .pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, [values])))
        row = both?.written
        before = both?.found
      }
      if (row === undefined) return yield* new NotFound({ entity: entity.name })
      const id = String(row[KEY])
      yield* note(entity, [
        before !== undefined ? { op: "update", id, before: decodeRow(dialect, entity, before, entity.exposed) } : { op: "update", id }
      ])
      return decodeRow(dialect, entity, pickColumns(row, readable), access.readable)
    })
  }

  /** A delete of at most one row as one statement, RETURNING the before image (PostgreSQL: with its journal row). */
  const deleteOne = (entity: EntityDef, where: FilterNode, access: Access, capture: boolean) =>
    Effect.flatMap(journalEntry, (entry) => {
      const pk = entity.primaryKey
      const build = () =>
        sql<Row>`DELETE FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(where, access.rowFilter))} RETURNING ${sql.join(", ", false)([...lockedColumns(entity, capture).map((f) => sql`${sql(f.column)}`), sql`${sql(pk.column)} AS ${sql(KEY)}`])}`
      const shape = byKeyShape(where)
      const write =
        shape === undefined
          ? sql<Row>`${withJournal(sql, build(), entry)}`
          : shapedWrite(
              access,
              `delete ${entity.name} ${capture ? "image" : "id"} where ${shape.field.column}`,
              [encodeValue(dialect, shape.field, shape.value)],
              entry,
              build
            )
      return Effect.flatMap(runOne(write, entry, writeError(entity, [])), (rows) => {
        const row = rows[0]
        if (row === undefined) return Effect.fail(new NotFound({ entity: entity.name }))
        return Effect.as(note(entity, [beforeOf("delete", entity, row, capture)]), true as const)
      })
    })

  /**
   * A create as one statement, INSERT … RETURNING the readable columns (PostgreSQL: with its
   * journal row), when the row filter is decided before any I/O (none, or `admitsNewRecord`).
   */
  const createOne = (entity: EntityDef, record: Values, values: Values, access: Access) =>
    Effect.flatMap(journalEntry, (entry) => {
      const readable = selected(entity, access.readable)
      const write = shapedWrite(
        access,
        `create ${entity.name}`,
        valuesOf(insertedValues(entity, record)),
        entry,
        () => sql<Row>`${insertStatement(db, entity, [record])} RETURNING ${returning(entity, readable)}`
      )
      return Effect.flatMap(runOne(write, entry, writeError(entity, [values])), writtenRow(entity, "create", readable, access))
    })

  /** Notes the rows a many-row write changed (ids; before images when captured) and answers how many. */
  const announced = (op: "update" | "delete", entity: EntityDef, capture: boolean) => (found: ReadonlyArray<Row>) =>
    Effect.as(
      note(
        entity,
        found.map((r) => beforeOf(op, entity, r, capture))
      ),
      found.length
    )

  /** The journal's row inside a write's own transaction (the paths that are not one statement). */
  const journalRow = (entry: JournalEntry, id: unknown) =>
    sql`${journalInto(sql, entry)} VALUES (${entry.key}, ${entry.replica}, ${id === null ? null : String(id)}, ${entry.record})`

  const readStatements = new WeakMap<Access, Map<EntityDef, ReadStatement>>()
  /** A read by id's statement (text and parameters): compiled once per decision and entity, then only the id changes. */
  const readStatement = (entity: EntityDef, id: unknown, access: Access): readonly [string, ReadonlyArray<unknown>] => {
    let byEntity = readStatements.get(access)
    const known = byEntity?.get(entity)
    if (known !== undefined && typeof id === known.idType) {
      const params = known.params.slice()
      params[0] = id
      return [known.text, params]
    }
    const [text, params] = selectWhere(db, entity, access, byPk(entity, id)).compile()
    // The key's parameter comes first (`byPk` leads the WHERE); kept only when it is the id itself.
    if (params[0] === id) {
      if (byEntity === undefined) readStatements.set(access, (byEntity = new Map()))
      byEntity.set(entity, { text, params, idType: typeof id })
    }
    return [text, params]
  }

  /** PostgreSQL, `performance.read_batch`: the reads of one lane (entity and decision) as one statement for their ids. */
  const batch = dialect === "pg" && options.readBatch !== undefined && options.readBatch > 0 ? makeReadBatch(options.readBatch) : undefined
  const readsMany = new WeakMap<ReadStatement, ReadStatement | null>()
  /** The statement of a lane's batch: the one-id statement's, with `pk = ANY($1)` for the ids. */
  const manyOf = (entity: EntityDef, access: Access, one: ReadStatement): ReadStatement | undefined => {
    let many = readsMany.get(one)
    if (many === undefined) {
      const ids: ReadonlyArray<unknown> = []
      const [text, params] =
        sql`SELECT ${selectList(sql, dialect, selected(entity, access.readable))} FROM ${sql(entity.table)} WHERE ${sql(entity.primaryKey.column)} = ANY(${ids}) AND (${compileFilter(sql, dialect, access.rowFilter)})`.compile()
      many = params[0] === ids ? { text, params, idType: "object" } : null
      readsMany.set(one, many)
    }
    return many ?? undefined
  }
  const rowsOf = (statement: Statement.Statement<Row>) => retryRead(db.query(statement))
  const firstRow = (rows: ReadonlyArray<Row>): Row | undefined => rows[0]
  /** Reads known to run outside a transaction: no second look for one on the way (the direct path). */
  const retryReadOutside = retryOutsideTransaction(settings, "read")
  const direct = db.queryCompiled
  /**
   * A read by id. Outside a transaction, on the adapter's direct path (PostgreSQL) and coalesced
   * with others of its lane when batching is on; inside one, on the transaction's connection.
   */
  const readRow = (entity: EntityDef, id: unknown, access: Access): Effect.Effect<Row | undefined, SqlError> => {
    const [text, params] = readStatement(entity, id, access)
    const inTransaction = () => Effect.map(rowsOf(sql.unsafe<Row>(text, params)), firstRow)
    if (direct === undefined) return inTransaction()
    const lane = batch === undefined ? undefined : readStatements.get(access)?.get(entity)
    const many = lane === undefined ? undefined : manyOf(entity, access, lane)
    const pk = entity.primaryKey.column
    return Effect.withFiberRuntime((fiber) => {
      if (Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)._tag === "Some") return inTransaction()
      const single = retryReadOutside(Effect.map(direct<Row>(text, params), firstRow))
      if (batch === undefined || lane === undefined || many === undefined) return single
      return batch.read(
        lane,
        id,
        String(id),
        single,
        (ids) => {
          const manyParams = many.params.slice()
          manyParams[0] = ids
          return retryReadOutside(Effect.map(direct<Row>(many.text, manyParams), (rows) => new Map(rows.map((r) => [String(r[pk]), r]))))
        },
        undefined
      )
    })
  }

  const read = (entity: EntityDef, rawId: unknown, access: Access): Effect.Effect<WireRecord, RequestError> => {
    const id = pkValue(entity, rawId)
    if (id === undefined) return Effect.fail(new NotFound({ entity: entity.name }))
    return Effect.matchEffect(readRow(entity, id, access), {
      onFailure: (e) => Effect.fail(readError(entity)(e)),
      onSuccess: (row) =>
        row === undefined
          ? Effect.fail(new NotFound({ entity: entity.name }))
          : Effect.succeed(decodeRow(dialect, entity, row, access.readable))
    })
  }

  const create = (entity: EntityDef, values: Values, access: Access) =>
    Effect.suspend(() => {
      const record = completeForCreate(entity, values, new Date())
      const decided = isTrue(access.rowFilter) || admitsNewRecord(access.rowFilter, record)
      // PostgreSQL and SQLite: no generator on the way to the one statement (docs/architecture.md "The hot path").
      if (decided && returns) return createOne(entity, record, values, access)
      return createWith(entity, record, values, access, decided)
    })

  /** A create off the one-statement path's fast way in: MariaDB's RETURNING asked first, or the row filter decided by the database. */
  const createWith = (entity: EntityDef, record: Values, values: Values, access: Access, decided: boolean) =>
    Effect.gen(function* () {
      const pk = entity.primaryKey
      if (decided && (yield* insertDeleteReturn)) return yield* createOne(entity, record, values, access)
      // The key: made here, or assigned by the database as the row is inserted.
      const insert: Effect.Effect<unknown, SqlError> =
        pk.autoIncrement === true ? insertReturningKey(db, entity, record) : Effect.as(insertRows(db, entity, [record]), record.get(pk))
      // A row filter the database must decide: the check, and the journal's row, in one transaction.
      const entry = yield* journalEntry
      const write: Effect.Effect<unknown, SqlError | Forbidden> =
        isTrue(access.rowFilter) && entry === undefined
          ? insert
          : sql.withTransaction(
              Effect.tap(insert, (key) =>
                Effect.zipRight(
                  stillAdmitted(db, entity, [key], access.rowFilter),
                  entry === undefined ? Effect.void : journalRow(entry, key)
                )
              )
            )
      const id = yield* write.pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, [values])))
      if (entry !== undefined) entry.committed = true
      if (pk.autoIncrement === true) record.set(pk, id)
      yield* note(entity, [{ op: "create", id: String(id) }])
      // The row is committed: a read-back that fails (the database went away in between) must not
      // turn the acknowledged write into a 503 that a client would retry. The answer is then made
      // from the values written (the database's own normal form, e.g. JSON key order, is lost).
      const rows = yield* db
        .query(
          sql<Row>`SELECT ${selectList(sql, dialect, selected(entity, access.readable))} FROM ${sql(entity.table)} WHERE ${sql(pk.column)} = ${id}`
        )
        .pipe(retryRead, Effect.option)
      if (Option.isNone(rows)) return wireOfValues(record, access.readable)
      if (rows.value[0] === undefined) return yield* new NotFound({ entity: entity.name })
      return decodeRow(dialect, entity, rows.value[0], access.readable)
    })

  const createMany = (entity: EntityDef, items: ReadonlyArray<Values>, rowFilter: FilterNode = TRUE) =>
    Effect.gen(function* () {
      if (items.length === 0) return 0
      const now = new Date()
      const pk = entity.primaryKey
      // The keys the daemon makes (undefined: the database numbers the rows). The records are not
      // completed into copies: their statement takes each value as `completeForCreate` sets it.
      const keys = pk.autoIncrement === true ? undefined : items.map(() => newKey(pk))
      // The row filter decided in memory (`admitsNewRecord`) needs no check statement after the INSERT.
      const decided = isTrue(rowFilter) || admittedInMemory(entity, items, keys, now, rowFilter)
      // Keys the database assigns are needed only to check the row filter and to announce the rows
      // to realtime subscribers: only then does the INSERT answer them.
      const capture = yield* capturing
      const needKeys = keys === undefined && (!decided || capture)
      const entry = yield* journalEntry
      const given: ReadonlyArray<unknown> = keys ?? items.map(() => undefined)
      let ids: ReadonlyArray<unknown>
      if (decided && items.length <= INSERT_CHUNK) {
        // One statement (atomic by itself); on PostgreSQL it inserts the journal's row too.
        const one: Effect.Effect<ReadonlyArray<unknown>, SqlError> = entry === undefined
          ? needKeys
            ? insertReturningKeys(db, entity, items, now)
            : Effect.as(db.execute(bulkInsert(db, entity, items, keys, now, undefined, false)), given)
          : Effect.map(db.query(bulkInsert(db, entity, items, keys, now, entry, needKeys)), (rows) =>
              needKeys ? rows.map((r) => r[pk.column]) : given
            )
        ids = yield* one.pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, items)))
      } else {
        const inserted: Effect.Effect<ReadonlyArray<unknown>, SqlError> = needKeys
          ? insertReturningKeys(db, entity, items, now)
          : Effect.as(insertChunks(db, entity, items, given, now), given)
        ids = yield* sql
          .withTransaction(
            Effect.flatMap(inserted, (ids) =>
              Effect.as(
                Effect.zipRight(
                  decided ? Effect.void : stillAdmitted(db, entity, ids, rowFilter),
                  entry === undefined ? Effect.void : journalRow(entry, null)
                ),
                ids
              )
            )
          )
          .pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, items)))
      }
      if (entry !== undefined) entry.committed = true
      yield* note(
        entity,
        ids.map((id) => ({ op: "create" as const, id: String(id) }))
      )
      return items.length
    })

  /** Updates the row with this primary key if the row filter admits it; 404 otherwise. */
  const updateWhere = (entity: EntityDef, where: FilterNode, values: Values, access: Access) =>
    Effect.suspend(() => {
      const fields = completeForUpdate(entity, values, new Date())
      if (returns && !touchesFilter(access.rowFilter, fields.keys()))
        return Effect.flatMap(capturing, (capture) => updateOne(entity, where, fields, values, access, capture))
      return updateLocking(entity, where, fields, values, access)
    })

  /** An update whose post-condition needs its own statement, or off PostgreSQL and SQLite: the row locked first, in a transaction. */
  const updateLocking = (entity: EntityDef, where: FilterNode, fields: Values, values: Values, access: Access) =>
    Effect.gen(function* () {
      const pk = entity.primaryKey
      const capture = yield* capturing
      const entry = yield* journalEntry
      const found = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const rows =
              yield* sql<Row>`SELECT ${columns(sql, lockedColumns(entity, capture))} FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(where, access.rowFilter))}${forUpdate(db)}`
            const first = rows[0]
            if (first === undefined) return Option.none<Row>()
            const rowId = first[pk.column] as string | number
            yield* sql`UPDATE ${sql(entity.table)} SET ${setClause(db, fields)} WHERE ${sql(pk.column)} = ${rowId}`
            yield* stillAdmitted(db, entity, [rowId], access.rowFilter)
            if (entry !== undefined) yield* journalRow(entry, rowId)
            return Option.some(first)
          })
        )
        .pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, [values])))
      if (Option.isNone(found)) return yield* new NotFound({ entity: entity.name })
      if (entry !== undefined) entry.committed = true
      yield* note(entity, [beforeOf("update", entity, found.value, capture)])
      return yield* read(entity, found.value[pk.column], { rowFilter: TRUE, readable: access.readable })
    })

  const update = (entity: EntityDef, rawId: unknown, values: Values, access: Access) => {
    const id = pkValue(entity, rawId)
    return id !== undefined ? updateWhere(entity, byPk(entity, id), values, access) : Effect.fail(new NotFound({ entity: entity.name }))
  }

  const deleteWhere = (entity: EntityDef, where: FilterNode, access: Access) =>
    returns ? Effect.flatMap(capturing, (capture) => deleteOne(entity, where, access, capture)) : deleteLocking(entity, where, access)

  /** A delete off PostgreSQL and SQLite: one statement where MariaDB has RETURNING, else the row locked first. */
  const deleteLocking = (entity: EntityDef, where: FilterNode, access: Access) =>
    Effect.gen(function* () {
      const pk = entity.primaryKey
      const capture = yield* capturing
      if (yield* insertDeleteReturn) return yield* deleteOne(entity, where, access, capture)
      const deleted = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const found =
              yield* sql<Row>`SELECT ${columns(sql, lockedColumns(entity, capture))} FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(where, access.rowFilter))}${forUpdate(db)}`
            const first = found[0]
            if (first === undefined) return Option.none<Row>()
            yield* sql`DELETE FROM ${sql(entity.table)} WHERE ${sql(pk.column)} = ${first[pk.column] as string | number}`
            return Option.some(first)
          })
        )
        .pipe(retryWrite, Effect.catchAll(writeError(entity, [])))
      if (Option.isNone(deleted)) return yield* new NotFound({ entity: entity.name })
      yield* note(entity, [beforeOf("delete", entity, deleted.value, capture)])
      return true as const
    })

  const remove = (entity: EntityDef, rawId: unknown, access: Access) => {
    const id = pkValue(entity, rawId)
    return id !== undefined ? deleteWhere(entity, byPk(entity, id), access) : Effect.fail(new NotFound({ entity: entity.name }))
  }

  const list = (entity: EntityDef, filter: FilterNode, sort: ReadonlyArray<SortKey>, page: number, limit: number, access: Access) =>
    Effect.gen(function* () {
      const where = compileFilter(sql, dialect, and(filter, access.rowFilter))
      const rows = yield* db.query(
        sql<Row>`SELECT ${selectList(sql, dialect, selected(entity, access.readable))} FROM ${sql(entity.table)} WHERE ${where} ORDER BY ${orderBy(sql, entity, sort)} LIMIT ${intLiteral(sql, limit)} OFFSET ${intLiteral(sql, (page - 1) * limit)}`
      )
      const total = yield* db.query(sql<{ n: unknown }>`SELECT COUNT(*) AS n FROM ${sql(entity.table)} WHERE ${where}`)
      return { data: decodeAll(dialect, entity, access, rows), total: Number(total[0]?.n ?? 0) } satisfies Page
    }).pipe(retryRead, Effect.mapError(readError(entity)))

  /**
   * A page with related records, in one statement: each include is a LEFT JOIN on its foreign
   * key whose ON clause carries the referenced entity's row filter (a record the caller may not
   * read comes back as null), and only its readable fields are selected.
   */
  const listWithIncludes = (
    entity: EntityDef,
    filter: FilterNode,
    sort: ReadonlyArray<SortKey>,
    page: number,
    limit: number,
    access: Access,
    includes: ReadonlyArray<Include>
  ) =>
    Effect.gen(function* () {
      const main = "t0"
      const col = (alias: string, f: FieldDef) => sql`${sql(alias)}.${sql(f.column)}`
      const items = [
        ...selected(entity, access.readable).map((f) => readColumn(sql, dialect, f, main, `${main}__${f.column}`)),
        ...includes.flatMap((inc, i) => {
          const a = `r${i}`
          return [
            sql`${col(a, inc.target.primaryKey)} AS ${sql(`${a}__present`)}`,
            ...inc.access.readable.map((f) => readColumn(sql, dialect, f, a, `${a}__${f.column}`))
          ]
        })
      ]
      const joins = includes.map((inc, i) => {
        const a = `r${i}`
        return sql` LEFT JOIN ${sql(inc.target.table)} ${sql(a)} ON ${col(a, inc.targetField)} = ${col(main, inc.field)} AND ${compileFilter(sql, dialect, inc.access.rowFilter, a)}`
      })
      const where = compileFilter(sql, dialect, and(filter, access.rowFilter), main)
      const rows = yield* db.query(
        sql<Row>`SELECT ${sql.join(", ", false)(items)} FROM ${sql(entity.table)} ${sql(main)}${sql.join("", false)(joins)} WHERE ${where} ORDER BY ${orderBy(sql, entity, sort, main)} LIMIT ${intLiteral(sql, limit)} OFFSET ${intLiteral(sql, (page - 1) * limit)}`
      )
      const total = yield* db.query(
        sql<{
          n: unknown
        }>`SELECT COUNT(*) AS n FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(filter, access.rowFilter))}`
      )
      const pick = (row: Row, prefix: string, fields: ReadonlyArray<FieldDef>): Row =>
        Object.fromEntries(fields.map((f) => [f.column, row[`${prefix}__${f.column}`]]))
      const data = rows.map((row) => {
        const record = decodeRow(dialect, entity, pick(row, main, access.readable), access.readable)
        includes.forEach((inc, i) => {
          const a = `r${i}`
          record[inc.name] =
            row[`${a}__present`] === null || row[`${a}__present`] === undefined
              ? null
              : decodeRow(dialect, inc.target, pick(row, a, inc.access.readable), inc.access.readable)
        })
        return record
      })
      return { data, total: Number(total[0]?.n ?? 0) } satisfies Page
    }).pipe(retryRead, Effect.mapError(readError(entity)))

  const count = (entity: EntityDef, filter: FilterNode, access: Access) =>
    db
      .query(
        sql<{
          n: unknown
        }>`SELECT COUNT(*) AS n FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, and(filter, access.rowFilter))}`
      )
      .pipe(
        retryRead,
        Effect.map((rows) => Number(rows[0]?.n ?? 0)),
        Effect.mapError(readError(entity))
      )

  const findFirst = (entity: EntityDef, filter: FilterNode, access: Access) =>
    db.query(selectWhere(db, entity, access, filter, 1)).pipe(
      retryRead,
      Effect.map((rows) => (rows[0] === undefined ? null : decodeRow(dialect, entity, rows[0], access.readable))),
      Effect.mapError(readError(entity))
    )

  const updateMany = (entity: EntityDef, filter: FilterNode, values: Values, access: Access) =>
    Effect.flatMap(capturing, (capture) => updateManyWith(entity, filter, values, access, capture))

  const updateManyWith = (entity: EntityDef, filter: FilterNode, values: Values, access: Access, capture: boolean) => {
    const fields = completeForUpdate(entity, values, new Date())
    const pk = entity.primaryKey
    // Rows the row filter admits stay admitted when no written field is tested by it: the filter
    // in the WHERE is the whole check, and the update is one statement.
    const admitted = !touchesFilter(access.rowFilter, fields.keys())
    const where = compileFilter(sql, dialect, and(filter, access.rowFilter))
    if (admitted && !capture) {
      return db
        .execute(sql`UPDATE ${sql(entity.table)} SET ${setClause(db, fields)} WHERE ${where}`)
        .pipe(retryWrite, Effect.catchAll(writeError(entity, [values])))
    }
    if (admitted && dialect === "pg") {
      // Announced row by row: the before images come from the rows the sub-select locks.
      return db
        .query(
          updateLocked(
            entity,
            fields,
            where,
            lockedColumns(entity, true).map((f) => aliased(sql, "o", f, f.column))
          )
        )
        .pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, [values])), Effect.flatMap(announced("update", entity, true)))
    }
    // A written field is tested by the row filter (or the rows are announced, off PostgreSQL): the
    // rows are fixed first, then each must still be admitted.
    return sql
      .withTransaction(
        Effect.gen(function* () {
          const found =
            yield* sql<Row>`SELECT ${columns(sql, lockedColumns(entity, capture))} FROM ${sql(entity.table)} WHERE ${where}${forUpdate(db)}`
          const ids = found.map((r) => r[pk.column] as string | number)
          for (const chunk of chunked(ids, ID_CHUNK)) {
            const idIn: FilterNode = { _tag: "In", field: pk, values: chunk, negate: false }
            yield* sql`UPDATE ${sql(entity.table)} SET ${setClause(db, fields)} WHERE ${compileFilter(sql, dialect, idIn)}`
          }
          yield* stillAdmitted(db, entity, ids, access.rowFilter)
          return found
        })
      )
      .pipe(retryWrite, Effect.catchTag("SqlError", writeError(entity, [values])), Effect.flatMap(announced("update", entity, capture)))
  }

  const deleteMany = (entity: EntityDef, filter: FilterNode, access: Access) =>
    Effect.flatMap(Effect.zip(capturing, insertDeleteReturn), ([capture, deleteReturns]) => {
      const where = compileFilter(sql, dialect, and(filter, access.rowFilter))
      if (!capture)
        return db.execute(sql`DELETE FROM ${sql(entity.table)} WHERE ${where}`).pipe(retryWrite, Effect.catchAll(writeError(entity, [])))
      if (deleteReturns) {
        // Announced row by row: the statement answers the rows as they were.
        return db
          .query(sql<Row>`DELETE FROM ${sql(entity.table)} WHERE ${where} RETURNING ${columns(sql, lockedColumns(entity, true))}`)
          .pipe(retryWrite, Effect.catchAll(writeError(entity, [])), Effect.flatMap(announced("delete", entity, true)))
      }
      // Announced row by row (no RETURNING): the rows (as they were) are fixed first, then deleted by id.
      const pk = entity.primaryKey
      return sql
        .withTransaction(
          Effect.gen(function* () {
            const found =
              yield* sql<Row>`SELECT ${columns(sql, lockedColumns(entity, true))} FROM ${sql(entity.table)} WHERE ${where}${forUpdate(db)}`
            for (const chunk of chunked(
              found.map((r) => r[pk.column] as string | number),
              ID_CHUNK
            )) {
              const idIn: FilterNode = { _tag: "In", field: pk, values: chunk, negate: false }
              yield* sql`DELETE FROM ${sql(entity.table)} WHERE ${compileFilter(sql, dialect, idIn)}`
            }
            return found
          })
        )
        .pipe(retryWrite, Effect.catchAll(writeError(entity, [])), Effect.flatMap(announced("delete", entity, true)))
    })

  /**
   * Update the row whose unique field has this value, or create it. A concurrent create of the
   * same value surfaces as a unique violation; the update path is then taken once more.
   */
  const upsert = (
    entity: EntityDef,
    field: FieldDef,
    value: unknown,
    createValues: Values,
    updateValues: Values,
    access: Access,
    /** The create decision's access (its row filter checks the created row); default: `access`. */
    createAccess: Access = access
  ) => {
    const attempt = Effect.gen(function* () {
      const existing = yield* selectWhere(db, entity, { rowFilter: TRUE, readable: [entity.primaryKey] }, byField(field, value)).pipe(
        retryRead,
        Effect.mapError(readError(entity))
      )
      if (existing.length > 0) return yield* updateWhere(entity, byField(field, value), updateValues, access)
      return yield* create(entity, createValues, createAccess)
    })
    const guarded = attempt.pipe(
      Effect.catchIf(
        (e): e is RequestError => e._tag === "Conflict" && e.fields.includes(field.name),
        () => updateWhere(entity, byField(field, value), updateValues, access)
      )
    )
    // SQLite has one writer connection: in a transaction (which holds it) the look-up and the
    // write cannot interleave with a concurrent upsert's. Without it, the concurrent create's
    // unique violation may name another unique field (SQLite reports one violated index, in its
    // own order), which the Conflict above cannot recognise.
    return db.dialect === "sqlite"
      ? sql.withTransaction(guarded).pipe(Effect.catchTag("SqlError", writeError(entity, [createValues])))
      : guarded
  }

  return {
    listWithIncludes,
    read,
    create,
    createMany,
    update,
    updateWhere,
    remove,
    deleteWhere,
    list,
    count,
    findFirst,
    updateMany,
    deleteMany,
    upsert,
    byField
  }
}

export type Repository = ReturnType<typeof makeRepository>
