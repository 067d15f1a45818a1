/** `dbal-daemon [serve]`: runs the daemon (loaded only for this command: it pulls in every layer). */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import { AppConfig } from "../../src/Config.js"
import { isSandboxed, runSandboxed, sandboxProblem } from "../../src/Sandbox.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as Logging from "../../layers/Logging.js"
import * as Application from "../Application.js"
import { problem } from "./errors.js"
import { levels } from "./output.js"

export const serveProgram = (file: string, argv: ReadonlyArray<string>, env: Record<string, string | undefined> = process.env) =>
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
