/**
 * `dbal-daemon migrate [--plan] [--allow-destructive]`: brings the database to the entity
 * definitions (layers/db/Migrate.ts). `--plan` prints the SQL and changes nothing. Without
 * `--allow-destructive`, a plan with any destructive step is refused whole: nothing is applied,
 * and each refused change is named.
 */
import { SqlClient } from "@effect/sql"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { dialectOf } from "../../src/entity/Ddl.js"
import type { Step } from "../../src/entity/MigrationPlan.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as DatabaseLayer from "../../layers/Database.js"
import { MIGRATIONS_TABLE, migrate, plan } from "../../layers/db/Migrate.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import { problem } from "./errors.js"
import { levels, out, stderrLogging } from "./output.js"

export interface MigrateFlags {
  readonly plan: boolean
  readonly allowDestructive: boolean
}

/** The plan as an SQL script: each step a comment saying what and why, then its statements. */
export const formatPlan = (adapter: string, steps: ReadonlyArray<Step>): ReadonlyArray<string> => {
  if (steps.length === 0) return [`-- ${adapter}: up to date (the database matches the definitions)`]
  const destructive = steps.filter((s) => s.kind === "destructive").length
  const lines = [
    `-- ${adapter}: ${steps.length} change${steps.length === 1 ? "" : "s"} (${steps.length - destructive} additive, ${destructive} destructive)`
  ]
  for (const s of steps) {
    lines.push("", `-- ${s.kind === "additive" ? "additive" : "destructive (applied only with --allow-destructive)"}: ${s.reason}`)
    for (const stmt of s.statements) lines.push(`${stmt};`)
  }
  return lines
}

const tablesOf = (steps: ReadonlyArray<Step>) => [...new Set(steps.map((s) => s.table))].join(", ")

export const migrateProgram = (file: string, flags: MigrateFlags) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const registry = yield* EntitiesLayer.fromConfig(cfg)
    const dialect = dialectOf(cfg.database.adapter)
    const audit = cfg.security.audit.sql_table
    const keep = audit === undefined ? [] : [audit]
    const work = Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      if (flags.plan) return yield* out(formatPlan(cfg.database.adapter, yield* plan(sql, dialect, registry, keep)))
      const r = yield* migrate(sql, dialect, registry, { destructive: flags.allowDestructive ? "apply" : "refuse", keep })
      if (r.applied.length === 0) return yield* out(["up to date: the database matches the definitions"])
      yield* out([
        `migrated: ${tablesOf(r.applied)}`,
        ...r.applied.map((s) => `  ${s.kind}: ${s.reason}`),
        `recorded in ${MIGRATIONS_TABLE}: ${r.id ?? "?"}`
      ])
    })
    yield* work.pipe(
      Effect.provide(DatabaseLayer.sqlClientLayer(cfg)),
      Effect.provide(Logger.minimumLogLevel(levels[cfg.logging.level])),
      Effect.catchTags({
        MigrationRefused: (e) =>
          problem(
            `refused ${e.changes.length} destructive change${e.changes.length === 1 ? "" : "s"}, nothing was applied (review them with migrate --plan, then run migrate --allow-destructive):`,
            ...e.changes.map((c) => `  ${c}`)
          ),
        MigrationFailed: (e) => problem(e.message)
      })
    )
  }).pipe(Effect.provide(stderrLogging))
