/**
 * Client-supplied names are not echoed whole (issue 14, finding 2). A real daemon process per
 * dialect, audit file on with the rotation of the review (`max_size_mb: 1`, `max_files: 2`), gets
 * frames that carry a 1 MiB name where the daemon quotes names: an unknown field in a filter, an
 * operator, a sort key, an include, a list option, a `data` key (create, update, createMany, inside
 * a transaction), a value quoted by a type error, the entity. Then:
 * - each answer is the expected error and its frame is under 4 KiB; the long name appears in it cut
 *   to at most 128 characters with the "…(+N chars)" marker;
 * - each request's audit record is one line under the record cap, the name cut the same way;
 * - a record written before the flood (a service principal's create) is still in the live file, and
 *   no audit file was removed;
 * - thousands of short unknown keys make one bounded answer that counts the issues left out.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import type { AuditRecord } from "../../src/services/AuditLog.js"
import { type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, type DialectName, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { auditDaemonConfig, readAudit, waitFor } from "./audit-helpers.js"

/** A 1 MiB name; its distinct head shows where it was cut. */
const LONG = `Zq${"x".repeat(1024 * 1024 - 2)}`
const MARKER = /…\(\+\d+ chars\)/
const ANSWER_MAX_BYTES = 4096
const RECORD_MAX_BYTES = 8192

/** A WebSocket that keeps every frame as received (text), to measure answers' real size. */
const rawClient = (port: number): Promise<{ ask: (frame: string, id: string) => Promise<string>; close: () => void }> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024 })
    const waiting = new Map<string, (text: string) => void>()
    ws.on("message", (data) => {
      const text = String(data)
      const id = (JSON.parse(text) as { id: unknown }).id
      waiting.get(String(id))?.(text)
      waiting.delete(String(id))
    })
    ws.once("error", reject)
    ws.once("open", () =>
      resolve({
        ask: (frame, id) =>
          new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`no answer to ${id} within 30 s`)), 30_000)
            waiting.set(id, (t) => {
              clearTimeout(timer)
              ok(t)
            })
            ws.send(frame)
          }),
        close: () => ws.close()
      })
    )
  })

interface Case {
  readonly name: string
  readonly method: string
  readonly params: ReadonlyArray<unknown>
  readonly code: number
}

const userId = "00000000-0000-4000-8000-000000000001"
const cases: ReadonlyArray<Case> = [
  { name: "unknown field in a filter", method: "list", params: ["User", { filter: { [LONG]: 1 } }], code: 422 },
  { name: "unknown field under AND", method: "count", params: ["User", { AND: [{ [LONG]: 1 }] }], code: 422 },
  { name: "unknown operator", method: "list", params: ["User", { filter: { username: { [LONG]: "a" } } }], code: 422 },
  { name: "a value quoted by a type error", method: "list", params: ["User", { filter: { createdAt: { gt: LONG } } }], code: 422 },
  { name: "unknown sort key", method: "list", params: ["User", { sort: { [LONG]: "asc" } }], code: 422 },
  { name: "unknown include", method: "list", params: ["User", { include: [LONG] }], code: 422 },
  { name: "unknown list option", method: "list", params: ["User", { [LONG]: 1 }], code: 422 },
  { name: "unknown data key (create)", method: "create", params: ["User", { [LONG]: 1 }], code: 422 },
  { name: "unknown data key (update)", method: "update", params: ["User", userId, { [LONG]: 1 }], code: 422 },
  { name: "unknown data key (createMany)", method: "createMany", params: ["User", [{ [LONG]: 1 }]], code: 422 },
  { name: "unknown data key (updateMany)", method: "updateMany", params: ["User", { username: "nobody" }, { [LONG]: 1 }], code: 422 },
  { name: "unknown lookup field (findByField)", method: "findByField", params: ["User", LONG, "x"], code: 422 },
  {
    name: "unknown data key in a transaction",
    method: "transaction",
    params: [[{ method: "create", params: ["User", { [LONG]: 1 }] }]],
    code: 422
  },
  { name: "unknown entity", method: "list", params: [LONG], code: 422 },
  { name: "unknown entity (a write)", method: "create", params: [LONG, { a: 1 }], code: 422 }
]

const dialects: Array<{ dialect: DialectName; skip: boolean }> = [
  { dialect: "sqlite", skip: false },
  { dialect: "postgresql", skip: await skipDialect("postgresql") },
  { dialect: "mysql", skip: await skipDialect("mysql") }
]

