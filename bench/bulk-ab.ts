/**
 * createMany of 100 PageView records through two (or more) builds of the daemon against raw pg's
 * one named multi-row INSERT of the same 100 rows (bench/run.ts's "Bulk (100)"), in alternated
 * rounds on one PostgreSQL database: for comparing a change of createMany with the code before it.
 *
 * Each package folder given (this one by default) is compiled (tsc, into <folder>/.read-ab-build)
 * and runs its own daemon, set up as `npm run bench` sets it up (bench/daemon-config.ts): a
 * session user whose rule has a row filter (isActive: true), rate limit on, the audit file with
 * fsync and the journal. Each round runs, per side in alternating order, BULK_ITER createMany(100)
 * one at a time, then deletes the side's rows and vacuums the table (outside the timing). Prints
 * each round's p50 and the serving process's CPU time per createMany (/proc/<pid>/stat; less
 * sensitive to a busy machine than the latency), and their medians with each p50 over raw pg's.
 *
 *   npx tsx bench/bulk-ab.ts [folder...]
 *   BULK_ROUNDS (6), BULK_ITER (60), BULK_WARMUP (100), BULK_FSYNC_<n>=0 (the n-th folder's daemon
 *   without the audit file's fsync, hence without the journal: what they cost), BULK_PROFILE=1 (daemons under --cpu-prof
 *   into /tmp/bulk-ab-prof; then `npx tsx bench/profile.ts /tmp/bulk-ab-prof`)
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { connect, root } from "../test/support/daemon.js"
import { cpuOf, median, ok, startSides } from "./ab-support.js"
import { writeBenchDaemonConfig, writeBenchRules } from "./daemon-config.js"
import { createDatabase, tempDir } from "../test/support/services.js"

const env = (k: string, d: number) => (process.env[k] === undefined || process.env[k] === "" ? d : Number(process.env[k]))
const ROUNDS = env("BULK_ROUNDS", 6)
const ITER = env("BULK_ITER", 60)
const WARMUP = env("BULK_WARMUP", 100)
const PROFILE = process.env.BULK_PROFILE === "1"
const POOL = 8
const folders = process.argv.length > 2 ? process.argv.slice(2).map((f) => path.resolve(f)) : [root]

interface Side {
  readonly name: string
  /** The serving process (its CPU measured): the daemon's; undefined for raw pg (this process). */
  readonly pid: number | undefined
  readonly insert: () => Promise<void>
  readonly p50: Array<number>
  /** CPU time per createMany of the serving process, µs. */
  readonly cpu: Array<number>
}

let seq = 0
/** bench/run.ts's pageData for bulk rows (is_active: the column's default, true). */
const pageData = (i: number) => ({
  slug: `bulk/${++seq}-${i}`,
  title: `bench page ${i}`,
  level: 1 + (i % 5),
  layout: { blocks: [{ type: "text", n: i }] }
})
const bulkItems = () => Array.from({ length: 100 }, (_, i) => pageData(i))

