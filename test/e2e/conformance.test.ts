/**
 * The conformance cases of the data model (test/fixtures/metabuilder/common/contracts/conformance_cases.yaml),
 * run against the real daemon process over a real WebSocket, on every dialect, as the service
 * principal. One daemon per dialect on a fresh database; the cases run in file order (they are
 * written to pass in that order on a fresh database — the first test checks that no two cases
 * create records that collide on a unique field).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parse } from "yaml"
import { type Answer, type Client, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  serviceAuth,
  skipDialect,
  type TestDatabase,
  writeConfig
} from "../support/services.js"

const casesFile = path.resolve(root, "test", "fixtures", "metabuilder", "common", "contracts", "conformance_cases.yaml")

interface Step {
  readonly action: "create" | "read" | "update" | "delete" | "getTree"
  readonly entity: string
  readonly input: Record<string, unknown>
  readonly expected: {
    readonly status: "success" | "error"
    readonly output?: unknown
    readonly error?: { readonly code?: number; readonly message?: string }
  }
}

interface Case {
  readonly name: string
  readonly description?: string
  readonly operations: ReadonlyArray<Step>
}

const loadCases = (): ReadonlyArray<Case> => {
  if (!fs.existsSync(casesFile)) {
    throw new Error(`conformance cases not found at ${casesFile} (a copy of metabuilder's file: see test/fixtures/README.md)`)
  }
  const doc: unknown = parse(fs.readFileSync(casesFile, "utf8"))
  if (!Array.isArray(doc) || doc.length === 0) throw new Error(`${casesFile}: expected a non-empty list of cases`)
  return doc as ReadonlyArray<Case>
}

const cases = loadCases()

const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

/** Replaces "$prev.id" and "$steps[N].id" with the ids of earlier results of the same case. */
const resolveRefs = (value: unknown, results: ReadonlyArray<unknown>): unknown => {
  if (typeof value === "string") {
    const idOf = (r: unknown, ref: string): unknown => {
      if (!isRecord(r) || r.id === undefined) throw new Error(`${ref}: that step has no result with an id (got ${JSON.stringify(r)})`)
      return r.id
    }
    if (value === "$prev.id") {
      if (results.length === 0) throw new Error("$prev.id in the first step")
      return idOf(results[results.length - 1], value)
    }
    const m = /^\$steps\[(\d+)\]\.id$/.exec(value)
    if (m !== null) {
      const n = Number(m[1])
      if (n >= results.length) throw new Error(`${value} refers to a step that has not run yet`)
      return idOf(results[n], value)
    }
    return value
  }
  if (Array.isArray(value)) return value.map((v) => resolveRefs(v, results))
  if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(v, results)]))
  return value
}

/** Subset match: objects need every expected key to match; arrays match element-wise; scalars are equal. */
const mismatch = (actual: unknown, expected: unknown, at = "output"): string | undefined => {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected an array, got ${JSON.stringify(actual)}`
    if (actual.length < expected.length) return `${at}: expected at least ${expected.length} elements, got ${actual.length}`
    for (let i = 0; i < expected.length; i++) {
      const m = mismatch(actual[i], expected[i], `${at}[${i}]`)
      if (m !== undefined) return m
    }
    return undefined
  }
  if (isRecord(expected)) {
    if (!isRecord(actual)) return `${at}: expected an object, got ${JSON.stringify(actual)}`
    for (const [k, v] of Object.entries(expected)) {
      const m = mismatch(actual[k], v, `${at}.${k}`)
      if (m !== undefined) return m
    }
    return undefined
  }
  return Object.is(actual, expected) ? undefined : `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`
}

/** One step as a request: [method, params]. */
const toRequest = (step: Step, input: Record<string, unknown>): [string, Array<unknown>] => {
  const { id, ...rest } = input
  switch (step.action) {
    case "create":
      return ["create", [step.entity, input]]
    case "read":
      return ["read", [step.entity, id]]
    case "update":
      return ["update", [step.entity, id, rest]]
    case "delete":
      return ["delete", [step.entity, id]]
    case "getTree":
      return ["list", [step.entity, { filter: { pageId: input.pageId } }]]
    default:
      throw new Error(`unknown action ${JSON.stringify((step as { action: unknown }).action)}`)
  }
}

const runCase = async (client: Client, c: Case) => {
  const results: Array<unknown> = []
  for (const [i, step] of c.operations.entries()) {
    const where = `${c.name}, step ${i} (${step.action} ${step.entity})`
    const input = resolveRefs(step.input, results) as Record<string, unknown>
    const [method, params] = toRequest(step, input)
    const answer: Answer = await client.call(method, params)
    const text = JSON.stringify(answer)
    expect(text, `${where}: no stack traces in answers`).not.toContain("    at ")
    if (step.expected.status === "success") {
      expect(answer.error, `${where}: expected success, got ${text}`).toBeUndefined()
      const output = step.action === "getTree" && isRecord(answer.result) ? answer.result.data : answer.result
      if (step.expected.output !== undefined) {
        const m = mismatch(output, step.expected.output)
        expect(m, `${where}: ${m}; answer ${text}`).toBeUndefined()
      }
      results.push(output)
    } else {
      expect(answer.error, `${where}: expected an error, got ${text}`).toBeDefined()
      if (step.expected.error?.code !== undefined) expect(answer.error?.code, `${where}: ${text}`).toBe(step.expected.error.code)
      if (step.expected.error?.message !== undefined) expect(answer.error?.message, `${where}: ${text}`).toBe(step.expected.error.message)
      results.push(answer.error)
    }
  }
}

/** Fields with a unique constraint that the cases set; two cases creating the same value would collide. */
const UNIQUE_FIELDS = ["username", "email", "slug", "token", "name"] as const

describe("conformance cases file", () => {
  it("has the eight cases, and no two cases create records colliding on a unique field", () => {
    expect(cases.map((c) => c.name)).toHaveLength(8)
    const owner = new Map<string, string>()
    const collisions: Array<string> = []
    for (const c of cases) {
      const mine = new Set<string>()
      for (const s of c.operations) {
        if (s.action !== "create") continue
        for (const f of UNIQUE_FIELDS) {
          const v = s.input[f]
          if (typeof v !== "string") continue
          const key = `${s.entity}.${f}=${v}`
          mine.add(key)
        }
      }
      for (const key of mine) {
        const other = owner.get(key)
        if (other !== undefined) collisions.push(`${key} in "${other}" and "${c.name}"`)
        else owner.set(key, c.name)
      }
    }
    expect(collisions).toEqual([])
  })
})

const dialects: ReadonlyArray<DialectName> = ["sqlite", "postgresql", "mysql"]

for (const dialect of dialects) {
  describe.skipIf(await skipDialect(dialect))(`conformance on ${dialect}`, () => {
    let db: TestDatabase | undefined
    let daemon: Daemon | undefined
    let client: Client | undefined

    beforeAll(async () => {
      db = await createDatabase(dialect)
      daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`])
      client = await connect(daemon.port, serviceAuth)
    })

    afterAll(async () => {
      await client?.close()
      const code = await daemon?.stop()
      await db?.drop()
      expect(code ?? 0).toBe(0)
    })

    for (const c of cases) {
      it(c.name, async () => {
        await runCase(client!, c)
      })
    }
  })
}
