/**
 * SQLite statements run in executor processes (layers/db/Sqlite.ts), never on the thread that
 * serves connections, and query_timeout ends them. Against the real daemon process on a SQLite
 * file of many pages:
 * - the daemon runs one writer and two reader executors, its own child processes;
 * - while one client's slow statement runs (a `count` with many `contains` conditions, alone or in
 *   a `transaction`), another client's getCapabilities and read by id are answered within their
 *   usual latency (measured in the same test, before) plus 100 ms;
 * - a statement longer than query_timeout answers 504 at the bound, and by then the process that
 *   ran it is gone (its CPU is free); the daemon keeps serving, and a write after it succeeds;
 * - a write transaction cut by query_timeout is rolled back, nothing acknowledged is lost, and the
 *   next write succeeds at once (the killed writer's lock is released with it);
 * - a write killed in the middle (an updateMany whose changes already spilled into the WAL) leaves
 *   none of its changes, and the database stays consistent, readable and writable;
 * - executors do not outlive the daemon: they exit when it stops, and when it is killed.
 */
import * as fs from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Answer, type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { executorSet, running, sqliteExecutors } from "../support/processes.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, writeConfig } from "../support/services.js"
import { seedPages, slowFilter, Sqlite } from "../support/slowSqlite.js"
import { untilTrue } from "../support/wait.js"

const QUERY_TIMEOUT = 3000
const PAGES = 60_000

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

