/**
 * Command line (app/cli/commands.ts, @effect/cli):
 *   dbal-daemon [serve] [--config=FILE]        run the daemon (default file: config/development.yaml)
 *   dbal-daemon migrate [--plan] [--allow-destructive] [--config=FILE]   bring the database to the definitions
 *   dbal-daemon check-config [--config=FILE]   check configuration, entities and rules (no database)
 *   dbal-daemon token session|jwt ...          development credentials
 *   dbal-daemon --version | --help | COMMAND --help
 * Problems are printed one per line; exit code 1 for problems, 2 for usage errors, 0 otherwise
 * (also after SIGTERM/SIGINT while serving: graceful shutdown).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { run } from "./cli/commands.js"

export { CliFailure } from "./cli/errors.js"

/** Runs the command line `argv` (without node and the script); the process exits with its code. */
export const main = (argv: ReadonlyArray<string>): void => {
  let code = 0
  const program = Effect.map(run(argv), (c) => {
    code = c
  })
  NodeRuntime.runMain(program, {
    disablePrettyLogger: true,
    // Interrupted by SIGTERM/SIGINT (serve's graceful shutdown): 0, as before.
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? code : 0)
  })
}
