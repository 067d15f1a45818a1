/** What the one-shot commands share: stdout lines, log levels, JSON log lines on stderr. */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Logging from "../../layers/Logging.js"

export const levels = { debug: LogLevel.Debug, info: LogLevel.Info, warning: LogLevel.Warning, error: LogLevel.Error } as const

/** Log lines of the one-shot commands go to stderr, so that stdout holds their output only. */
export const stderrLogging = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logging.jsonWithTrace))

export const out = (lines: ReadonlyArray<string>) => Effect.sync(() => process.stdout.write(lines.map((l) => `${l}\n`).join("")))
