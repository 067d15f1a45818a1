/**
 * The command line (@effect/cli):
 *
 *   dbal-daemon [serve] [--config=FILE] [--host=H] [--port=N]   run the daemon (default: config/development.yaml)
 *   dbal-daemon init                         write a starter configuration in the current folder
 *   dbal-daemon healthcheck [--config=FILE]  exit 0 when the daemon of that configuration answers /livez
 *   dbal-daemon migrate [--plan] [--allow-destructive] [--config=FILE]   bring the database to the definitions
 *   dbal-daemon check-config [--config=FILE] check configuration, entities and rules; no database
 *   dbal-daemon generate --out=FILE.ts [--config=FILE] [--import=MODULE]  typed client module (app/cli/generate.ts)
 *   dbal-daemon token session --user U [--ttl 24h] [--config=FILE]
 *   dbal-daemon token jwt --sub ID --role R [--ttl 1h] [--config=FILE]
 *   dbal-daemon --version | --help | COMMAND --help
 *
 * @effect/cli's own options that mean nothing here (--wizard, --completions, --log-level: the
 * log level is the configuration's) are refused as unknown, and --help lists only ours.
 *
 * Each command's program is imported when that command runs (./serve.ts, ./migrate.ts, …): --help,
 * generate and check-config do not load the daemon's layers, the database drivers or the server.
 *
 * `--config` (`-c`) is accepted before the command too (`--config=FILE migrate`). Every failure
 * is printed as one line per problem on stderr, prefixed `dbal-daemon: ` (check-config's
 * problems start with their file instead); exit code 1 for problems, 2 for usage errors.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import * as Cause from "effect/Cause"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { defaultConfigPath } from "../../src/paths.js"
import { UserRoles } from "../../src/services/Principal.js"
import { version } from "../../src/version.js"
import { CliFailure, describeCause } from "./errors.js"
import { parseTtl } from "./ttl.js"

const NAME = "dbal-daemon"

/** A command's program, imported when the command runs. */
const lazy = <M, A, E, R>(load: () => Promise<M>, program: (m: M) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.promise(load), program)

// ---------------------------------------------------------------------------------------------
// Options

const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withDescription(`Configuration file (default: ${defaultConfigPath})`),
  Options.optional
)

const ttlOption = (fallback: string) =>
  Options.text("ttl").pipe(
    Options.withDescription(`Lifetime: seconds, or with a unit s, m, h, d (default ${fallback})`),
    Options.withDefault(fallback),
    Options.mapEffect((text) => {
      const seconds = parseTtl(text)
      return typeof seconds === "number"
        ? Effect.succeed(seconds)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--ttl: ${seconds}`)))
    })
  )

const hostOption = Options.text("host").pipe(
  Options.withDescription("Address to listen on, instead of the configuration's server.host (e.g. 0.0.0.0, ::, 127.0.0.1)"),
  Options.optional
)

const portOption = Options.integer("port").pipe(
  Options.withDescription("Port to listen on, instead of the configuration's server.port (0: any free port)"),
  Options.mapEffect((n) =>
    n >= 0 && n <= 65535
      ? Effect.succeed(n)
      : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--port: ${n} is not a port number (0-65535)`)))
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

