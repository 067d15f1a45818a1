/**
 * Single-row writes (create, update and delete by id) through two (or more) builds of the daemon
 * and through raw pg, in alternated rounds on one PostgreSQL database: for comparing a change of the
 * write path with the code before it on this shared machine (bench/read-ab.ts does the same for reads).
 *
 * Each package folder given (this one by default) is compiled (tsc, into <folder>/.read-ab-build)
 * and runs its own daemon, set up as `npm run bench` sets it up (daemon-config.ts: a session user
 * whose rule has the row filter isActive:true, rate limit on, audit file with fsync and the audit
 * journal). `raw` runs bench/run.ts's statements (named, on a pg.Pool in this process). Each round,
 * per side in alternating order: the p50 of AB_ITER sequential creates, then updates of seeded
 * pages, then deletes of the rows the creates made; before them reads by id, for what a write adds
 * beyond a read, and the daemon process's CPU per operation. Prints each round and the medians; the added
 * column is over raw's median; AB_PROFILE=1 runs the daemons under --cpu-prof into /tmp/write-ab-prof.
 *
 *   npx tsx bench/write-ab.ts [folder...]
 *   AB_ROUNDS (6), AB_ITER (500), AB_POOL (8), AB_PROFILE=1, AB_OPS (read,create,update,delete)
 */
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { connect, root } from "../test/support/daemon.js"
import { cpuOf, median, ok, startSides } from "./ab-support.js"
import { writeBenchDaemonConfig, writeBenchRules } from "./daemon-config.js"
import { createDatabase, tempDir } from "../test/support/services.js"

const env = (k: string, d: number) => (process.env[k] === undefined || process.env[k] === "" ? d : Number(process.env[k]))
const ROUNDS = env("AB_ROUNDS", 6)
const ITER = env("AB_ITER", 500)
const POOL = env("AB_POOL", 8)
const PROFILE = process.env.AB_PROFILE === "1"
const folders = process.argv.length > 2 ? process.argv.slice(2).map((f) => path.resolve(f)) : [root]

let seq = 0
const uniq = () => `${randomBytes(3).toString("hex")}-${(++seq).toString(36)}`
const pageData = (i: number) => ({
  slug: `w/${uniq()}`,
  title: `bench page ${i}`,
  level: 1 + (i % 5),
  layout: { blocks: [{ type: "text", n: i }] }
})

type Op = "read" | "create" | "update" | "delete"
/** AB_OPS: the operations timed (comma-separated; all by default; deletes need the creates). */
const OPS: ReadonlyArray<Op> = (process.env.AB_OPS ?? "read,create,update,delete").split(",") as Array<Op>

interface Side {
  readonly name: string
  readonly create: () => Promise<string>
  readonly update: (id: string) => Promise<unknown>
  readonly remove: (id: string) => Promise<unknown>
  readonly read: (id: string) => Promise<unknown>
  /** The daemon's process (its CPU per write is measured), undefined for raw. */
  readonly pid: number | undefined
  readonly p50: Record<Op, Array<number>>
  readonly cpu: Record<Op, Array<number>>
}

