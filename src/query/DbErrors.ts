/**
 * Driver errors → the daemon's error table. Constraint names are the ones the DDL gives
 * (`uq_<table>_<columns>`), so a unique violation names its fields on every dialect. Nothing of
 * the driver's message reaches the caller.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Conflict, Internal, Timeout, Unavailable, ValidationFailed, type RequestError } from "../Errors.js"
import type { EntityDef } from "../entity/Model.js"
import { transience } from "./Retry.js"

export type DbFailure =
  | { readonly kind: "unique"; readonly fields: ReadonlyArray<string> }
  | { readonly kind: "foreignKey" }
  | { readonly kind: "constraint" }
  | { readonly kind: "unavailable"; readonly reason: string }
  /** The database's own statement time limit (statement_timeout, max_statement_time) stopped it. */
  | { readonly kind: "timeout" }
  /** The entity's table or one of its columns does not exist (not migrated, e.g. auto_migrate: false). */
  | { readonly kind: "missingSchema" }
  | { readonly kind: "other" }

interface DriverError {
  readonly code?: unknown
  readonly errno?: unknown
  readonly constraint?: unknown
  readonly message?: unknown
}

/** SQLite cannot take the statement now (not retried: see Retry.ts); the server drivers' codes are Retry.ts's `transience`. */
const SQLITE_UNAVAILABLE = new Set(["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY"])

const fieldsOfIndex = (entity: EntityDef, name: string): ReadonlyArray<string> =>
  entity.indexes.find((i) => i.name === name)?.fields.map((f) => f.name) ?? []

const fieldsOfColumns = (entity: EntityDef, columns: ReadonlyArray<string>): ReadonlyArray<string> =>
  columns.map((c) => entity.fields.find((f) => f.column === c)?.name).filter((n): n is string => n !== undefined)

/**
 * A row that violates a unique index also violates every unique index on a subset of its fields
 * (a violation means equal, non-NULL values on all of them). Which one the database reports is its
 * own checking order (SQLite reports Package (name, version), PostgreSQL and MySQL (name)), so
 * the smallest such index is named, the same on every dialect.
 */
const narrowest = (entity: EntityDef, fields: ReadonlyArray<string>): ReadonlyArray<string> => {
  let best: ReadonlyArray<string> = fields
  for (const ix of entity.indexes) {
    if (!ix.unique || ix.fields.length >= best.length) continue
    const names = ix.fields.map((f) => f.name)
    if (names.every((n) => fields.includes(n))) best = names
  }
  return best
}

