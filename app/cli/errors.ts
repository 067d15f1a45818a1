/**
 * Failures of the command line, each printed as one line (or one line per problem): no stack
 * traces, no Effect cause dumps. Exit codes: 1 for problems (configuration, database, ...), 2 for
 * usage errors (unknown command or option, bad option value).
 */
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  lines: Schema.Array(Schema.String),
  exitCode: Schema.Literal(1, 2),
  /** The lines already say where the problem is (check-config): printed without the program's name. */
  bare: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {
  override get message(): string {
    return this.lines.join("\n")
  }
}

/** A problem of the command's own (exit code 1). */
export const problem = (...lines: ReadonlyArray<string>) => new CliFailure({ lines, exitCode: 1 })

/** A usage error (exit code 2). */
export const usage = (line: string) => new CliFailure({ lines: [line], exitCode: 2 })

const tagged = ["ConfigError", "EntitiesError", "ListenError", "RulesFileError", "StartupError", "MigrationFailed", "MigrationRefused"]

/** The error of a layer or command as lines (the messages of the daemon's tagged errors). */
export const describe = (e: unknown): ReadonlyArray<string> => {
  if (e instanceof CliFailure) return e.lines
  if (e !== null && typeof e === "object" && "_tag" in e) {
    const t = e as { _tag: string; message?: unknown; reason?: unknown; cause?: unknown }
    if (tagged.includes(t._tag)) return String(t.message).split("\n")
    if (t._tag === "Unavailable") return [`startup failed: ${String(t.reason)}`]
    if (t._tag === "SqlError") {
      const cause = t.cause as { code?: unknown; message?: unknown } | undefined
      return [`database: cannot connect or prepare the schema (${String(cause?.code ?? cause?.message ?? "error")})`]
    }
  }
  const text = e instanceof Error ? e.message : String(e)
  return [`failed: ${text.split("\n")[0] ?? ""}`]
}

/** A cause that is not only an interruption, as lines: its first failure, else its first defect. */
export const describeCause = (cause: Cause.Cause<unknown>): ReadonlyArray<string> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return describe(failure.value)
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    const d = defect.value
    const text = d instanceof Error ? d.message : typeof d === "string" ? d : String(d)
    return [`failed: ${text.split("\n")[0] ?? ""}`]
  }
  return ["failed: unexpected error"]
}
