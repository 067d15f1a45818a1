/**
 * The command line (@effect/cli):
 *
 *   dbal-daemon [serve] [--config=FILE] [--host=H] [--port=N]   run the daemon (default: config/development.yaml)
 *   dbal-daemon init                         write a starter configuration in the current folder
 *   dbal-daemon healthcheck [--config=FILE]  exit 0 when the daemon of that configuration answers /livez
 *   dbal-daemon migrate [--config=FILE]      create missing tables and indexes, then exit
 *   dbal-daemon check-config [--config=FILE] check configuration, entities and rules; no database
 *   dbal-daemon generate --out=FILE.ts [--config=FILE] [--import=MODULE]  typed client module (app/cli/generate.ts)
 *   dbal-daemon token session --user U [--ttl 24h] [--config=FILE]
 *   dbal-daemon token jwt --sub ID --role R [--ttl 1h] [--config=FILE]
 *   dbal-daemon --version | --help | COMMAND --help
 *
 * @effect/cli's own options that mean nothing here (--wizard, --completions, --log-level: the
 * log level is the configuration's) are refused as unknown, and --help lists only ours.
 *
 * `--config` (`-c`) is accepted before the command too (`--config=FILE migrate`). Every failure
 * is printed as one line per problem on stderr, prefixed `dbal-daemon: ` (check-config's
 * problems start with their file instead); exit code 1 for problems, 2 for usage errors.
 */
import { CliConfig, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Cause, Console, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { AppConfig } from "../../src/Config.js"
import { dialectOf } from "../../src/entity/Ddl.js"
import { isSandboxed, runSandboxed, sandboxProblem } from "../../src/Sandbox.js"
import { UserRoles } from "../../src/services/Principal.js"
import { version } from "../../src/version.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as DatabaseLayer from "../../layers/Database.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import * as Logging from "../../layers/Logging.js"
import * as Application from "../Application.js"
import { checkConfig, formatSummary } from "./checkConfig.js"
import { generateCommand } from "./generate.js"
import { CliFailure, describeCause, problem } from "./errors.js"
import { checkLiveness } from "./healthcheck.js"
import { init } from "./init.js"
import { createSession, mintJwt } from "./token.js"
import { parseTtl } from "./ttl.js"

const NAME = "dbal-daemon"

const levels = { debug: LogLevel.Debug, info: LogLevel.Info, warning: LogLevel.Warning, error: LogLevel.Error } as const

/** Log lines of the one-shot commands go to stderr, so that stdout holds their output only. */
const stderrLogging = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logging.jsonWithTrace))

const out = (lines: ReadonlyArray<string>) => Effect.sync(() => process.stdout.write(lines.map((l) => `${l}\n`).join("")))

// ---------------------------------------------------------------------------------------------
// Options

const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withDescription(`Configuration file (default: ${ConfigLayer.defaultConfigPath})`),
  Options.optional
)

const ttlOption = (fallback: string) =>
  Options.text("ttl").pipe(
    Options.withDescription(`Lifetime: seconds, or with a unit s, m, h, d (default ${fallback})`),
    Options.withDefault(fallback),
    Options.mapEffect((text) => {
      const seconds = parseTtl(text)
      return typeof seconds === "number" ? Effect.succeed(seconds) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--ttl: ${seconds}`)))
    })
  )

const hostOption = Options.text("host").pipe(
  Options.withDescription("Address to listen on, instead of the configuration's server.host (e.g. 0.0.0.0, ::, 127.0.0.1)"),
  Options.optional
)

const portOption = Options.integer("port").pipe(
  Options.withDescription("Port to listen on, instead of the configuration's server.port (0: any free port)"),
  Options.mapEffect((n) =>
    n >= 0 && n <= 65535 ? Effect.succeed(n) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--port: ${n} is not a port number (0-65535)`)))
  ),
  Options.optional
)

