/**
 * Reads by id through two (or more) builds of the daemon and the transport floor, in alternated
 * rounds on one PostgreSQL database: for comparing a change of the read path with the code before
 * it on this shared machine, where only alternated rounds in one run are comparable.
 *
 * Each package folder given (this one by default; another: a `git archive` of an earlier commit
 * with node_modules linked in) is compiled (tsc, into <folder>/.read-ab-build) and runs its
 * own daemon, set up as `npm run bench` sets it up: a session user (role god) whose rule has a row
 * filter, rate limit on, audit log with fsync. Sides: `raw` (pg in this process, the floor's
 * statement), `floor` (bench/floor-server.mjs) and each daemon. Each round measures, side by side
 * in alternating order: the p50 of AB_ITER sequential reads from one client, then reads/s and the
 * server process's CPU per read with 32 clients for AB_SECONDS. Prints each round and the medians.
 *
 *   npx tsx bench/read-ab.ts [folder...]
 *   AB_ROUNDS (6), AB_ITER (2000), AB_SECONDS (3), AB_CLIENTS (32), AB_POOL (8 connections per side), AB_PROFILE=1 (daemons under
 *   --cpu-prof into /tmp/read-ab-prof, the floor server into /tmp/read-ab-prof/floor), AB_CONFIG (a JSON object merged into each daemon's
 *   `performance` section, e.g. '{"read_batch":true}'), AB_CONFIG_<n> (the same for the n-th folder only),
 *   AB_FLAGS_<n> (node flags for the n-th folder's daemon, e.g. "--single-threaded-gc")
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { connect, root } from "../test/support/daemon.js"
import { cpuOf, median, ok, startSides } from "./ab-support.js"
import { writeBenchDaemonConfig, writeBenchRules } from "./daemon-config.js"
import { createDatabase, tempDir } from "../test/support/services.js"

const env = (k: string, d: number) => (process.env[k] === undefined || process.env[k] === "" ? d : Number(process.env[k]))
const ROUNDS = env("AB_ROUNDS", 6)
const ITER = env("AB_ITER", 2000)
const SECONDS = env("AB_SECONDS", 3)
const CLIENTS = env("AB_CLIENTS", 32)
const PROFILE = process.env.AB_PROFILE === "1"
/** Connections of each side's pool (every side has its own; PostgreSQL's max_connections is shared). */
const POOL = env("AB_POOL", 8)
const folders = process.argv.length > 2 ? process.argv.slice(2).map((f) => path.resolve(f)) : [root]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Side {
  readonly name: string
  /** The process serving the reads (CPU measured), undefined for `raw`. */
  readonly pid: number | undefined
  /** A reader per lane; lane 0 is the latency client. */
  readonly readers: Array<(id: string) => Promise<void>>
  readonly p50: Array<number>
  readonly rps: Array<number>
  readonly cpu: Array<number>
}

