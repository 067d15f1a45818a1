/**
 * Migrations that follow the definitions: read the live schema (./Introspect.ts), diff it with
 * the registry (src/entity/MigrationPlan.ts), apply the steps and record what was applied in
 * `dbal_migrations` (id, applied_at, daemon_version, checksum of the statements, whether any was
 * destructive, the steps as JSON).
 *
 * - PostgreSQL: the whole plan, and its record, in one transaction (PostgreSQL's DDL is
 *   transactional), under an advisory lock so that two daemons starting together do not both
 *   alter the schema: the second plans again once the first has committed. The request
 *   statement timeout is lifted (`SET LOCAL statement_timeout = 0`).
 * - SQLite: one transaction as well. When a table is rebuilt, foreign keys are off for the
 *   migration (SQLite cannot switch them inside a transaction; dropping the old table would
 *   otherwise cascade) and `PRAGMA foreign_key_check` must find nothing before the commit.
 * - MySQL/MariaDB commit each DDL statement by itself: a failure leaves the statements before it
 *   applied (the error says how many), and the next `migrate` plans from there. MariaDB runs
 *   each statement without `max_statement_time`.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { createHash, randomUUID } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { columnType, type Dialect, quoteIdent } from "../../src/entity/Ddl.js"
import { planMigration, type Step } from "../../src/entity/MigrationPlan.js"
import type { EntityRegistryShape } from "../../src/entity/Model.js"
import { version } from "../../src/version.js"
import { introspect } from "./Introspect.js"

/** The table that records applied migrations. */
export const MIGRATIONS_TABLE = "dbal_migrations"

/** Destructive changes are pending and were not allowed: nothing was applied. */
export class MigrationRefused extends Schema.TaggedError<MigrationRefused>()("MigrationRefused", {
  changes: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `refused ${this.changes.length} destructive change${this.changes.length === 1 ? "" : "s"}: ${this.changes.join("; ")}`
  }
}

/** A statement of the plan failed. */
export class MigrationFailed extends Schema.TaggedError<MigrationFailed>()("MigrationFailed", {
  change: Schema.String,
  /** The database's message (first line). */
  reason: Schema.String,
  /** Statements that stay applied (MySQL); 0 where the plan was rolled back. */
  applied: Schema.Number,
  rolledBack: Schema.Boolean
}) {
  override get message(): string {
    const after = this.rolledBack
      ? "nothing was applied (rolled back)"
      : `${this.applied} statement${this.applied === 1 ? " was" : "s were"} applied before it (MySQL/MariaDB commit each DDL statement; run migrate --plan to see what is left)`
    return `migration failed at "${this.change}": ${this.reason}; ${after}`
  }
}

export interface MigrateOptions {
  /** `refuse`: fail with MigrationRefused when any is pending; `skip`: apply the additive ones only; `apply`: all. */
  readonly destructive: "refuse" | "skip" | "apply"
  /** Tables that are not entities but must stay (the audit table). */
  readonly keep?: ReadonlyArray<string>
}

export interface MigrationResult {
  readonly applied: ReadonlyArray<Step>
  /** Destructive steps left out (`destructive: "skip"`). */
  readonly skipped: ReadonlyArray<Step>
  /** The id of the record, when something was applied. */
  readonly id?: string
}

/**
 * `utf8mb4_bin` is a PAD SPACE collation on MySQL and MariaDB: 'a' = 'a ' there, so a filter, a
 * unique index and ORDER BY ignore trailing spaces, unlike PostgreSQL's "C" and SQLite's BINARY.
 * The NO PAD binary collation (code point order, every character significant) has another name on
 * each server: MySQL 8.0.17+ `utf8mb4_0900_bin`, MariaDB 10.2+ `utf8mb4_nopad_bin`. Older servers
 * keep `utf8mb4_bin`.
 */
const noPadBinaryCollation = (sql: SqlClient.SqlClient) =>
  sql<{
    name: string
  }>`SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin')`.pipe(
    Effect.map((rows) => {
      const names = rows.map((r) => r.name)
      return names.includes("utf8mb4_0900_bin")
        ? "utf8mb4_0900_bin"
        : names.includes("utf8mb4_nopad_bin")
          ? "utf8mb4_nopad_bin"
          : "utf8mb4_bin"
    })
  )