/** The command tree; `argv` (as given) is what a strict-sandbox relaunch passes on. */
export const makeCommand = (argv: ReadonlyArray<string>) => {
  const root = Command.make(NAME, { config: configOption }, ({ config }) =>
    lazy(
      () => import("./serve.js"),
      (m) =>
        m.serveProgram(
          Option.getOrElse(config, () => defaultConfigPath),
          argv
        )
    )
  ).pipe(
    Command.withDescription(
      "Secure database access daemon: a WebSocket JSON-RPC gateway. Without a command: serve. `--help` after a command describes it; `--version` prints the version."
    )
  )

  /** The file of the subcommand's --config, else the one given before the command, else the default. */
  const configFile = (own: Option.Option<string>) =>
    Effect.map(root, (parent) =>
      Option.getOrElse(
        Option.orElse(own, () => parent.config),
        () => defaultConfigPath
      )
    )

  const serve = Command.make("serve", { config: configOption, host: hostOption, port: portOption }, ({ config, host, port }) =>
    Effect.flatMap(configFile(config), (file) =>
      lazy(
        () => import("./serve.js"),
        (m) => m.serveProgram(file, argv, serveEnv(host, port))
      )
    )
  ).pipe(Command.withDescription("Run the daemon (the default command)."))

  const initCommand = Command.make("init", {}, () =>
    lazy(
      () => import("./init.js"),
      (m) => m.initProgram(process.cwd())
    )
  ).pipe(
    Command.withDescription(
      `Write a starter configuration into the current folder: dbal-daemon.yaml (SQLite, paths relative to it) and service-token (a generated service token, mode 0600). Never overwrites a file.`
    )
  )

  const healthcheck = Command.make("healthcheck", { config: configOption }, ({ config }) =>
    Effect.flatMap(configFile(config), (file) =>
      lazy(
        () => import("./healthcheck.js"),
        (m) => m.healthcheckProgram(file)
      )
    )
  ).pipe(
    Command.withDescription(
      "Exit 0 when the daemon of this configuration answers GET /livez on its configured host and port (for a container HEALTHCHECK), else 1."
    )
  )

  const migrate = Command.make(
    "migrate",
    {
      config: configOption,
      plan: Options.boolean("plan").pipe(
        Options.withDescription("Print the SQL that would bring the database to the definitions, per step, and change nothing")
      ),
      allowDestructive: Options.boolean("allow-destructive").pipe(
        Options.withDescription(
          "Also apply destructive changes (dropped columns and tables, narrowed types, new NOT NULL or unique constraints); without it a plan that has any is refused whole"
        )
      )
    },
    ({ config, plan, allowDestructive }) =>
      Effect.flatMap(configFile(config), (file) =>
        lazy(
          () => import("./migrate.js"),
          (m) => m.migrateProgram(file, { plan, allowDestructive })
        )
      )
  ).pipe(
    Command.withDescription(
      "Bring the database to the entity definitions: create missing tables, columns, indexes and foreign keys, widen types, and record what was applied in dbal_migrations. Destructive changes are refused unless --allow-destructive is given."
    )
  )

  const check = Command.make("check-config", { config: configOption }, ({ config }) =>
    Effect.flatMap(configFile(config), (file) =>
      lazy(
        () => import("./checkConfig.js"),
        (m) => m.checkConfigProgram(file)
      )
    )
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
    ({ config, user, ttl }) =>
      Effect.flatMap(configFile(config), (file) =>
        lazy(
          () => import("./token.js"),
          (m) => m.sessionProgram(file, user, ttl)
        )
      )
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
    ({ config, sub, role, ttl }) =>
      Effect.flatMap(configFile(config), (file) =>
        lazy(
          () => import("./token.js"),
          (m) => m.jwtProgram(file, sub, role, ttl)
        )
      )
  ).pipe(
    Command.withDescription(
      "Print a JWT for a user, signed with the configured HS* secret (security.auth.jwt: secret, issuer, audience, role_claim)."
    )
  )

  const token = Command.make("token").pipe(
    Command.withDescription("Development helper: print credentials to try the daemon with (session or jwt)."),
    Command.withSubcommands([session, jwt])
  )

  const generate = Command.make(
    "generate",
    {
      config: configOption,
      out: Options.text("out").pipe(Options.withDescription("The TypeScript module to write (e.g. src/db.ts)")),
      importFrom: Options.text("import").pipe(
        Options.withDescription("The module the generated code imports the client from (default dbal-daemon/client)"),
        Options.withDefault("dbal-daemon/client")
      )
    },
    ({ config, out, importFrom }) =>
      Effect.flatMap(configFile(config), (file) =>
        lazy(
          () => import("./generate.js"),
          (m) => m.generateProgram(file, out, importFrom)
        )
      )
  ).pipe(
    Command.withDescription(
      "Write a typed client module for the entities of the configuration (entities folder or schema.prisma): records, inputs, filters, relations and createClient(config). Needs no database."
    )
  )

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
const FLAGS = new Set(["--help", "-h", "--version", "--plan", "--allow-destructive"])
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
    // What @effect/cli needs (CliApp.Environment), without NodeContext's command executor and workers.
    Effect.provide(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer)),
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