export const classify = (entity: EntityDef, error: SqlError): DbFailure => {
  const cause = (error.cause ?? {}) as DriverError
  const code = typeof cause.code === "string" ? cause.code : String(cause.code ?? "")
  const message = typeof cause.message === "string" ? cause.message : ""
  const transient = transience(error)
  // PostgreSQL (SQLSTATE codes)
  if (code === "23505") return { kind: "unique", fields: narrowest(entity, fieldsOfIndex(entity, String(cause.constraint ?? ""))) }
  if (code === "23503") return { kind: "foreignKey" }
  // 22003: a number out of the column's range
  if (code === "23514" || code === "23502" || code === "22001" || code === "22P02" || code === "22021" || code === "22003")
    return { kind: "constraint" }
  if (code.startsWith("08")) return { kind: "unavailable", reason: "the database connection failed" }
  // Retried first (Retry.ts); still failing after the retries: transient, so 503 (retryable).
  if (transient === "rolledBack") {
    return { kind: "unavailable", reason: "the database could not complete the statement because of concurrent transactions; retry" }
  }
  // 57014 query_canceled (statement_timeout); MariaDB 1969 max_statement_time; MySQL 3024 max_execution_time
  if (code === "57014" || code === "ER_QUERY_TIMEOUT" || code === "ER_STATEMENT_TIMEOUT" || cause.errno === 1969 || cause.errno === 3024) {
    return { kind: "timeout" }
  }
  // MySQL / MariaDB
  if (code === "ER_DUP_ENTRY") {
    const m = /for key '(?:[^'.]*\.)?([^']+)'/.exec(message)
    return { kind: "unique", fields: m === null ? [] : narrowest(entity, fieldsOfIndex(entity, m[1]!)) }
  }
  if (
    code === "ER_NO_REFERENCED_ROW_2" ||
    code === "ER_ROW_IS_REFERENCED_2" ||
    code === "ER_NO_REFERENCED_ROW" ||
    code === "ER_ROW_IS_REFERENCED"
  ) {
    return { kind: "foreignKey" }
  }
  if (
    code === "ER_CHECK_CONSTRAINT_VIOLATED" ||
    code === "ER_DATA_TOO_LONG" ||
    code === "ER_BAD_NULL_ERROR" ||
    code === "ER_CONSTRAINT_FAILED"
  ) {
    return { kind: "constraint" }
  }
  // SQLite
  if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
    const m = /constraint failed: (.*)$/.exec(message)
    const cols = m === null ? [] : m[1]!.split(",").map((s) => s.trim().split(".").pop() ?? "")
    return { kind: "unique", fields: narrowest(entity, fieldsOfColumns(entity, cols)) }
  }
  // ON DELETE RESTRICT (Prisma's default for a required relation) fails as a trigger would.
  if (code === "SQLITE_CONSTRAINT_FOREIGNKEY" || (code === "SQLITE_CONSTRAINT_TRIGGER" && /^FOREIGN KEY constraint failed/.test(message)))
    return { kind: "foreignKey" }
  if (code.startsWith("SQLITE_CONSTRAINT")) return { kind: "constraint" }
  if (SQLITE_UNAVAILABLE.has(code) || code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_IOERR")) {
    return { kind: "unavailable", reason: "the database is busy or cannot be written" }
  }
  if (transient !== undefined) return { kind: "unavailable", reason: "the database connection failed" }
  // undefined_table / undefined_column, ER_NO_SUCH_TABLE / ER_BAD_FIELD_ERROR, SQLite's "no such …"
  if (
    code === "42P01" ||
    code === "42703" ||
    code === "ER_NO_SUCH_TABLE" ||
    code === "ER_BAD_FIELD_ERROR" ||
    cause.errno === 1146 ||
    cause.errno === 1054
  ) {
    return { kind: "missingSchema" }
  }
  if (code.startsWith("SQLITE_ERROR") && /^no such (table|column)/.test(message)) return { kind: "missingSchema" }
  if (
    /Connection terminated|connection is closed|Cannot enqueue|Pool is closed|timeout exceeded when trying to connect/i.test(
      message + " " + String(error.message)
    )
  ) {
    return { kind: "unavailable", reason: "the database connection failed" }
  }
  return { kind: "other" }
}

/** The error for a failure whose foreign-key case has already been resolved by the caller. */
export const toRequestError = (
  entity: EntityDef,
  error: SqlError,
  failure: DbFailure = classify(entity, error),
  /** For a statement stopped by the database's time limit: the limit (performance.query_timeout). */
  timeoutMs = 0
): RequestError => {
  switch (failure.kind) {
    case "unique":
      return new Conflict({
        entity: entity.name,
        fields: failure.fields,
        reason:
          failure.fields.length > 0
            ? `a ${entity.name} with the same ${failure.fields.join(" and ")} already exists`
            : "a unique value is already taken"
      })
    case "foreignKey":
      return new Conflict({ entity: entity.name, fields: [], reason: "the record is referenced by other records" })
    case "constraint":
      return ValidationFailed.one("data", "rejected by a database constraint")
    case "unavailable":
      return new Unavailable({ reason: failure.reason, cause: error })
    case "timeout":
      // The database's limit equals performance.query_timeout (layers/Database.ts).
      return new Timeout({ timeoutMs })
    case "missingSchema":
      return new Unavailable({
        reason: `the database has no table or column for ${entity.name} yet: run \`dbal-daemon migrate\` (or set database.auto_migrate: true)`,
        cause: error
      })
    case "other":
      return new Internal({ cause: error })
  }
}