interface Server {
  readonly collation?: string
  /** Wraps a statement so that the server's statement time limit does not apply to it. */
  readonly unbounded: (stmt: string) => string
}

const server = (sql: SqlClient.SqlClient, dialect: Dialect): Effect.Effect<Server, SqlError> =>
  dialect !== "mysql"
    ? Effect.succeed({ unbounded: (s: string) => s })
    : Effect.gen(function* () {
        const v = yield* sql<{ v: unknown }>`SELECT VERSION() AS v`
        const mariadb = /mariadb/i.test(String(v[0]?.v ?? ""))
        return {
          collation: yield* noPadBinaryCollation(sql),
          unbounded: mariadb ? (s: string) => `SET STATEMENT max_statement_time = 0 FOR ${s}` : (s: string) => s
        }
      })

/** The steps that bring the database to the definitions (nothing is changed). */
export const plan = (sql: SqlClient.SqlClient, dialect: Dialect, registry: EntityRegistryShape, keep: ReadonlyArray<string> = []) =>
  Effect.flatMap(server(sql, dialect), (s) => planWith(sql, dialect, registry, keep, s))

const planWith = (sql: SqlClient.SqlClient, dialect: Dialect, registry: EntityRegistryShape, keep: ReadonlyArray<string>, s: Server) =>
  Effect.map(
    introspect(
      sql,
      dialect,
      registry.creationOrder.map((e) => e.table)
    ),
    (live) =>
      planMigration(dialect, registry, live, {
        keep: [MIGRATIONS_TABLE, ...keep],
        ...(s.collation === undefined ? {} : { collation: s.collation })
      })
  )

const recordTable = (dialect: Dialect, collation: string | undefined): string => {
  const q = (s: string) => quoteIdent(dialect, s)
  const str = (n: number) => (dialect === "sqlite" ? "TEXT" : dialect === "pg" ? `varchar(${n})` : `VARCHAR(${n})`)
  const cols = [
    `${q("id")} ${str(36)} NOT NULL PRIMARY KEY`,
    `${q("applied_at")} ${columnType(dialect, { type: "datetime" })} NOT NULL`,
    `${q("daemon_version")} ${str(64)} NOT NULL`,
    `${q("checksum")} ${str(64)} NOT NULL`,
    `${q("destructive")} ${columnType(dialect, { type: "boolean" })} NOT NULL`,
    `${q("steps")} ${columnType(dialect, { type: "text" })} NOT NULL`
  ]
  const tail = dialect === "mysql" ? ` ENGINE=InnoDB DEFAULT CHARSET=utf8mb4${collation === undefined ? "" : ` COLLATE=${collation}`}` : ""
  return `CREATE TABLE IF NOT EXISTS ${q(MIGRATIONS_TABLE)} (${cols.join(", ")})${tail}`
}

/** The checksum of a plan: SHA-256 of its statements, each ended by ";\n". */
export const checksum = (steps: ReadonlyArray<Step>): string =>
  createHash("sha256")
    .update(steps.flatMap((s) => s.statements.map((t) => `${t};\n`)).join(""))
    .digest("hex")

const record = (sql: SqlClient.SqlClient, dialect: Dialect, steps: ReadonlyArray<Step>, s: Server) =>
  Effect.gen(function* () {
    yield* sql.unsafe(s.unbounded(recordTable(dialect, s.collation)))
    const id = randomUUID()
    const destructive = steps.some((x) => x.kind === "destructive")
    const now = new Date()
    yield* sql`INSERT INTO ${sql(MIGRATIONS_TABLE)} ${sql.insert({
      id,
      applied_at: dialect === "sqlite" ? now.toISOString() : now,
      daemon_version: version,
      checksum: checksum(steps),
      destructive: dialect === "pg" ? destructive : destructive ? 1 : 0,
      steps: JSON.stringify(steps.map((x) => ({ kind: x.kind, reason: x.reason, statements: x.statements })))
    })}`
    return id
  })

