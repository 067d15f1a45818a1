/**
 * Audit retention never removes a file silently, and a record cannot grow past its cap (issue 14,
 * finding 2).
 * - A real daemon (SQLite) starts on an audit folder that holds a full live file and three rotated
 *   files, with `max_size_mb: 1, max_files: 1`: its first record rotates the live file, and the
 *   files beyond max_files are removed, each with a WARN log line naming it, and counted by
 *   `dbal_audit_files_deleted_total{reason="max_files"}` (its exposition passes promtool).
 * - A transaction of 100 creates makes a record over `max_record_bytes` (set to its least, 4096):
 *   it is summarized (its identity and outcome, the first ids that fit, the count and the original
 *   size).
 * - FileSink on its own: removal by age reports the file with reason max_age_days and counts it.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Metric } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { FileSink, type RemovalReason } from "../../layers/AuditLog.js"
import { auditFilesDeletedOf } from "../../src/Metrics.js"
import type { AuditRecord } from "../../src/services/AuditLog.js"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, requireServices, serviceAuth, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { get, parseSamples } from "../ops/support.js"
import { auditDaemonConfig, readAudit, waitFor } from "./audit-helpers.js"

const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8", timeout: 10_000 }).status === 0

describe("audit retention and record cap in a daemon (sqlite)", () => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  let auditDir = ""
  const rotated = ["audit.log.20260101T000000Z", "audit.log.20260102T000000Z", "audit.log.20260103T000000Z"]

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    const dir = tempDir("audit-retention")
    auditDir = path.join(dir, "audit")
    fs.mkdirSync(auditDir, { mode: 0o700 })
    // Three rotated files of past days (older first) and a live file at max_size_mb.
    rotated.forEach((name, i) => {
      const f = path.join(auditDir, name)
      fs.writeFileSync(f, `{"operation":"old ${i}"}\n`, { mode: 0o600 })
      const t = new Date(Date.now() - (10 - i) * 60_000)
      fs.utimesSync(f, t, t)
    })
    fs.writeFileSync(path.join(auditDir, "audit.log"), `${JSON.stringify({ operation: "filler", pad: "p".repeat(1024 * 1024) })}\n`, {
      mode: 0o600
    })
    const config = auditDaemonConfig(db, {
      audit_log_path: path.join(auditDir, "audit.log"),
      audit: { max_size_mb: 1, max_files: 1, max_record_bytes: 4096 }
    })
    daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { timeoutMs: 90_000 })
  }, 120_000)

  afterAll(async () => {
    await daemon?.stop()
  })

  it("removes the files beyond max_files, each with a WARN line naming it, and counts them", async () => {
    // daemon.start rotated the full live file: the newest rotated file is that one, the three older go.
    await waitFor("three WARN lines", () => (daemon!.output().match(/audit retention removed/g)?.length === 3 ? true : undefined))
    const warns = daemon!
      .output()
      .split("\n")
      .filter((l) => l.includes("audit retention removed"))
      .map((l) => JSON.parse(l) as { logLevel: string; message: string })
    for (const w of warns) expect(w.logLevel).toBe("WARN")
    for (const name of rotated) {
      expect(fs.existsSync(path.join(auditDir, name))).toBe(false)
      expect(warns.some((w) => w.message.includes(path.join(auditDir, name)) && w.message.includes("max_files=1"))).toBe(true)
    }
    const left = fs.readdirSync(auditDir).sort()
    expect(left.length).toBe(2)
    expect(left[0]).toBe("audit.log")
    expect(fs.readFileSync(path.join(auditDir, left[1]!), "utf8")).toContain('"operation":"filler"')

    const metrics = (await get(daemon!.port, "/metrics")).text
    expect(metrics).toContain("# TYPE dbal_audit_files_deleted_total counter")
    expect(parseSamples(metrics).get('dbal_audit_files_deleted_total{reason="max_files"}')).toBe(3)
    if (promtool || requireServices) {
      const r = spawnSync("promtool", ["check", "metrics"], { input: metrics, encoding: "utf8", timeout: 30_000 })
      expect(`${r.stdout}${r.stderr}`.trim(), "promtool's lint output").toBe("")
    }
  })

  it("summarizes a record larger than max_record_bytes, keeping the identity, outcome and first ids", async () => {
    const client = await connect(daemon!.port, serviceAuth)
    try {
      const suffix = randomBytes(4).toString("hex")
      const ops = Array.from({ length: 100 }, (_, i) => ({
        method: "create",
        params: ["User", { username: `bulk_${suffix}_${i}`, email: `bulk_${suffix}_${i}@example.com`, role: "user" }]
      }))
      const a = await client.call("transaction", [ops])
      expect(a.error, JSON.stringify(a.error)).toBeUndefined()
      const created = (a.result as Array<{ id: string }>).map((r) => r.id)
      const rec = await waitFor("the transaction's record", () =>
        readAudit(path.join(auditDir, "audit.log")).find((r) => r.operation === "transaction")
      )
      const line = fs
        .readFileSync(path.join(auditDir, "audit.log"), "utf8")
        .split("\n")
        .find((l) => l.includes('"operation":"transaction"'))!
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(4096)
      expect(rec).toMatchObject({ operation: "transaction", userId: "tests", success: true })
      const summary = (rec as AuditRecord).summarized!
      expect(summary.recordIdCount).toBe(100)
      // 100 ids of 36 characters: over 4096 bytes as written before.
      expect(summary.originalBytes).toBeGreaterThan(4096)
      expect(summary.detailsDropped).toBe(false)
      const ids = rec.recordIds!
      expect(ids.length).toBeGreaterThan(50)
      expect(ids.length).toBeLessThan(100)
      // The first ids, in order.
      expect(ids).toEqual(created.slice(0, ids.length))
    } finally {
      await client.close()
    }
  })
})

describe("FileSink retention by age", () => {
  it("reports each file removed by age and counts it", async () => {
    const dir = tempDir("audit-age")
    const file = path.join(dir, "audit.log")
    let now = Date.parse("2026-03-01T12:00:00Z")
    const removed: Array<{ file: string; reason: RemovalReason }> = []
    const counter = auditFilesDeletedOf("max_age_days")
    const before = (await Effect.runPromise(Metric.value(counter))).count
    const sink = new FileSink({
      file,
      fsync: false,
      maxBytes: 100,
      rotateDaily: false,
      maxFiles: 100,
      maxAgeDays: 7,
      now: () => now,
      onRemoved: (f, reason) => removed.push({ file: f, reason })
    })
    try {
      await sink.append(`${"a".repeat(80)}\n`)
      await sink.append(`${"b".repeat(80)}\n`) // rotates: one rotated file
      const [old] = fs.readdirSync(dir).filter((n) => n !== "audit.log")
      const aged = new Date(now - 8 * 86_400_000)
      fs.utimesSync(path.join(dir, old!), aged, aged)
      now += 1000
      await sink.append(`${"c".repeat(80)}\n`) // rotates again and prunes the aged file
      expect(fs.existsSync(path.join(dir, old!))).toBe(false)
      expect(removed).toEqual([{ file: path.join(dir, old!), reason: "max_age_days" }])
      expect((await Effect.runPromise(Metric.value(counter))).count).toBe(before + 1)
    } finally {
      await sink.close()
    }
  })
})
