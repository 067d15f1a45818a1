/**
 * Audit layer: one JSON line per operation, to the file at `security.audit_log_path` (created
 * 0600 in a 0700 folder) or, without a path, to stdout. Off when `security.audit_log: false`.
 */
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AppConfig } from "../src/Config.js"
import { Unavailable } from "../src/Errors.js"
import { AuditLog, type AuditRecord } from "../src/services/AuditLog.js"

const fileSink = (file: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      return fs.openSync(file, "a", 0o600)
    }),
    (fd) => Effect.sync(() => fs.closeSync(fd))
  ).pipe(
    Effect.map((fd) => (rec: AuditRecord) =>
      Effect.async<void, Unavailable>((resume) => {
        fs.write(fd, JSON.stringify(rec) + "\n", (err) =>
          resume(err === null ? Effect.void : Effect.fail(new Unavailable({ reason: "the audit log cannot be written" })))
        )
      })
    )
  )

export const layer = Layer.scoped(
  AuditLog,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    if (!cfg.security.audit_log) return { record: () => Effect.void }
    const file = cfg.security.audit_log_path
    if (file === undefined) {
      return { record: (rec: AuditRecord) => Effect.sync(() => void process.stdout.write(JSON.stringify({ audit: rec }) + "\n")) }
    }
    return { record: yield* fileSink(file) }
  })
)

/** Collects records in memory (tests that are about something else). */
export const memory = (into: Array<AuditRecord>) => Layer.succeed(AuditLog, { record: (rec) => Effect.sync(() => void into.push(rec)) })
