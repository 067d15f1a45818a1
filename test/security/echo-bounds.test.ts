/**
 * The bounds on echoed client strings, as pure functions (issue 14, finding 2): `clip`, the
 * details of `toWireError` (src/Errors.ts), `boundAuditRecord` (src/services/AuditLog.ts), and the
 * JSON log lines (layers/Logging.ts). The wire and the audit file are tested end to end in
 * audit-echo.test.ts; here the worst cases: strings that JSON-escape to six bytes a character,
 * surrogate pairs at the cut, thousands of issues, many record ids, long strings in errors, causes
 * and annotations of log lines.
 */
import { Cause, Effect, Logger } from "effect"
import { describe, expect, it } from "vitest"
import { jsonWithTrace, LOG_STRING_MAX_CHARS } from "../../layers/Logging.js"
import { clip, NAME_MAX_CHARS, TEXT_MAX_CHARS } from "../../src/Echo.js"
import {
  BadRequest,
  Conflict,
  FieldIssue,
  Forbidden,
  Internal,
  toWireError,
  TransactionOpFailed,
  ValidationFailed
} from "../../src/Errors.js"
import { type AuditRecord, boundAuditRecord } from "../../src/services/AuditLog.js"

const MiB = 1024 * 1024
const LONG = "x".repeat(MiB)
/** Characters JSON writes as \u00XX: six bytes each. */
const ESCAPED = "\u0001".repeat(MiB)
const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v))
const answerBytes = (e: Parameters<typeof toWireError>[0]) => bytes({ id: "x".repeat(256), error: toWireError(e) })

describe("clip", () => {
  it("keeps short strings, cuts long ones to the limit with the count of what was cut", () => {
    expect(clip("abc", 128)).toBe("abc")
    expect(clip("a".repeat(128), 128)).toBe("a".repeat(128))
    const c = clip(LONG, 128)
    expect(c.length).toBeLessThanOrEqual(128)
    const m = /^(x+)…\(\+(\d+) chars\)$/.exec(c)!
    expect(m[1]!.length + Number(m[2])).toBe(MiB)
    expect(clip(c, 128)).toBe(c)
  })

  it("never cuts a surrogate pair in two", () => {
    const c = clip("😀".repeat(1000), 128)
    expect(c.toWellFormed()).toBe(c)
    expect(c.startsWith("😀")).toBe(true)
  })
})

describe("error details", () => {
  it("cut a long field path and a sentence that quotes it", () => {
    const w = toWireError(
      new ValidationFailed({ fields: [new FieldIssue({ field: `data.${LONG}`, error: `${LONG} is not a unique field of User` })] })
    )
    const issue = (w.details!.fields as Array<{ field: string; error: string }>)[0]!
    expect(issue.field.length).toBeLessThanOrEqual(NAME_MAX_CHARS)
    expect(issue.field.startsWith("data.xxx")).toBe(true)
    expect(issue.error.length).toBeLessThanOrEqual(TEXT_MAX_CHARS)
    expect(issue.error).toMatch(/…\(\+\d+ chars\)$/)
  })

  it.each([
    ["a BadRequest reason", new BadRequest({ reason: LONG })],
    ["a Forbidden reason of escaped characters", new Forbidden({ reason: `cannot set role '${ESCAPED}'` })],
    ["a Conflict's fields", new Conflict({ entity: LONG, fields: Array.from({ length: 1000 }, () => ESCAPED), reason: LONG })],
    [
      "20 000 issues",
      new ValidationFailed({
        fields: Array.from({ length: 20_000 }, (_, i) => new FieldIssue({ field: `data.f${i}`, error: "unknown field of User" }))
      })
    ],
    [
      "ten issues of escaped characters",
      new ValidationFailed({ fields: Array.from({ length: 10 }, () => new FieldIssue({ field: ESCAPED, error: ESCAPED })) })
    ],
    [
      "a failed transaction operation",
      new TransactionOpFailed({ index: 3, error: ValidationFailed.one(`ops[3].data.${ESCAPED}`, `unknown field of ${LONG}`) })
    ]
  ])("%s: the answer stays under 4 KiB", (_, e) => {
    expect(answerBytes(e)).toBeLessThan(4096)
  })

  it("list the first issues and count the others", () => {
    const w = toWireError(
      new ValidationFailed({
        fields: Array.from({ length: 25 }, (_, i) => new FieldIssue({ field: `data.f${i}`, error: "unknown field of User" }))
      })
    )
    expect((w.details!.fields as Array<{ field: string }>).map((f) => f.field)).toEqual(Array.from({ length: 10 }, (_, i) => `data.f${i}`))
    expect(w.details!.moreFields).toBe(15)
  })

  it("are unchanged when small", () => {
    const w = toWireError(new TransactionOpFailed({ index: 1, error: ValidationFailed.one("data.title", "is required") }))
    expect(w).toEqual({
      code: 422,
      message: "Validation failed",
      details: { fields: [{ field: "data.title", error: "is required" }], operation: 1, rolledBack: true }
    })
  })
})

