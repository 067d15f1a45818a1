/**
 * The daemon's error codes, names and messages (src/Errors.ts) are those of metabuilder's
 * errors.yaml (a copy in test/fixtures/metabuilder), which clients of the original data layer
 * already know. BAD_REQUEST (400) is the daemon's own: errors.yaml has no code for a malformed frame.
 */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { parse } from "yaml"
import * as E from "../../src/Errors.js"

const file = fileURLToPath(new URL("../fixtures/metabuilder/api/schema/errors.yaml", import.meta.url))
const doc = parse(fs.readFileSync(file, "utf8")) as {
  readonly error_codes: Record<string, { readonly code: number; readonly message: string }>
}

const samples: ReadonlyArray<E.RequestError> = [
  new E.Unauthorized({ reason: "r" }),
  new E.Forbidden({ reason: "r" }),
  new E.NotFound({ entity: "User" }),
  new E.Conflict({ entity: "User", fields: ["email"], reason: "r" }),
  E.ValidationFailed.one("email", "bad"),
  new E.RateLimited({ retryAfter: 1 }),
  new E.Internal({}),
  new E.NotSupported({ feature: "f" }),
  new E.Unavailable({ reason: "r" }),
  new E.Timeout({ timeoutMs: 1 })
]

describe("errors.yaml", () => {
  for (const e of samples) {
    it(`${e._tag}: its name, code and message are the ones errors.yaml gives`, () => {
      const name = E.errorName(e)
      const entry = doc.error_codes[name]
      expect(entry, `${name} in errors.yaml`).toBeDefined()
      const wire = E.toWireError(e)
      expect({ code: wire.code, message: wire.message }).toEqual({ code: entry!.code, message: entry!.message })
    })
  }
})
