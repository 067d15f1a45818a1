/**
 * docs/configuration.md is generated from the configuration Schema (scripts/gen-config-docs.ts):
 * it must be what the generator writes today, and every key must have a description to write.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import { configDocsFile, renderConfigDocs, undocumentedKeys } from "../../scripts/gen-config-docs.js"

describe("docs/configuration.md", () => {
  it("every configuration key has a description annotation in src/Config.ts", () => {
    expect(undocumentedKeys(), "add .annotations({ description }) to these fields of src/Config.ts").toEqual([])
  })

  it("is up to date with src/Config.ts (else: npm run docs:config)", () => {
    const committed = fs.readFileSync(configDocsFile, "utf8")
    expect(committed === renderConfigDocs(), "docs/configuration.md is stale: run npm run docs:config").toBe(true)
  })

  it("documents each key once", () => {
    const keys = [...renderConfigDocs().matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1])
    expect(keys.length).toBeGreaterThan(100)
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([])
    expect(keys).toContain("server.port")
    expect(keys).toContain("security.auth.service_tokens[].token")
  })
})
