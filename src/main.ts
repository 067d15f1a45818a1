/**
 * Command line: `dbal-daemon [serve] [--config=FILE]` runs the daemon (default file:
 * config/development.yaml); `dbal-daemon migrate --config=FILE` creates missing tables and
 * indexes and exits. Problems are printed one per line; the exit code is 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Logger, LogLevel, Redacted, Schema } from "effect"
import { AppConfig } from "./Config.js"
import { EntityRegistry } from "./entity/Model.js"
import { isSandboxed, runSandboxed, sandboxProblem } from "./Sandbox.js"
import { version } from "./version.js"
import * as ConfigLayer from "../layers/Config.js"
import * as DatabaseLayer from "../layers/Database.js"
import * as EntitiesLayer from "../layers/Entities.js"
import * as Logging from "../layers/Logging.js"
import * as Main from "../layers/Main.js"

const usage = `dbal-daemon ${version}

Usage:
  dbal-daemon [serve] [--config=FILE]   run the daemon (default: config/development.yaml)
  dbal-daemon migrate --config=FILE     create missing tables and indexes, then exit
  dbal-daemon --version | --help
`

interface Args {
  readonly command: "serve" | "migrate" | "version" | "help"
  readonly config: string
}

export const parseArgs = (argv: ReadonlyArray<string>): Args | string => {
  let command: Args["command"] = "serve"
  let config = ConfigLayer.defaultConfigPath
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--version" || a === "-v") command = "version"
    else if (a === "--help" || a === "-h") command = "help"
    else if (a.startsWith("--config=")) config = a.slice("--config=".length)
    else if (a === "--config" || a === "-c") {
      const next = argv[++i]
      if (next === undefined) return "--config needs a file"
      config = next
    } else if (a === "serve" || a === "migrate") command = a
    else return `unknown argument ${JSON.stringify(a)} (see --help)`
  }
  return { command, config }
}

export class StartupError extends Schema.TaggedError<StartupError>()("StartupError", {
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.join("\n")
  }
}

const levels = { debug: LogLevel.Debug, info: LogLevel.Info, warning: LogLevel.Warning, error: LogLevel.Error } as const

/** Prints a startup failure as one line per problem (no stack traces). */
const report = (e: unknown): string => {
  if (e !== null && typeof e === "object" && "_tag" in e) {
    const tagged = e as { _tag: string; message?: string; problems?: ReadonlyArray<string> }
    if (["ConfigError", "EntitiesError", "ListenError", "RulesFileError", "StartupError"].includes(tagged._tag)) return String(tagged.message)
    if (tagged._tag === "Unavailable") return `startup failed: ${String((e as { reason?: unknown }).reason)}`
    if (tagged._tag === "SqlError") {
      const cause = (e as { cause?: { code?: unknown; message?: unknown } }).cause
      return `database: cannot connect or prepare the schema (${String(cause?.code ?? cause?.message ?? "error")})`
    }
  }
  return `startup failed: ${e instanceof Error ? e.message : String(e)}`
}

const serve = (file: string, argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    if (cfg.security.sandbox === "strict" && !isSandboxed()) {
      const problem = sandboxProblem(cfg)
      if (problem !== undefined) return yield* Effect.fail(new StartupError({ problems: [problem] }))
      const code = yield* Effect.uninterruptible(Effect.promise(() => runSandboxed(cfg, argv)))
      return yield* Effect.sync(() => process.exit(code))
    }
    if (isSandboxed()) yield* Effect.logInfo("strict sandbox: running under the Node permission model")
    const app = Main.live(file)
    const announce = Layer.effectDiscard(
      Effect.gen(function* () {
        const c = yield* AppConfig
        if (c.security.auth.print_service_tokens) {
          for (const t of c.security.auth.service_tokens) {
            process.stdout.write(`development service token ${JSON.stringify(t.name)}: ${Redacted.value(t.token)}\n`)
          }
        }
      })
    )
    return yield* Layer.launch(Layer.provide(announce, app).pipe(Layer.merge(app))).pipe(
      Effect.provide(Logger.minimumLogLevel(levels[cfg.logging.level]))
    )
  })

const migrate = (file: string) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const registry = yield* EntitiesLayer.fromDir(cfg.entitiesDir)
    const dialect = cfg.database.adapter === "postgresql" ? "pg" : cfg.database.adapter === "mysql" ? "mysql" : "sqlite"
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => DatabaseLayer.migrate(sql, dialect, registry)).pipe(
      Effect.provide(DatabaseLayer.sqlClientLayer(cfg))
    )
    process.stdout.write(`migrated: ${registry.creationOrder.map((e) => e.table).join(", ")}\n`)
  }).pipe(Effect.provideService(EntityRegistry, { entities: new Map(), creationOrder: [] }))

export const main = (argv: ReadonlyArray<string>) => {
  const args = parseArgs(argv)
  if (typeof args === "string") {
    process.stderr.write(`dbal-daemon: ${args}\n`)
    process.exit(2)
  }
  if (args.command === "version") {
    process.stdout.write(`${version}\n`)
    return
  }
  if (args.command === "help") {
    process.stdout.write(usage)
    return
  }
  const run: Effect.Effect<void, unknown> = args.command === "migrate" ? migrate(args.config) : serve(args.config, argv)
  const program = run.pipe(
    Effect.catchAll((e: unknown) =>
      Effect.sync(() => {
        process.stderr.write(`dbal-daemon: ${report(e).split("\n").join("\ndbal-daemon: ")}\n`)
        process.exit(1)
      })
    ),
    // JSON lines with the trace id of the current span (Logger.json's fields plus traceId/spanId).
    Effect.provide(Logging.layer)
  )
  NodeRuntime.runMain(program, { disablePrettyLogger: true })
}