describe("sqlite: statements run in executor processes, and query_timeout ends them", () => {
  let db: TestDatabase
  let daemon: Daemon
  let a: Client
  let b: Client
  let filename: string
  let pageId: string

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    filename = (db.databaseConfig.connection as { filename: string }).filename
    // The slow count scores far above the default limit since patterns are costed
    // (docs/security.md); this test is about a statement that runs long once admitted. Realtime
    // off: with it, updateMany first reads the rows it will change (their before images), and the
    // statement the timeout kills would be that read, not the write this test needs.
    const config = {
      ...daemonConfig(db),
      performance: { query_timeout: QUERY_TIMEOUT, max_query_complexity: 100_000 },
      realtime: { enabled: false }
    }
    daemon = await startDaemon([`--config=${writeConfig(config)}`], { timeoutMs: 90_000 })
    a = await connect(daemon.port, serviceAuth)
    b = await connect(daemon.port, serviceAuth)
    const page = await b.call("create", ["PageView", { slug: "template", title: "Template", level: 1, layout: {} }])
    expect(page.error).toBeUndefined()
    pageId = (page.result as { id: string }).id
    seedPages(filename, PAGES)
  }, 120_000)

  afterAll(async () => {
    await a?.close()
    await b?.close()
    if (daemon !== undefined) {
      const pid = daemon.process.pid!
      const executors = sqliteExecutors(pid)
      expect(await daemon.stop()).toBe(0)
      // A daemon that stops closes its executors.
      for (const e of executors) expect(running(e.pid), `executor ${e.pid} (${e.role})`).toBe(false)
    }
    await db?.drop()
  })

  /** The executors now: one writer and two readers once the daemon has replaced any it killed. */
  const fullSet = () => executorSet(daemon.process.pid!)

  /** Latencies of `n` getCapabilities and `n` reads by id, alternating, on client b. */
  const sample = async (n: number) => {
    const caps: Array<number> = []
    const reads: Array<number> = []
    for (let i = 0; i < n; i++) {
      let t0 = performance.now()
      expect((await b.call("getCapabilities")).error).toBeUndefined()
      caps.push(performance.now() - t0)
      t0 = performance.now()
      const r = await b.call("read", ["PageView", pageId])
      reads.push(performance.now() - t0)
      expect((r.result as { slug: string }).slug).toBe("template")
    }
    return { caps, reads }
  }

  it("runs one writer and two readers as child processes of the daemon", async () => {
    const executors = await fullSet()
    for (const e of executors) expect(e.ppid).toBe(daemon.process.pid)
  })

  const slowRequests = [
    { kind: "a count", role: "reader", send: () => a.call("count", ["PageView", slowFilter]) },
    {
      kind: "a transaction of counts",
      role: "writer",
      send: () => a.call("transaction", [Array.from({ length: 20 }, () => ({ method: "count", params: ["PageView", slowFilter] }))])
    }
  ]

  it.each(slowRequests)(
    "while $kind runs, another client is answered within its usual latency + 100 ms; past query_timeout it answers 504 and its $role process is gone",
    async ({ send, role }) => {
      const executors = await fullSet()
      await sample(5) // warm up
      const before = await sample(15)
      const started = performance.now()
      let slowAnswer: { answer: Answer; ms: number } | undefined
      const slow = send().then((answer) => (slowAnswer = { answer, ms: performance.now() - started }))
      const during = await sample(15)
      // Every sample was taken while the slow statement ran.
      expect(slowAnswer, "the slow request must outlast the samples").toBeUndefined()
      const report = `before: caps ${median(before.caps).toFixed(1)} ms, read ${median(before.reads).toFixed(1)} ms; during: caps ${during.caps.map((x) => x.toFixed(0)).join(" ")}, reads ${during.reads.map((x) => x.toFixed(0)).join(" ")}`
      expect(median(during.caps), report).toBeLessThan(median(before.caps) + 100)
      expect(median(during.reads), report).toBeLessThan(median(before.reads) + 100)
      // The statement outlasts query_timeout: 504 at the bound, not when the statement ends ...
      await slow
      expect(slowAnswer!.answer.error?.code, JSON.stringify(slowAnswer!.answer)).toBe(504)
      expect(slowAnswer!.ms).toBeGreaterThanOrEqual(QUERY_TIMEOUT)
      expect(slowAnswer!.ms).toBeLessThan(QUERY_TIMEOUT + 1500)
      // ... and when the 504 comes, the process that ran the statement is gone: exactly that one.
      const gone = executors.filter((e) => !running(e.pid))
      expect(gone.map((e) => e.role)).toEqual([role])
      // It was replaced; the daemon keeps serving, writes included.
      const now = await fullSet()
      expect(now.map((e) => e.pid)).not.toContain(gone[0]!.pid)
      expect((await a.call("getCapabilities")).error).toBeUndefined()
      const written = await a.call("create", ["PageView", { slug: `after-${Date.now()}`, title: "After", level: 1, layout: {} }])
      expect(written.error).toBeUndefined()
      expect((await b.call("read", ["PageView", (written.result as { id: string }).id])).result).toMatchObject({ title: "After" })
    }
  )

  it("a write transaction cut by query_timeout is rolled back; acknowledged writes stay; the next write succeeds at once", async () => {
    const writer = (await fullSet()).find((e) => e.role === "writer")!
    const kept = await a.call("create", ["PageView", { slug: "acknowledged", title: "Kept", level: 1, layout: {} }])
    expect(kept.error).toBeUndefined()
    const started = performance.now()
    const cut = await a.call("transaction", [
      [
        { method: "create", params: ["PageView", { slug: "rolled-back", title: "Gone", level: 1, layout: {} }] },
        ...Array.from({ length: 20 }, () => ({ method: "count", params: ["PageView", slowFilter] }))
      ]
    ])
    expect(cut.error?.code, JSON.stringify(cut)).toBe(504)
    expect(performance.now() - started).toBeLessThan(QUERY_TIMEOUT + 1500)
    // The writer that held the transaction (and SQLite's write lock) is gone with its statement:
    // the first write after it succeeds, without waiting for the 20 counts it had to run.
    expect(running(writer.pid)).toBe(false)
    const t0 = performance.now()
    const after = await b.call("create", ["PageView", { slug: `written-${Date.now()}`, title: "Later", level: 1, layout: {} }])
    expect(after.error, JSON.stringify(after)).toBeUndefined()
    expect(performance.now() - t0).toBeLessThan(QUERY_TIMEOUT)
    expect((await b.call("findByField", ["PageView", "slug", "rolled-back"])).result ?? null).toBeNull()
    expect((await b.call("read", ["PageView", (kept.result as { id: string }).id])).result).toMatchObject({ title: "Kept" })
  })

  it("a write killed in the middle leaves none of its changes; the database stays consistent and writable", async () => {
    const writer = (await fullSet()).find((e) => e.role === "writer")!
    const check = new Sqlite(filename)
    try {
      check.pragma("busy_timeout = 10000")
      // An empty WAL first (everything checkpointed into the file): whatever is in it afterwards
      // was written by the statement that is killed.
      expect(check.pragma("wal_checkpoint(TRUNCATE)")).toEqual([{ busy: 0, log: 0, checkpointed: 0 }])
      const wal = `${filename}-wal`
      expect(fs.statSync(wal).size).toBe(0)
      const marker = `killed-${"x".repeat(2000)}`
      // One UPDATE over every page (the last condition matches them all, after the slow ones),
      // each row growing by 2 KB: far more than SQLite's page cache, so its changes spill into
      // the WAL before it could commit.
      const started = performance.now()
      const cut = await a.call("updateMany", [
        "PageView",
        { OR: [...slowFilter.OR, { title: { contains: "page" } }] },
        { description: marker }
      ])
      expect(cut.error?.code, JSON.stringify(cut)).toBe(504)
      expect(performance.now() - started).toBeLessThan(QUERY_TIMEOUT + 1500)
      expect(running(writer.pid)).toBe(false)
      // It was writing: uncommitted frames reached the WAL.
      expect(fs.statSync(wal).size).toBeGreaterThan(1_000_000)
      // Another connection sees none of them, and finds the file consistent.
      expect(check.prepare("SELECT count(*) AS n FROM page_views WHERE description = ?").get(marker)).toEqual({ n: 0 })
      expect(check.prepare("SELECT count(*) AS n FROM page_views").get()!.n).toBeGreaterThan(PAGES)
      expect(check.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }])
    } finally {
      check.close()
    }
    // The daemon reads and writes at once.
    const written = await b.call("create", ["PageView", { slug: `after-kill-${Date.now()}`, title: "After kill", level: 1, layout: {} }])
    expect(written.error, JSON.stringify(written)).toBeUndefined()
    const updated = await b.call("update", ["PageView", pageId, { description: "updated after the kill" }])
    expect(updated.error, JSON.stringify(updated)).toBeUndefined()
    expect((await b.call("read", ["PageView", pageId])).result).toMatchObject({ slug: "template", description: "updated after the kill" })
  })
})

describe("sqlite: executors do not outlive the daemon", () => {
  it("when the daemon is killed (SIGKILL), its executors exit by themselves", async () => {
    const db = await createDatabase("sqlite")
    try {
      const d = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`])
      const executors = await executorSet(d.process.pid!)
      expect(await d.stop("SIGKILL")).toBeNull()
      await untilTrue("every executor has exited", () => executors.every((e) => !running(e.pid)), 15_000)
    } finally {
      await db.drop()
    }
  })
})