const db = await createDatabase("postgresql")
const dir = tempDir("bulk-ab")
const cleanups: Array<() => Promise<unknown>> = []
try {
  const rulesFile = writeBenchRules(dir)
  const { daemons, user, pgUrl } = await startSides(
    db,
    folders,
    (i) =>
      writeBenchDaemonConfig({
        db,
        dir: path.join(dir, `d${i}`),
        rulesFile,
        pool: POOL,
        auditFsync: process.env[`BULK_FSYNC_${i}`] !== "0"
      }),
    () => ({ profileDir: PROFILE ? "/tmp/bulk-ab-prof" : undefined }),
    cleanups
  )
  const rawPool = new pg.Pool({ connectionString: pgUrl, max: POOL })
  cleanups.push(() => rawPool.end())
  await rawPool.query("ANALYZE")
  // Raw pg: bench/run.ts's one named 100-row INSERT (the columns the daemon inserts, no RETURNING).
  const cols = (
    await rawPool.query<{ column_name: string; column_default: string | null }>(
      "SELECT column_name, column_default FROM information_schema.columns WHERE table_name = 'page_views' ORDER BY ordinal_position"
    )
  ).rows.filter((r) => !(r.column_default ?? "").startsWith("nextval"))
  const names = cols.map((c) => c.column_name)
  const placeholders = (row: number) => `(${names.map((_, i) => `$${row * names.length + i + 1}`).join(", ")})`
  const insert100 = `INSERT INTO page_views (${names.map((n) => `"${n}"`).join(", ")}) VALUES ${Array.from({ length: 100 }, (_, i) => placeholders(i)).join(", ")}`
  const valueOf = (d: ReturnType<typeof pageData>, column: string, now: string): unknown => {
    switch (column) {
      case "id":
        return randomUUID()
      case "created_at":
      case "updated_at":
        return now
      case "slug":
        return d.slug
      case "title":
        return d.title
      case "level":
        return d.level
      case "layout":
        return JSON.stringify(d.layout)
      case "is_active":
        return true
      default:
        return null
    }
  }
  const rawInsert = async () => {
    const now = new Date().toISOString()
    const r = await rawPool.query({
      name: "raw_insert_100",
      text: insert100,
      values: bulkItems().flatMap((d) => names.map((c) => valueOf(d, c, now)))
    })
    if (r.rowCount !== 100) throw new Error(`raw INSERT inserted ${r.rowCount} rows`)
  }
  const sides: Array<Side> = [{ name: "raw", pid: undefined, insert: rawInsert, p50: [], cpu: [] }]
  for (const d of daemons) {
    const c = await connect(d.daemon.port)
    cleanups.push(() => c.close())
    await ok(c, "authenticate", [{ token: user.token, user_id: user.userId }])
    sides.push({
      name: d.name,
      pid: d.daemon.process.pid!,
      cpu: [],
      insert: async () => {
        const n = await ok(c, "createMany", ["PageView", bulkItems()])
        if (n !== 100) throw new Error(`createMany answered ${JSON.stringify(n)}`)
      },
      p50: []
    })
  }
  const removeBulkRows = async () => {
    await rawPool.query(`DELETE FROM page_views WHERE slug LIKE 'bulk/%'`)
    await rawPool.query(`VACUUM page_views`)
  }
  const batch = async (s: Side, n: number) => {
    const xs: Array<number> = []
    const cpu0 = cpuOf(s.pid)
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await s.insert()
      xs.push((performance.now() - t) * 1000)
    }
    const cpu = (cpuOf(s.pid) - cpu0) / n
    await removeBulkRows()
    return { p50: median(xs), cpu }
  }

  console.log(`warming up (${WARMUP} each) ...`)
  for (const s of sides) await batch(s, WARMUP)
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse()
    for (const s of order) {
      const b = await batch(s, ITER)
      s.p50.push(b.p50)
      s.cpu.push(b.cpu)
    }
    console.log(
      `round ${r + 1}: ` + sides.map((s) => `${s.name} ${s.p50.at(-1)!.toFixed(0)} µs (CPU ${s.cpu.at(-1)!.toFixed(0)} µs)`).join(" | ")
    )
  }
  const raw = median(sides[0]!.p50)
  console.log(
    `\nmedians of ${ROUNDS} rounds of ${ITER} createMany(100) (load average ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}):`
  )
  console.log("| side | p50 | × raw pg | median of the rounds' ratios | CPU per createMany (raw: this process, client included) |")
  console.log("|---|---:|---:|---:|---:|")
  for (const s of sides) {
    const ratios = s.p50.map((p, i) => p / sides[0]!.p50[i]!)
    console.log(
      `| ${s.name} | ${median(s.p50).toFixed(0)} µs | ×${(median(s.p50) / raw).toFixed(2)} | ×${median(ratios).toFixed(2)} | ${median(s.cpu).toFixed(0)} µs |`
    )
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => undefined)
  await db.drop().catch(() => undefined)
  fs.rmSync(dir, { recursive: true, force: true })
}
