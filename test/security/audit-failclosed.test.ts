/**
 * Fail closed, on SQLite and PostgreSQL: with security.audit_log_path at /dev/full every write
 * to the log fails with ENOSPC. A create is then refused with 503 and nothing reaches the
 * database (counted directly, not through the daemon); a read is answered with
 * on_failure_reads "allow" and refused with 503 with "deny". A control daemon on a writable
 * log proves the same create succeeds (the refusal is the audit log's doing).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, type DialectName, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { auditDaemonConfig, query } from "./audit-helpers.js"

const dialects: Array<{ dialect: DialectName; skip: boolean }> = [
  { dialect: "sqlite", skip: false },
  { dialect: "postgresql", skip: await skipDialect("postgresql") }
]

const pageView = (slug: string) => ["PageView", { slug, title: slug, level: 1, layout: { columns: 1 } }]
const countRows = async (db: TestDatabase) => Number((await query(db, "SELECT COUNT(*) AS n FROM page_views"))[0]!.n)

describe.each(dialects)("audit log unwritable on $dialect", ({ dialect, skip }) => {
  let db: TestDatabase | undefined
  const daemons: Array<Daemon> = []
  const clients: Array<Client> = []
  const dirs: Array<string> = []

  const start = async (security: Record<string, unknown>) => {
    const dir = tempDir(`audit-full-${dialect}`)
    dirs.push(dir)
    const d = await startDaemon([`--config=${writeConfig(auditDaemonConfig(db!, security), dir)}`])
    daemons.push(d)
    const c = await connect(d.port, serviceAuth)
    clients.push(c)
    return { d, c, dir }
  }

  beforeAll(async () => {
    if (skip) return
    db = await createDatabase(dialect)
  })

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined)
    for (const d of daemons) await d.stop()
    await db?.drop()
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  })

  it.skipIf(skip)("/dev/full, on_failure_reads allow: writes 503 and nothing in the database; reads answered", async () => {
    const { d, c } = await start({ audit_log_path: "/dev/full", audit: { on_failure_reads: "allow" } })
    expect(await countRows(db!)).toBe(0)
    // The very first request of the daemon is a write: it must not run either.
    for (const [i, method] of ["create", "create", "upsert", "createMany"].entries()) {
      const params =
        method === "upsert"
          ? ["PageView", "slug", `full-upsert-${i}`, { title: "t", level: 1, layout: {} }, { title: "u" }]
          : method === "createMany"
            ? ["PageView", [pageView(`full-many-${i}`)[1]]]
            : pageView(`full-${i}`)
      const a = await c.call(method, params)
      expect(a.error?.code, `${method} #${i}: ${JSON.stringify(a)}`).toBe(503)
      expect(a.result).toBeUndefined()
    }
    expect(await countRows(db!)).toBe(0)
    const list = await c.call("list", ["PageView"])
    expect(list.error).toBeUndefined()
    expect(list.result).toMatchObject({ data: [], total: 0 })
    const count = await c.call("count", ["PageView"])
    expect(count.result).toBe(0)
    // Still refused after the reads (which could not be recorded either).
    expect((await c.call("create", pageView("full-after-reads"))).error?.code).toBe(503)
    expect(await countRows(db!)).toBe(0)
    expect(d.output()).toMatch(/audit/)
  })

  it.skipIf(skip)("/dev/full, on_failure_reads deny: reads 503 too", async () => {
    const { c } = await start({ audit_log_path: "/dev/full", audit: { on_failure_reads: "deny" } })
    const read = await c.call("list", ["PageView"])
    expect(read.error?.code).toBe(503)
    expect((await c.call("count", ["PageView"])).error?.code).toBe(503)
    expect((await c.call("create", pageView("deny-1"))).error?.code).toBe(503)
    expect(await countRows(db!)).toBe(0)
  })

  it.skipIf(skip)("control: the same create on a writable log succeeds and is audited", async () => {
    const { c, dir } = await start({ audit_log_path: "audit/audit.log" })
    const a = await c.call("create", pageView("control-1"))
    expect(a.error).toBeUndefined()
    expect(await countRows(db!)).toBe(1)
    const id = (a.result as { id: string }).id
    // A write is answered only once its record is on disk: no wait needed.
    const lines = fs.readFileSync(path.join(dir, "audit", "audit.log"), "utf8")
    expect(lines).toContain(id)
  })
})