/**
 * The environment the configuration is read with: --host and --port are the per-key overrides
 * DBAL_SERVER__HOST / DBAL_SERVER__PORT (layers/Config.ts), so they win over the file and over
 * those variables, and a strict-sandbox relaunch (which gets the same argv) sees the same.
 */
const serveEnv = (host: Option.Option<string>, port: Option.Option<number>): Record<string, string | undefined> => ({
  ...process.env,
  ...(Option.isSome(host) ? { DBAL_SERVER__HOST: host.value } : {}),
  ...(Option.isSome(port) ? { DBAL_SERVER__PORT: String(port.value) } : {})
})

// ---------------------------------------------------------------------------------------------
// Commands

const serveProgram = (file: string, argv: ReadonlyArray<string>, env: Record<string, string | undefined> = process.env) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file, env)
    if (cfg.security.sandbox === "strict" && !isSandboxed()) {
      const reason = sandboxProblem(cfg)
      if (reason !== undefined) return yield* problem(reason)
      const code = yield* Effect.uninterruptible(Effect.promise(() => runSandboxed(cfg, argv)))
      return yield* Effect.sync(() => process.exit(code))
    }
    if (isSandboxed()) yield* Effect.logInfo("strict sandbox: running under the Node permission model")
    const app = Application.live(file, env)
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
  }).pipe(Effect.provide(Logging.layer))

const migrateProgram = (file: string) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const registry = yield* EntitiesLayer.fromConfig(cfg)
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => DatabaseLayer.migrate(sql, dialectOf(cfg.database.adapter), registry)).pipe(
      Effect.provide(DatabaseLayer.sqlClientLayer(cfg)),
      Effect.provide(Logger.minimumLogLevel(levels[cfg.logging.level]))
    )
    yield* out([`migrated: ${registry.creationOrder.map((e) => e.table).join(", ")}`])
  }).pipe(Effect.provide(stderrLogging))

const initProgram = (dir: string) =>
  Effect.gen(function* () {
    const r = yield* init(dir)
    yield* out([
      `wrote ${r.configFile}`,
      `wrote ${r.tokenFile} (the service token, mode 0600)`,
      "start the daemon with:",
      `  dbal-daemon serve --config=${r.configFile}`
    ])
  })

const healthcheckProgram = (file: string) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    yield* checkLiveness(cfg)
  })

const checkConfigProgram = (file: string) =>
  Effect.gen(function* () {
    const report = yield* checkConfig(file)
    if (report.problems.length > 0) return yield* new CliFailure({ lines: report.problems, exitCode: 1, bare: true })
    if (report.summary !== undefined) yield* out(formatSummary(report.summary))
    if (report.warnings !== undefined && report.warnings.length > 0) {
      yield* Effect.sync(() => process.stderr.write(report.warnings!.map((l) => `${l}\n`).join("")))
    }
  })

const sessionProgram = (file: string, user: string, ttl: number) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const s = yield* createSession(cfg, user, ttl).pipe(Effect.provide(Logger.minimumLogLevel(levels[cfg.logging.level])))
    yield* out([`token: ${s.token}`, `user_id: ${s.userId}`, `expires_at: ${s.expiresAt}`])
  }).pipe(Effect.provide(stderrLogging))

const jwtProgram = (file: string, sub: string, role: (typeof UserRoles)[number], ttl: number) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const t = yield* mintJwt(cfg, sub, role, ttl)
    yield* out([`token: ${t.token}`, `user_id: ${sub}`, `expires_at: ${t.expiresAt}`])
  })