const db = await createDatabase("postgresql")
const dir = tempDir("read-ab")
const cleanups: Array<() => Promise<unknown>> = []
try {
  const rulesFile = writeBenchRules(dir)
  const extra = (i: number) => ({
    ...(JSON.parse(process.env.AB_CONFIG ?? "{}") as object),
    ...(JSON.parse(process.env[`AB_CONFIG_${i}`] ?? "{}") as object)
  })
  const configFor = (i: number) =>
    writeBenchDaemonConfig({ db, dir: path.join(dir, `d${i}`), rulesFile, pool: POOL, performance: extra(i) })
  const { daemons, user, pgUrl } = await startSides(
    db,
    folders,
    configFor,
    (i) => ({
      flags: (process.env[`AB_FLAGS_${i}`] ?? "").split(" ").filter((f) => f !== ""),
      profileDir: PROFILE ? "/tmp/read-ab-prof" : undefined
    }),
    cleanups
  )
  const rawPool = new pg.Pool({ connectionString: pgUrl, max: POOL })
  cleanups.push(() => rawPool.end())
  const ids = (await rawPool.query<{ id: string }>("SELECT id FROM page_views WHERE is_active")).rows.map((r) => r.id)
  await rawPool.query("ANALYZE")
  const columns = (
    await rawPool.query<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'page_views' ORDER BY ordinal_position"
    )
  ).rows.map((r) => `"${r.column_name}"`)
  const floorSql = `SELECT ${columns.join(", ")} FROM page_views WHERE id = $1 AND is_active = true`

  const floorArgs = [
    ...(PROFILE ? ["--cpu-prof", "--cpu-prof-dir=/tmp/read-ab-prof/floor"] : []),
    path.join(root, "bench", "floor-server.mjs")
  ]
  const floor = spawn(process.execPath, [...floorArgs, pgUrl, String(POOL), floorSql], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  cleanups.push(async () => floor.kill("SIGTERM"))
  const floorPort = await new Promise<number>((resolve, reject) => {
    floor.once("exit", (code) => reject(new Error(`the floor server exited (${code})`)))
    floor.stdout!.once("data", (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port))
  })

  /** 503s (the shared PostgreSQL out of connections): counted and printed, not fatal. */
  const failures: Array<string> = []
  const wsReaders = async (port: number, authenticate: boolean) => {
    const out: Array<(id: string) => Promise<void>> = []
    for (let i = 0; i < CLIENTS; i++) {
      const c = await connect(port)
      cleanups.push(() => c.close())
      if (authenticate) await ok(c, "authenticate", [{ token: user.token, user_id: user.userId }])
      out.push(async (id) => {
        const a = await c.call("read", ["PageView", id])
        if (a.error?.code === 503) failures.push(`${port}: ${JSON.stringify(a.error)}`)
        else if (a.error !== undefined || a.result === null) throw new Error(`read of ${id} failed: ${JSON.stringify(a)}`)
      })
    }
    return out
  }
  const rawReader = async (id: string) => {
    const r = await rawPool.query({ name: "floor_read", text: floorSql, values: [id] })
    if (r.rows.length !== 1) throw new Error(`raw read of ${id} found ${r.rows.length} rows`)
  }
  const sides: Array<Side> = [
    { name: "raw", pid: undefined, readers: Array.from({ length: CLIENTS }, () => rawReader), p50: [], rps: [], cpu: [] },
    { name: "floor", pid: floor.pid!, readers: await wsReaders(floorPort, false), p50: [], rps: [], cpu: [] }
  ]
  for (const d of daemons)
    sides.push({ name: d.name, pid: d.daemon.process.pid!, readers: await wsReaders(d.daemon.port, true), p50: [], rps: [], cpu: [] })

  let k = 0
  const nextId = () => ids[(k = (k + 104_729) % ids.length)]!
  const latency = async (s: Side) => {
    const xs: Array<number> = []
    for (let i = 0; i < ITER; i++) {
      const id = nextId()
      const t = performance.now()
      await s.readers[0]!(id)
      xs.push((performance.now() - t) * 1000)
    }
    return median(xs)
  }
  const throughput = async (s: Side) => {
    let stop = false
    let counting = false
    let done = 0
    const loops = s.readers.map(async (read, lane) => {
      let j = lane * 7919
      while (!stop) {
        await read(ids[(j = (j + 104_729) % ids.length)]!)
        if (counting) done++
      }
    })
    await sleep(300)
    counting = true
    const t = performance.now()
    const cpu0 = cpuOf(s.pid)
    await sleep(SECONDS * 1000)
    const elapsed = (performance.now() - t) / 1000
    const cpu = (cpuOf(s.pid) - cpu0) / 1e6
    const n = done
    counting = false
    stop = true
    await Promise.all(loops)
    return { rps: n / elapsed, cpuPerRead: (cpu * 1e6) / Math.max(1, n) }
  }

  console.log("warming up ...")
  for (const s of sides) for (let i = 0; i < 3000; i++) await s.readers[0]!(nextId())
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse()
    for (const s of order) s.p50.push(await latency(s))
    for (const s of order) {
      const t = await throughput(s)
      s.rps.push(t.rps)
      s.cpu.push(t.cpuPerRead)
    }
    console.log(
      `round ${r + 1}: ` +
        sides
          .map((s) => `${s.name} p50 ${s.p50.at(-1)!.toFixed(0)} µs, ${s.rps.at(-1)!.toFixed(0)}/s, ${s.cpu.at(-1)!.toFixed(0)} µs CPU`)
          .join(" | ")
    )
  }
  const raw = median(sides[0]!.p50)
  const floorSide = sides[1]!
  const floorAdded = median(floorSide.p50) - raw
  console.log(`\nmedians of ${ROUNDS} rounds (${ITER} reads for p50; ${CLIENTS} clients × ${SECONDS} s for reads/s and CPU):`)
  console.log("| side | p50 | added over raw | × floor's added | reads/s | % of floor | CPU per read | × floor's |")
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|")
  for (const s of sides) {
    const added = median(s.p50) - raw
    console.log(
      `| ${s.name} | ${median(s.p50).toFixed(0)} µs | ${s === sides[0] ? "—" : `+${added.toFixed(0)} µs`} | ${s.name === "raw" || s === floorSide ? "—" : (added / floorAdded).toFixed(2)} | ${median(s.rps).toFixed(0)} | ${((100 * median(s.rps)) / median(floorSide.rps)).toFixed(0)} % | ${median(s.cpu).toFixed(0)} µs | ${s.pid === undefined ? "—" : (median(s.cpu) / median(floorSide.cpu)).toFixed(2)} |`
    )
  }
  if (failures.length > 0) console.log(`${failures.length} reads answered 503, e.g. ${failures[0]}`)
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => undefined)
  await db.drop().catch(() => undefined)
  fs.rmSync(dir, { recursive: true, force: true })
}