const baseRecord: AuditRecord = {
  timestamp: "2026-12-02T01:00:00.000Z",
  replica: "r1",
  requestId: "req-1",
  userId: "u1",
  role: "user",
  operation: "list",
  entity: "User",
  success: false,
  errorCode: 422,
  error: "VALIDATION_ERROR",
  details: { fields: [{ field: "filter.x", error: "unknown field of User" }] },
  durationMs: 1.5,
  remoteAddress: "127.0.0.1"
}

describe("audit records", () => {
  it("a small record is written as it is", () => {
    const { record, json } = boundAuditRecord(baseRecord, 8192)
    expect(record).toEqual(baseRecord)
    expect(json).toBe(JSON.stringify(baseRecord))
  })

  it("client strings are cut: request id to 256, names and ids to 128, sentences in details to 512", () => {
    const { record, json } = boundAuditRecord(
      {
        ...baseRecord,
        requestId: LONG,
        userId: LONG,
        role: LONG,
        entity: LONG,
        recordIds: [LONG],
        details: { reason: LONG, fields: [{ field: LONG, error: LONG }] }
      },
      8192
    )
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(8192)
    expect((record.requestId as string).length).toBeLessThanOrEqual(256)
    for (const s of [record.userId!, record.role!, record.entity!, record.recordIds![0]!])
      expect(s.length).toBeLessThanOrEqual(NAME_MAX_CHARS)
    expect((record.details!.reason as string).length).toBeLessThanOrEqual(TEXT_MAX_CHARS)
    expect(record.summarized).toBeUndefined()
  })

  it("a record over the cap keeps identity and outcome, the first ids that fit, and says what it was", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`)
    const entry: AuditRecord = { ...baseRecord, operation: "transaction", success: true, recordIds: ids }
    const { record, json } = boundAuditRecord(entry, 8192)
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(8192)
    expect(JSON.parse(json)).toEqual(record)
    const { recordIds, summarized, ...identity } = record
    const { recordIds: _all, ...expected } = entry
    expect(identity).toEqual(expected)
    expect(summarized).toEqual({ originalBytes: bytes(entry), recordIdCount: 1000, detailsDropped: false })
    expect(recordIds!.length).toBeGreaterThan(100)
    expect(recordIds).toEqual(ids.slice(0, recordIds!.length))
  })

  it("strings of escaped characters everywhere still fit the least cap (4096)", () => {
    const entry: AuditRecord = {
      ...baseRecord,
      requestId: ESCAPED,
      traceId: ESCAPED,
      userId: ESCAPED,
      role: ESCAPED,
      entity: ESCAPED,
      error: ESCAPED,
      remoteAddress: ESCAPED,
      recordIds: Array.from({ length: 100 }, () => ESCAPED),
      details: { reason: ESCAPED, fields: Array.from({ length: 10 }, () => ({ field: ESCAPED, error: ESCAPED })) }
    }
    const { record, json } = boundAuditRecord(entry, 4096)
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(4096)
    expect(record.summarized).toMatchObject({ recordIdCount: 100, detailsDropped: true })
    expect(record.operation).toBe("list")
    expect(record.errorCode).toBe(422)
  })
})

describe("log lines", () => {
  const capture = () => {
    const lines: Array<string> = []
    const layer = Logger.replace(
      Logger.defaultLogger,
      Logger.map(jsonWithTrace, (line) => {
        lines.push(line)
      })
    )
    return { lines, layer }
  }

  it("cut every string: message parts, errors and their causes, the cause, annotations", async () => {
    const { lines, layer } = capture()
    await Effect.runPromise(
      Effect.gen(function* () {
        yield* Effect.logError("request failed unexpectedly", LONG, new Error(LONG), new Internal({ cause: new Error(LONG) }), {
          value: LONG
        })
        yield* Effect.logError("failed", Cause.die(new Error(LONG)))
      }).pipe(Effect.annotateLogs("client", LONG), Effect.provide(layer))
    )
    expect(lines.length).toBe(2)
    for (const line of lines) {
      expect(line.length).toBeLessThan(8 * LOG_STRING_MAX_CHARS)
      expect(line).not.toContain("x".repeat(LOG_STRING_MAX_CHARS))
      expect(line).toMatch(/…\(\+\d+ chars\)/)
      expect(() => JSON.parse(line)).not.toThrow()
    }
    const first = JSON.parse(lines[0]!) as { message: Array<unknown>; annotations: Record<string, string> }
    expect(first.message[0]).toBe("request failed unexpectedly")
    expect(first.annotations.client!.length).toBeLessThanOrEqual(LOG_STRING_MAX_CHARS)
  })

  it("leave short lines as they were", async () => {
    const { lines, layer } = capture()
    await Effect.runPromise(Effect.logWarning("inside", { n: 1 }).pipe(Effect.provide(layer)))
    expect(JSON.parse(lines[0]!)).toMatchObject({ message: ["inside", { n: 1 }], logLevel: "WARN" })
  })
})