/** The command tree; `argv` (as given) is what a strict-sandbox relaunch passes on. */
export const makeCommand = (argv: ReadonlyArray<string>) => {
  const root = Command.make(NAME, { config: configOption }, ({ config }) =>
    serveProgram(Option.getOrElse(config, () => ConfigLayer.defaultConfigPath), argv)
  ).pipe(
    Command.withDescription(
      "Secure database access daemon: a WebSocket JSON-RPC gateway. Without a command: serve. `--help` after a command describes it; `--version` prints the version."
    )
  )

  /** The file of the subcommand's --config, else the one given before the command, else the default. */
  const configFile = (own: Option.Option<string>) =>
    Effect.map(root, (parent) =>
      Option.getOrElse(Option.orElse(own, () => parent.config), () => ConfigLayer.defaultConfigPath)
    )

  const serve = Command.make("serve", { config: configOption, host: hostOption, port: portOption }, ({ config, host, port }) =>
    Effect.flatMap(configFile(config), (file) => serveProgram(file, argv, serveEnv(host, port)))
  ).pipe(Command.withDescription("Run the daemon (the default command)."))

  const initCommand = Command.make("init", {}, () => initProgram(process.cwd())).pipe(
    Command.withDescription(
      `Write a starter configuration into the current folder: dbal-daemon.yaml (SQLite, paths relative to it) and service-token (a generated service token, mode 0600). Never overwrites a file.`
    )
  )

  const healthcheck = Command.make("healthcheck", { config: configOption }, ({ config }) =>
    Effect.flatMap(configFile(config), healthcheckProgram)
  ).pipe(
    Command.withDescription(
      "Exit 0 when the daemon of this configuration answers GET /livez on its configured host and port (for a container HEALTHCHECK), else 1."
    )
  )

  const migrate = Command.make("migrate", { config: configOption }, ({ config }) => Effect.flatMap(configFile(config), migrateProgram)).pipe(
    Command.withDescription("Create the missing tables and indexes of the entities, then exit (never drops or alters anything).")
  )

  const check = Command.make("check-config", { config: configOption }, ({ config }) =>
    Effect.flatMap(configFile(config), checkConfigProgram)
  ).pipe(
    Command.withDescription(
      "Check the configuration, the entity definitions and the access rules file without connecting to the database: every problem on its own line, exit code 1 when there is any."
    )
  )

  const session = Command.make(
    "session",
    {
      config: configOption,
      user: Options.text("user").pipe(Options.withDescription("The user's id or username")),
      ttl: ttlOption("24h")
    },
    ({ config, user, ttl }) => Effect.flatMap(configFile(config), (file) => sessionProgram(file, user, ttl))
  ).pipe(
    Command.withDescription(
      "Create a session for a user (a Session row, written through the daemon's layers as the system principal) and print its token and the user id. Needs the database."
    )
  )

  const jwt = Command.make(
    "jwt",
    {
      config: configOption,
      sub: Options.text("sub").pipe(Options.withDescription("The user id (the token's subject)")),
      role: Options.choice("role", UserRoles).pipe(Options.withDescription("The user's role (the configured role claim)")),
      ttl: ttlOption("1h")
    },
    ({ config, sub, role, ttl }) => Effect.flatMap(configFile(config), (file) => jwtProgram(file, sub, role, ttl))
  ).pipe(
    Command.withDescription(
      "Print a JWT for a user, signed with the configured HS* secret (security.auth.jwt: secret, issuer, audience, role_claim)."
    )
  )

  const token = Command.make("token").pipe(
    Command.withDescription("Development helper: print credentials to try the daemon with (session or jwt)."),
    Command.withSubcommands([session, jwt])
  )

  const generate = generateCommand(configOption, configFile)

  return root.pipe(Command.withSubcommands([serve, initCommand, healthcheck, migrate, check, token, generate]))
}

// ---------------------------------------------------------------------------------------------
// Running

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g

const COMMANDS: Record<string, ReadonlyArray<string>> = {
  [NAME]: ["serve", "init", "healthcheck", "migrate", "check-config", "token", "generate"],
  token: ["session", "jwt"]
}
/** Options that take a value (`--name value` or `--name=value`). */
const VALUED = new Set(["--config", "-c", "--user", "--ttl", "--sub", "--role", "--host", "--port", "--out", "--import"])
const FLAGS = new Set(["--help", "-h", "--version"])
/** @effect/cli's built-in options that mean nothing for this program. */
const MEANINGLESS = new Set(["--wizard", "--completions", "--log-level"])

