/**
 * Durability under SIGKILL, on SQLite and PostgreSQL: the daemon runs as a process (fsync on,
 * the default); 8 WebSocket clients with 4 requests in flight each create PageViews in a loop;
 * when 300 creates have been acknowledged, with requests still in flight, the process is
 * SIGKILLed. Then the audit file and the database are read directly: every acknowledged id
 * must be in the database and have a success audit line with that recordId.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, type DialectName, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { auditDaemonConfig, query, readAudit } from "./audit-helpers.js"

const CLIENTS = 8
const PER_CLIENT_IN_FLIGHT = 4
const KILL_AFTER_ACKS = 300

const dialects: Array<{ dialect: DialectName; skip: boolean }> = [
  { dialect: "sqlite", skip: false },
  { dialect: "postgresql", skip: await skipDialect("postgresql") }
]

describe.each(dialects)("audit durability under SIGKILL on $dialect", ({ dialect, skip }) => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  let dir = ""
  const clients: Array<Client> = []

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined)
    await daemon?.stop("SIGKILL")
    await db?.drop()
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
  })

  it.skipIf(skip)("every acknowledged create is in the database and has a success audit line", async () => {
    db = await createDatabase(dialect)
    dir = tempDir(`audit-kill-${dialect}`)
    const auditFile = path.join(dir, "audit", "audit.log")
    daemon = await startDaemon([`--config=${writeConfig(auditDaemonConfig(db, { audit_log_path: auditFile, audit: { fsync: true } }), dir)}`])
    for (let i = 0; i < CLIENTS; i++) clients.push(await connect(daemon.port, serviceAuth))

    const acked = new Set<string>()
    let sent = 0
    let answered = 0
    let refused = 0
    let inFlightAtKill = -1
    let killed: Promise<number | null> | undefined
    const run = randomBytes(3).toString("hex")

    const loop = async (c: Client, lane: string) => {
      for (let n = 0; killed === undefined; n++) {
        sent++
        const a = await c.call("create", ["PageView", { slug: `k-${run}-${lane}-${n}`, title: "kill", level: 1, layout: { n } }]).catch(() => undefined)
        if (a === undefined) return // the connection died with the daemon
        answered++
        const id = (a.result as { id?: unknown } | undefined)?.id
        if (typeof id === "string") acked.add(id)
        else refused++
        if (acked.size >= KILL_AFTER_ACKS && killed === undefined) {
          inFlightAtKill = sent - answered
          killed = daemon!.stop("SIGKILL")
        }
      }
    }
    await Promise.all(clients.flatMap((c, ci) => Array.from({ length: PER_CLIENT_IN_FLIGHT }, (_, li) => loop(c, `${ci}-${li}`))))
    const exit = await killed
    expect(exit).toBeNull() // killed by the signal, not exited
    expect(daemon.process.signalCode).toBe("SIGKILL")
    expect(refused).toBe(0)
    // The kill came while requests were outstanding.
    expect(inFlightAtKill).toBeGreaterThan(0)

    const audit = readAudit(auditFile)
    const audited = new Set(audit.filter((r) => r.success && r.operation === "create" && r.entity === "PageView").flatMap((r) => r.recordIds ?? []))
    const rows = await query(db, "SELECT id FROM page_views")
    const inDb = new Set(rows.map((r) => String(r.id)))
    const missingInAudit = [...acked].filter((id) => !audited.has(id))
    const missingInDb = [...acked].filter((id) => !inDb.has(id))
    console.log(
      `[${dialect}] SIGKILL after ${acked.size} acknowledged creates (${sent} sent, ${inFlightAtKill} in flight at the kill): ` +
        `${acked.size - missingInAudit.length} of them in the audit file (${audited.size} success lines), ${acked.size - missingInDb.length} in the database (${inDb.size} rows)`
    )
    expect(missingInAudit).toEqual([])
    expect(missingInDb).toEqual([])
    expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER_ACKS)
  })
})