const firstLine = (e: SqlError): string => {
  const c = e.cause as { message?: unknown } | undefined
  return String(c?.message ?? e.message).split("\n")[0] ?? "error"
}

/** Runs the steps' statements in order; a failure names its step. `applied` counts what ran. */
const runSteps = (sql: SqlClient.SqlClient, steps: ReadonlyArray<Step>, s: Server, rolledBack: boolean) =>
  Effect.gen(function* () {
    let applied = 0
    for (const step of steps) {
      for (const stmt of step.statements) {
        yield* sql
          .unsafe(s.unbounded(stmt))
          .pipe(
            Effect.mapError(
              (e) => new MigrationFailed({ change: step.reason, reason: firstLine(e), applied: rolledBack ? 0 : applied, rolledBack })
            )
          )
        applied++
      }
    }
  })

const choose = (
  steps: ReadonlyArray<Step>,
  options: MigrateOptions
): Effect.Effect<{ run: ReadonlyArray<Step>; skipped: ReadonlyArray<Step> }, MigrationRefused> => {
  const destructive = steps.filter((s) => s.kind === "destructive")
  if (destructive.length === 0 || options.destructive === "apply") return Effect.succeed({ run: steps, skipped: [] })
  if (options.destructive === "refuse") return Effect.fail(new MigrationRefused({ changes: destructive.map((s) => s.reason) }))
  return Effect.succeed({ run: steps.filter((s) => s.kind === "additive"), skipped: destructive })
}

/** Plans, checks the destructive steps against `options`, applies and records. */
export const migrate = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  registry: EntityRegistryShape,
  options: MigrateOptions
): Effect.Effect<MigrationResult, SqlError | MigrationRefused | MigrationFailed> =>
  Effect.gen(function* () {
    const s = yield* server(sql, dialect)
    const keep = options.keep ?? []
    const first = yield* choose(yield* planWith(sql, dialect, registry, keep, s), options)
    if (first.run.length === 0) return { applied: [], skipped: first.skipped }

    if (dialect === "mysql") {
      yield* runSteps(sql, first.run, s, false)
      const id = yield* record(sql, dialect, first.run, s)
      return { applied: first.run, skipped: first.skipped, id }
    }

    const rebuilds = dialect === "sqlite" && first.run.some((x) => x.statements.some((t) => t.startsWith("DROP TABLE")))
    // PostgreSQL and SQLite: planned again inside the transaction (another process may have migrated meanwhile).
    const inTransaction = Effect.gen(function* () {
      if (dialect === "pg") {
        yield* sql.unsafe("SET LOCAL statement_timeout = 0")
        yield* sql.unsafe("SELECT pg_advisory_xact_lock(hashtext('dbal_migrations'))")
      }
      const chosen = yield* choose(yield* planWith(sql, dialect, registry, keep, s), options)
      if (chosen.run.length === 0) return { applied: [], skipped: chosen.skipped }
      yield* runSteps(sql, chosen.run, s, true)
      if (rebuilds) {
        const broken = yield* sql.unsafe<Record<string, unknown>>("PRAGMA foreign_key_check")
        if (broken.length > 0) {
          const tables = [...new Set(broken.map((r) => String(r.table)))].join(", ")
          return yield* new MigrationFailed({
            change: "foreign key check",
            reason: `rows of ${tables} refer to rows that do not exist`,
            applied: 0,
            rolledBack: true
          })
        }
      }
      const id = yield* record(sql, dialect, chosen.run, s)
      return { applied: chosen.run, skipped: chosen.skipped, id }
    })
    if (!rebuilds) return yield* sql.withTransaction(inTransaction)
    return yield* Effect.acquireUseRelease(
      sql.unsafe("PRAGMA foreign_keys = OFF"),
      () => sql.withTransaction(inTransaction),
      () => Effect.orDie(sql.unsafe("PRAGMA foreign_keys = ON"))
    )
  }).pipe(Effect.withSpan("migrate"))