/**
 * What is wrong with the command line, when it is an unknown command, an unknown option or an
 * option without its value (the parser's own message is less precise for those).
 */
const diagnose = (args: ReadonlyArray<string>): string | undefined => {
  let level: string | undefined = NAME
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a.startsWith("-")) {
      const name = a.split("=")[0]!
      if (VALUED.has(name)) {
        if (!a.includes("=") && (args[i + 1] === undefined || args[i + 1]!.startsWith("-"))) return `${name} needs a value (see --help)`
        if (!a.includes("=")) i++
      } else if (!FLAGS.has(name)) return `unknown option ${JSON.stringify(name)} (see --help)`
      continue
    }
    const commands: ReadonlyArray<string> | undefined = level === undefined ? undefined : COMMANDS[level]
    if (commands === undefined) return undefined
    if (!commands.includes(a)) {
      const where = level === NAME ? "" : ` for ${level}`
      return `unknown command ${JSON.stringify(a)}${where}: expected ${commands.slice(0, -1).join(", ")} or ${commands[commands.length - 1]} (see --help)`
    }
    level = a
  }
  return undefined
}

/** A ValidationError of the parser as one line. */
const usageLine = (e: ValidationError.ValidationError, args: ReadonlyArray<string>): string => {
  const text = "error" in e ? HelpDoc.toAnsiText(e.error).replace(ANSI, "").replace(/\s+/g, " ").trim() : "invalid command line"
  return diagnose(args) ?? `${text.charAt(0).toLowerCase()}${text.slice(1)} (see --help)`
}

const printErrors = (lines: ReadonlyArray<string>, prefix: string) =>
  Effect.sync(() => process.stderr.write(lines.map((l) => `${prefix}${l}\n`).join("")))

/**
 * Runs the command line; resolves with the exit code (0 ok, 1 problems, 2 usage). Interrupted
 * (SIGTERM/SIGINT while serving) it stays interrupted, so that the runtime exits with 0.
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number, unknown> => {
  // `-v` as before the move to @effect/cli.
  const args = argv.map((a) => (a === "-v" ? "--version" : a))
  const cli = Command.run(makeCommand(argv), { name: NAME, version, executable: NAME })
  const meaningless = args.find((a) => MEANINGLESS.has(a.split("=")[0]!))
  if (meaningless !== undefined) {
    return Effect.as(printErrors([`unknown option ${JSON.stringify(meaningless.split("=")[0])} (see --help)`], `${NAME}: `), 2)
  }
  return Effect.gen(function* () {
    const base = yield* Effect.console
    const plain = !process.stdout.isTTY
    // The parser prints its own errors (several lines, colored); they are printed as one line below.
    const console: Console.Console = {
      ...base,
      error: () => Effect.void,
      log: (...parts: ReadonlyArray<unknown>) => base.log(...parts.map((p) => (plain && typeof p === "string" ? p.replace(ANSI, "") : p)))
    }
    return yield* cli(["node", NAME, ...args]).pipe(Effect.withConsole(console), Effect.as(0))
  }).pipe(
    // Help without the parser's built-ins (--help and --version are named in the description)
    // and without its type filler ("A user-defined piece of text.").
    Effect.provide(CliConfig.layer({ showBuiltIns: false, showTypes: false })),
    Effect.provide(NodeContext.layer),
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && ValidationError.isValidationError(failure.value)) {
        return Effect.as(printErrors([usageLine(failure.value, args)], `${NAME}: `), 2)
      }
      if (Option.isSome(failure) && failure.value instanceof CliFailure) {
        const f = failure.value
        return Effect.as(printErrors(f.lines, f.bare ? "" : `${NAME}: `), f.exitCode)
      }
      return Effect.as(printErrors(describeCause(cause), `${NAME}: `), 1)
    }),
    Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.succeed(1)))
  )
}