describe.each(dialects)("client names are bounded in answers and audit records on $dialect", ({ dialect, skip }) => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  let client: Awaited<ReturnType<typeof rawClient>> | undefined
  let auditFile = ""
  const suffix = randomBytes(4).toString("hex")
  const answers = new Map<string, string>()

  const ask = async (id: string, method: string, params: ReadonlyArray<unknown>) => {
    const text = await client!.ask(JSON.stringify({ id, method, params, auth: serviceAuth }), id)
    answers.set(id, text)
    return text
  }
  const recordOf = (id: string) =>
    waitFor(`the audit record of ${id}`, () => {
      const line = fs
        .readFileSync(auditFile, "utf8")
        .split("\n")
        .find((l) => l.includes(`"requestId":${JSON.stringify(id)}`))
      return line === undefined ? undefined : { line, record: JSON.parse(line) as AuditRecord }
    })

  beforeAll(async () => {
    if (skip) return
    db = await createDatabase(dialect)
    const dir = tempDir(`audit-echo-${dialect}`)
    auditFile = path.join(dir, "audit", "audit.log")
    const config = auditDaemonConfig(
      db,
      { audit_log_path: auditFile, audit: { max_size_mb: 1, max_files: 2 } },
      { server: { host: "127.0.0.1", port: 0, max_payload: 4 * 1024 * 1024 } }
    )
    daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { timeoutMs: 90_000 })
    client = await rawClient(daemon.port)
    const created = JSON.parse(
      await ask("history", "create", ["User", { username: `hist_${suffix}`, email: `hist_${suffix}@example.com`, role: "user" }])
    ) as { result?: unknown }
    expect(created.result, "the service principal's create").toBeDefined()
    for (const [i, c] of cases.entries()) await ask(`echo-${i}`, c.method, c.params)
    // The review's flood: ten more 1 MiB names, after which every earlier record had been rotated away.
    for (let k = 0; k < 10; k++) await ask(`flood-${k}`, cases[0]!.method, cases[0]!.params)
  }, 240_000)

  afterAll(async () => {
    client?.close()
    await daemon?.stop()
  })

  it.skipIf(skip).each(cases.map((c, i) => ({ ...c, i })))(
    "$name: the answer is under 4 KiB and quotes the name cut",
    async ({ i, code }) => {
      const text = answers.get(`echo-${i}`)!
      const answer = JSON.parse(text) as { error?: { code: number; details?: Record<string, unknown> } }
      expect(answer.error?.code, text.slice(0, 500)).toBe(code)
      expect(Buffer.byteLength(text), text.slice(0, 500)).toBeLessThan(ANSWER_MAX_BYTES)
      expect(text).not.toContain("x".repeat(200))
      // Where the details quote the name, it is cut with the marker (an unknown entity is not quoted).
      if (text.includes("Zqxxx")) {
        expect(text).toMatch(MARKER)
        for (const s of JSON.stringify(answer.error?.details).match(/"[^"]*Zqx[^"]*"/g) ?? [])
          expect(JSON.parse(s).length).toBeLessThanOrEqual(512)
      }
    }
  )

  it.skipIf(skip).each(cases.map((c, i) => ({ ...c, i })))("$name: the audit record is one bounded line", async ({ i, code, method }) => {
    const { line, record } = await recordOf(`echo-${i}`)
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(RECORD_MAX_BYTES)
    expect(line).not.toContain("x".repeat(200))
    expect(record.success).toBe(false)
    expect(record.errorCode).toBe(code)
    expect(record.operation).toBe(method)
    expect(record.userId).toBe("tests")
  })

  it.skipIf(skip)("the records before the flood are still in the live file, and no audit file was removed", async () => {
    await recordOf("flood-9")
    const records = readAudit(auditFile)
    const history = records.find((r) => r.requestId === "history")
    expect(history?.success).toBe(true)
    expect(history?.operation).toBe("create")
    expect(records.some((r) => r.operation === "daemon.start")).toBe(true)
    // 25 requests of 1 MiB each: without bounds 25 MiB of records, each rotating the file.
    expect(fs.statSync(auditFile).size).toBeLessThan(1024 * 1024)
    expect(fs.readdirSync(path.dirname(auditFile))).toEqual(["audit.log"])
    expect(daemon!.output()).not.toContain("audit retention removed")
  })

  it.skipIf(skip)("thousands of unknown keys: one bounded answer that counts the issues it leaves out", async () => {
    const data = Object.fromEntries(Array.from({ length: 20_000 }, (_, k) => [`unknown_field_number_${k}`, k]))
    const text = await ask("many-keys", "create", ["User", data])
    const answer = JSON.parse(text) as { error?: { code: number; details?: { fields?: Array<unknown>; moreFields?: number } } }
    expect(answer.error?.code).toBe(422)
    expect(Buffer.byteLength(text)).toBeLessThan(ANSWER_MAX_BYTES)
    const listed = answer.error!.details!.fields!.length
    expect(listed).toBeGreaterThanOrEqual(1)
    expect(listed).toBeLessThanOrEqual(10)
    // 20 000 unknown keys and the required username and email.
    expect(listed + answer.error!.details!.moreFields!).toBe(20_002)
    const { line } = await recordOf("many-keys")
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(RECORD_MAX_BYTES)
  })
})
