/**
 * The audit journal on PostgreSQL (src/query/Journal.ts, layers/AuditLog.ts), with a real daemon:
 * - single-row writes and createMany commit their record with the write: the records count as `journaled`, not
 *   as fsynced (`ok`), each is in the file, and every journal row is gone once the file holds
 *   them; a write that fails leaves no row;
 * - a row left by a crash (committed write, record not yet in the file) is appended to the file
 *   at the next start, marked `recovered`, and removed;
 * - with `journal: false` every write waits for the file's fsync again.
 */
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { get, parseSamples } from "../ops/support.js"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, SERVICE_TOKEN, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { auditDaemonConfig, query, readAudit, waitFor } from "./audit-helpers.js"

const skip = await skipDialect("postgresql")
const JOURNAL = "dbal_audit_journal"
const REPLICA = `journal-${randomBytes(3).toString("hex")}`

const recordsBy = async (port: number): Promise<Map<string, number>> => {
  const samples = parseSamples((await get(port, "/metrics")).text)
  const out = new Map<string, number>()
  for (const result of ["ok", "journaled", "queued", "failed"])
    out.set(result, samples.get(`dbal_audit_records_total{result="${result}"}`) ?? 0)
  return out
}

describe.skipIf(skip)("the audit journal (PostgreSQL)", () => {
  let db: TestDatabase | undefined
  let dir = ""
  let auditFile = ""
  const daemons: Array<Daemon> = []

  const start = async (journal: boolean): Promise<Daemon> => {
    const config = auditDaemonConfig(
      db!,
      {
        audit_log_path: "audit/audit.log",
        audit: { journal },
        auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] }
      },
      { cluster: { replica_name: REPLICA } }
    )
    const d = await startDaemon([`--config=${writeConfig(config, dir)}`])
    daemons.push(d)
    return d
  }

  beforeAll(async () => {
    db = await createDatabase("postgresql")
    dir = tempDir("audit-journal")
    auditFile = path.join(dir, "audit", "audit.log")
  })

  afterAll(async () => {
    for (const d of daemons) await d.stop()
    await db?.drop()
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
  })

  it("single-row writes and createMany commit their record with the write; the rows go once the file holds the records", async () => {
    const daemon = await start(true)
    const client = await connect(daemon.port, serviceAuth)
    try {
      const before = await recordsBy(daemon.port)
      const slug = `j-${randomBytes(4).toString("hex")}`
      const created = (await client.call("create", ["PageView", { slug, title: "t", level: 1, layout: {} }])).result as { id: string }
      expect((await client.call("update", ["PageView", created.id, { title: "u" }])).result).toMatchObject({ id: created.id, title: "u" })
      const other = (await client.call("create", ["PageView", { slug: `${slug}-2`, title: "t", level: 1, layout: {} }])).result as {
        id: string
      }
      expect((await client.call("delete", ["PageView", other.id])).result).toBe(true)
      const many = [1, 2, 3].map((i) => ({ slug: `${slug}-m${i}`, title: "t", level: 1, layout: {} }))
      expect((await client.call("createMany", ["PageView", many])).result).toBe(3)
      // Failures: a duplicate slug (409) and a missing row (404) commit nothing, so leave no row.
      expect((await client.call("create", ["PageView", { slug, title: "t", level: 1, layout: {} }])).error?.code).toBe(409)
      expect((await client.call("update", ["PageView", randomUUID(), { title: "x" }])).error?.code).toBe(404)

      const after = await recordsBy(daemon.port)
      expect(after.get("journaled")! - before.get("journaled")!).toBe(5)
      expect(after.get("ok")! - before.get("ok")!).toBe(0)
      await waitFor("the journal to be settled", async () =>
        (await query(db!, `SELECT count(*)::int AS n FROM ${JOURNAL}`))[0]!.n === 0 ? true : undefined
      )
      const file = readAudit(auditFile)
      for (const op of ["create", "update", "delete", "createMany"]) {
        expect(file.some((r) => r.operation === op && r.success && r.entity === "PageView")).toBe(true)
      }
      expect(file.filter((r) => r.recordIds?.includes(created.id) && r.success).map((r) => r.operation)).toEqual(["create", "update"])
    } finally {
      await client.close()
      await daemon.stop()
    }
  })

  it("a row a crash left is appended to the file at the next start, marked recovered, and removed", async () => {
    const key = randomUUID()
    const recordId = randomUUID()
    const requestId = `lost-${randomBytes(4).toString("hex")}`
    const record = JSON.stringify({
      timestamp: new Date().toISOString(),
      replica: REPLICA,
      requestId,
      userId: null,
      role: "service",
      operation: "update",
      entity: "PageView"
    })
    await query(
      db!,
      `INSERT INTO ${JOURNAL} (key, replica, record_id, record) VALUES ('${key}', '${REPLICA}', '${recordId}', '${record.replaceAll("'", "''")}')`
    )
    const daemon = await start(true)
    try {
      const recovered = readAudit(auditFile).filter((r) => r.requestId === requestId)
      expect(recovered).toHaveLength(1)
      expect(recovered[0]).toMatchObject({ operation: "update", entity: "PageView", recordIds: [recordId], success: true, recovered: true })
      expect((await query(db!, `SELECT count(*)::int AS n FROM ${JOURNAL} WHERE key = '${key}'`))[0]!.n).toBe(0)
    } finally {
      await daemon.stop()
    }
  })

  it("with journal: false, writes wait for the file's fsync", async () => {
    const daemon = await start(false)
    const client = await connect(daemon.port, serviceAuth)
    try {
      const before = await recordsBy(daemon.port)
      await client.call("create", ["PageView", { slug: `n-${randomBytes(4).toString("hex")}`, title: "t", level: 1, layout: {} }])
      const after = await recordsBy(daemon.port)
      expect(after.get("ok")! - before.get("ok")!).toBe(1)
      expect(after.get("journaled")! - before.get("journaled")!).toBe(0)
    } finally {
      await client.close()
      await daemon.stop()
    }
  })
})