const db = await createDatabase("postgresql")
const dir = tempDir("write-ab")
const cleanups: Array<() => Promise<unknown>> = []
try {
  const rulesFile = writeBenchRules(dir)
  const { daemons, user, pgUrl } = await startSides(
    db,
    folders,
    (i) => writeBenchDaemonConfig({ db, dir: path.join(dir, `d${i}`), rulesFile, pool: POOL }),
    () => ({ profileDir: PROFILE ? "/tmp/write-ab-prof" : undefined }),
    cleanups
  )
  const rawPool = new pg.Pool({ connectionString: pgUrl, max: POOL })
  cleanups.push(() => rawPool.end())
  const ids = (await rawPool.query<{ id: string }>("SELECT id FROM page_views WHERE is_active")).rows.map((r) => r.id)
  await rawPool.query("ANALYZE")
  const cols = (
    await rawPool.query<{ column_name: string; data_type: string }>(
      "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'page_views' ORDER BY ordinal_position"
    )
  ).rows
  const q = (c: string) => `"${c}"`
  const all = cols.map((c) => q(c.column_name)).join(", ")
  const rawSql = {
    insert: `INSERT INTO page_views (${all}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(", ")}) RETURNING ${all}`,
    update: `UPDATE page_views SET title = $2, updated_at = $3 WHERE id = $1 AND is_active = true RETURNING ${all}`,
    delete: `DELETE FROM page_views WHERE id = $1 AND is_active = true`
  }
  const rawRow = (data: Record<string, unknown>): Array<unknown> => {
    const now = new Date().toISOString()
    const byColumn: Record<string, unknown> = {
      id: randomUUID(),
      slug: data.slug,
      title: data.title,
      level: data.level,
      layout: JSON.stringify(data.layout),
      is_active: true,
      created_at: now,
      updated_at: now
    }
    return cols.map((c) => byColumn[c.column_name] ?? null)
  }
  const rawOne = async (name: string, text: string, values: Array<unknown>) => {
    const r = await rawPool.query({ name, text, values })
    if (r.rowCount !== 1) throw new Error(`raw ${name} changed ${r.rowCount} rows`)
    return r
  }
  const newP50 = (): Record<Op, Array<number>> => ({ read: [], create: [], update: [], delete: [] })
  const readSql = `SELECT ${all} FROM page_views WHERE id = $1 AND is_active = true`
  const sides: Array<Side> = [
    {
      name: "raw",
      create: async () => (await rawOne("raw_insert", rawSql.insert, rawRow(pageData(1)))).rows[0].id as string,
      update: (id) => rawOne("raw_update", rawSql.update, [id, `t ${uniq()}`, new Date().toISOString()]),
      remove: (id) => rawOne("raw_delete", rawSql.delete, [id]),
      read: (id) => rawOne("raw_read", readSql, [id]),
      pid: undefined,
      p50: newP50(),
      cpu: newP50()
    }
  ]
  for (const d of daemons) {
    const c = await connect(d.daemon.port)
    cleanups.push(() => c.close())
    await ok(c, "authenticate", [{ token: user.token, user_id: user.userId }])
    sides.push({
      name: d.name,
      create: async () => ((await ok(c, "create", ["PageView", pageData(1)])) as { id: string }).id,
      update: (id) => ok(c, "update", ["PageView", id, { title: `t ${uniq()}` }]),
      remove: (id) => ok(c, "delete", ["PageView", id]),
      read: (id) => ok(c, "read", ["PageView", id]),
      pid: d.daemon.process.pid!,
      p50: newP50(),
      cpu: newP50()
    })
  }

  let k = 0
  const nextId = () => ids[(k = (k + 104_729) % ids.length)]!
  const timed = async (s: Side, op: Op, n: number, f: (i: number) => Promise<unknown>) => {
    const xs: Array<number> = []
    const cpu0 = s.pid === undefined ? 0 : cpuOf(s.pid)
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await f(i)
      xs.push((performance.now() - t) * 1000)
    }
    s.p50[op].push(median(xs))
    s.cpu[op].push(s.pid === undefined ? 0 : (cpuOf(s.pid) - cpu0) / n)
  }
  const round = async (s: Side, n: number) => {
    const made: Array<string> = []
    if (OPS.includes("read")) await timed(s, "read", n, () => s.read(nextId()))
    if (OPS.includes("create")) await timed(s, "create", n, async () => made.push(await s.create()))
    if (OPS.includes("update")) await timed(s, "update", n, () => s.update(nextId()))
    if (OPS.includes("delete")) await timed(s, "delete", n, () => s.remove(made.pop()!))
  }

  console.log("warming up ...")
  for (const s of sides) await round(s, 1000)
  for (const s of sides) {
    for (const op of OPS) {
      s.p50[op].length = 0
      s.cpu[op].length = 0
    }
  }
  await rawPool.query("VACUUM ANALYZE page_views")
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse()
    for (const s of order) await round(s, ITER)
    console.log(
      `round ${r + 1}: ` +
        sides.map((s) => `${s.name} ${OPS.map((op) => `${op[0]!.toUpperCase()} ${s.p50[op].at(-1)!.toFixed(0)}`).join(" ")}`).join(" | ")
    )
  }
  const raw = sides[0]!
  console.log(`\nmedians of ${ROUNDS} rounds (p50 of ${ITER} sequential writes each; added over raw):`)
  console.log("| side | op | p50 | added over raw | beyond read's added | daemon CPU per op |")
  console.log("|---|---|---:|---:|---:|---:|")
  for (const s of sides) {
    for (const op of OPS) {
      const added = median(s.p50[op]) - median(raw.p50[op])
      const readAdded = OPS.includes("read") ? median(s.p50.read) - median(raw.p50.read) : Number.NaN
      console.log(
        `| ${s.name} | ${op} | ${median(s.p50[op]).toFixed(0)} µs | ${s === raw ? "—" : `+${added.toFixed(0)} µs`} | ${s === raw || op === "read" ? "—" : `+${(added - readAdded).toFixed(0)} µs`} | ${s === raw ? "—" : `${median(s.cpu[op]).toFixed(0)} µs`} |`
      )
    }
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => undefined)
  await db.drop().catch(() => undefined)
  fs.rmSync(dir, { recursive: true, force: true })
}
