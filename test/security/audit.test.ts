/**
 * The audit log of a real daemon process, on SQLite and PostgreSQL, with all three sinks on
 * (file, stdout, SQL table). One daemon per dialect runs a fixed script of requests — a
 * success, failures (422, 404, 409), a denial (403 for a session principal of role "user"),
 * an authentication failure (401) — carrying secrets (the service token, a session token, a
 * Session's `token`, a Credential's `passwordHash`, a bogus token). Then:
 * - one JSON line per request with the fields, right for each kind of outcome;
 * - the file is 0600 in a folder the daemon created 0700 (path relative to the config file);
 * - no secret appears in the file, on stdout or in the audit table;
 * - stdout and the SQL table carry the same records as the file.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { AuditRecord } from "../../src/services/AuditLog.js"
import { type Answer, type Daemon, openSocket, type RawSocket, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  type DialectName,
  SERVICE_TOKEN,
  serviceAuth,
  skipDialect,
  tempDir,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { auditDaemonConfig, query, readAudit, stdoutAudit, waitFor } from "./audit-helpers.js"

const TABLE = "audit_records"

const dialects: Array<{ dialect: DialectName; skip: boolean }> = [
  { dialect: "sqlite", skip: false },
  { dialect: "postgresql", skip: await skipDialect("postgresql") }
]

describe.each(dialects)("audit records on $dialect", ({ dialect, skip }) => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  let dir = ""
  let auditFile = ""
  const sockets: Array<RawSocket> = []
  const answers = new Map<string, Answer>()
  let file: Array<AuditRecord> = []
  let fileText = ""
  let stdout: Array<AuditRecord> = []
  let stdoutText = ""
  let table: Array<AuditRecord> = []
  let tableText = ""

  const suffix = randomBytes(4).toString("hex")
  const username = `alice_${suffix}`
  const sessionToken = `session-${randomBytes(24).toString("hex")}`
  const bogusToken = `bogus-${randomBytes(24).toString("hex")}`
  const passwordHash = `$argon2id$v=19$m=65536,t=3,p=4$${randomBytes(18).toString("base64")}`
  let userId = ""

  /** Sends one request with a chosen id on `s` and waits for its answer. */
  const ask = async (
    s: RawSocket,
    id: string,
    method: string,
    params: ReadonlyArray<unknown>,
    auth: Record<string, unknown> = serviceAuth
  ) => {
    s.send(JSON.stringify({ id, method, params, auth }))
    const a = await s.next()
    expect(a.id).toBe(id)
    answers.set(id, a)
    return a
  }
  const lineOf = (id: string) => {
    const found = file.filter((r) => r.requestId === id)
    expect(found.length, `audit lines for request ${id}`).toBe(1)
    return found[0]!
  }

  beforeAll(async () => {
    if (skip) return
    db = await createDatabase(dialect)
    dir = tempDir(`audit-${dialect}`)
    auditFile = path.join(dir, "audit", "audit.log")
    expect(fs.existsSync(path.dirname(auditFile))).toBe(false)
    const config = auditDaemonConfig(db, {
      // Relative: resolved against the configuration file's folder.
      audit_log_path: "audit/audit.log",
      audit: { stdout: true, sql_table: TABLE },
      auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], failed_auth: { burst: 1000, per_minute: 1000 } }
    })
    daemon = await startDaemon([`--config=${writeConfig(config, dir)}`])
    const sys = await openSocket(daemon.port)
    sockets.push(sys)

    const user = await ask(sys, "create-user", "create", ["User", { username, email: `${username}@example.com`, role: "user" }])
    userId = (user.result as { id: string }).id
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString()
    await ask(sys, "create-session", "create", ["Session", { userId, token: sessionToken, expiresAt }])
    await ask(sys, "create-credential", "create", ["Credential", { username, passwordHash }])
    await ask(sys, "create-invalid", "create", ["PageView", { slug: "Not A Slug!", title: "t", level: 9, layout: {} }])
    await ask(sys, "delete-missing", "delete", ["PageView", "00000000-0000-4000-8000-00000000abcd"])
    // A failing write whose input carries a sensitive value (the session token again).
    await ask(sys, "create-session-dup", "create", ["Session", { userId, token: sessionToken, expiresAt }])
    await ask(sys, "read-credential", "findByField", ["Credential", "username", username])

    const asUser = await openSocket(daemon.port)
    sockets.push(asUser)
    await ask(asUser, "user-list-credential", "list", ["Credential"], { token: sessionToken, user_id: userId })
    await ask(sys, "bogus-token", "count", ["PageView"], { token: bogusToken, user_id: "nobody" })

    // The SQL sink inserts in the background: wait (bounded) for every record to arrive.
    const expected = answers.size + 1 // and the daemon's start record
    const rows = await waitFor(`${expected} rows in ${TABLE}`, async () => {
      const r = await query(db!, `SELECT record FROM ${TABLE} ORDER BY id`)
      return r.length >= expected ? r : undefined
    })
    table = rows.map((r) => (typeof r.record === "string" ? (JSON.parse(r.record) as AuditRecord) : (r.record as AuditRecord)))
    tableText = rows.map((r) => (typeof r.record === "string" ? r.record : JSON.stringify(r.record))).join("\n")

    // SIGTERM flushes the file (reads' records are not awaited) and ends stdout.
    expect(await daemon.stop()).toBe(0)
    fileText = fs.readFileSync(auditFile, "utf8")
    file = readAudit(auditFile)
    stdoutText = daemon.output()
    stdout = stdoutAudit(stdoutText)
  })

  afterAll(async () => {
    for (const s of sockets) await s.close().catch(() => undefined)
    await daemon?.stop()
    await db?.drop()
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
  })

  it.skipIf(skip)("the answers are the expected ones", () => {
    const code = (id: string) => answers.get(id)?.error?.code
    expect(answers.get("create-user")?.result).toMatchObject({ id: expect.any(String) })
    expect(answers.get("create-session")?.result).toMatchObject({ id: expect.any(String) })
    expect(answers.get("create-credential")?.result).toMatchObject({ id: expect.any(String) })
    expect(code("create-invalid")).toBe(422)
    expect(code("delete-missing")).toBe(404)
    expect(code("create-session-dup")).toBe(409)
    expect(code("user-list-credential")).toBe(403)
    expect(code("bogus-token")).toBe(401)
  })

  it.skipIf(skip)("one JSON line per request, plus the daemon's start record", () => {
    expect(file.length).toBe(answers.size + 1)
    for (const id of answers.keys()) lineOf(id)
    const start = file.filter((r) => r.requestId === null)
    expect(start.map((r) => r.operation)).toEqual(["daemon.start"])
    for (const r of file) {
      expect(Number.isNaN(Date.parse(r.timestamp))).toBe(false)
      expect(typeof r.durationMs).toBe("number")
      expect(r.durationMs).toBeGreaterThanOrEqual(0)
    }
  })

  it.skipIf(skip)("success: a create names the new record's id", () => {
    const r = lineOf("create-user")
    expect(r).toMatchObject({ userId: "tests", role: "system", operation: "create", entity: "User", recordIds: [userId], success: true })
    expect(r.errorCode).toBeUndefined()
    expect(r.error).toBeUndefined()
    expect(r.traceId).toMatch(/^[0-9a-f]{16,32}$/)
    expect(r.remoteAddress).toMatch(/127\.0\.0\.1/)
    const cred = lineOf("create-credential")
    expect(cred.recordIds).toEqual([(answers.get("create-credential")?.result as { id: string }).id])
    // Distinct requests, distinct traces.
    expect(new Set(file.filter((x) => x.traceId !== undefined).map((x) => x.traceId)).size).toBe(
      file.filter((x) => x.traceId !== undefined).length
    )
  })

  it.skipIf(skip)("failures: error code, error name and details (422, 404, 409)", () => {
    expect(lineOf("create-invalid")).toMatchObject({
      userId: "tests",
      role: "system",
      operation: "create",
      entity: "PageView",
      success: false,
      errorCode: 422,
      error: "VALIDATION_ERROR",
      details: { fields: expect.arrayContaining([expect.objectContaining({ field: expect.any(String), error: expect.any(String) })]) }
    })
    expect(lineOf("delete-missing")).toMatchObject({
      operation: "delete",
      entity: "PageView",
      success: false,
      errorCode: 404,
      error: "NOT_FOUND",
      details: { entity: "PageView" }
    })
    expect(lineOf("create-session-dup")).toMatchObject({
      operation: "create",
      entity: "Session",
      success: false,
      errorCode: 409,
      error: "CONFLICT",
      details: { entity: "Session", fields: ["token"] }
    })
    // A failed create names no record; a failed read, update or delete names the one it aimed at.
    for (const id of ["create-invalid", "create-session-dup"]) expect(lineOf(id).recordIds).toBeUndefined()
    expect(lineOf("delete-missing").recordIds).toEqual(["00000000-0000-4000-8000-00000000abcd"])
  })

  it.skipIf(skip)("denial: a session principal of role user reading Credential gets 403, with its user id and role", () => {
    expect(lineOf("user-list-credential")).toMatchObject({
      userId,
      role: "user",
      operation: "list",
      entity: "Credential",
      success: false,
      errorCode: 403,
      error: "FORBIDDEN"
    })
  })

  it.skipIf(skip)("authentication failure: 401 with no user", () => {
    expect(lineOf("bogus-token")).toMatchObject({
      userId: null,
      role: null,
      operation: "count",
      entity: "PageView",
      success: false,
      errorCode: 401,
      error: "UNAUTHORIZED"
    })
  })

  it.skipIf(skip)("file 0600 in a folder created 0700", () => {
    expect(fs.statSync(path.dirname(auditFile)).mode & 0o777).toBe(0o700)
    expect(fs.statSync(auditFile).mode & 0o777).toBe(0o600)
  })

  it.skipIf(skip)("no secret in the file, on stdout or in the audit table", () => {
    const secrets = { serviceToken: SERVICE_TOKEN, sessionToken, bogusToken, passwordHash }
    for (const [where, text] of Object.entries({ file: fileText, stdout: stdoutText, table: tableText })) {
      expect(text.length, where).toBeGreaterThan(0)
      for (const [name, secret] of Object.entries(secrets)) expect(text.includes(secret), `${name} in ${where}`).toBe(false)
    }
  })

  it.skipIf(skip)("stdout carries the same records as the file", () => {
    expect(stdout).toEqual(file)
  })

  it.skipIf(skip)("the SQL table carries the same records as the file", () => {
    const key = (r: AuditRecord) => `${String(r.requestId)}|${r.operation}`
    const byKey = (rs: Array<AuditRecord>) => [...rs].sort((a, b) => key(a).localeCompare(key(b)))
    expect(byKey(table)).toEqual(byKey(file))
  })
})
