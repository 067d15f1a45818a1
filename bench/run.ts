/**
 * `npm run bench`: issue 16's targets (bench/README.md: method and results) on the local
 * PostgreSQL, in one run, on a fresh database that is dropped at the end. Every side is measured
 * in the same rounds, in an order that rotates from round to round.
 *
 * Sides:
 * - raw pg: a plain pg.Pool (same pool size) in this process with NAMED prepared statements
 *   ({name, text, values}), not @effect/sql: read by id (with the user's row filter), INSERT …
 *   RETURNING, UPDATE … RETURNING, DELETE, the join's two statements, one 100-row INSERT.
 * - floor (bench/floor-server.mjs): a bare ws + pg server process that parses JSON, runs raw pg's
 *   read by id and answers JSON: reads only (latency, and throughput at 32 clients).
 * - daemon: a separate daemon process (bin/dbal-daemon.mjs) with a session token of a `god` user,
 *   access rules with a row filter on every PageView operation, rate limiting on (limits far
 *   above the load), and the audit file with fsync on; a real `ws` client per connection that
 *   authenticates once (`authenticate`), as the client library does.
 * - baseline (BENCH_BASELINE=<checkout>): a second daemon from another checkout, same
 *   configuration, in the latency rounds: before/after a change in one run.
 * - direct (BENCH_DIRECT=1): the daemon's Repository in-process through @effect/sql-pg, given the
 *   access decision the daemon computes for the benchmark user.
 *
 * Measures:
 * - Latency: SELECT (read by id), INSERT (create), UPDATE (update by id), DELETE (delete by id),
 *   JOIN (list ComponentHierarchy include ["page"], limit 20) and Bulk (createMany of 100), one
 *   request at a time; the median of the rounds' p50/p99; "added" = p50 over raw pg's.
 * - Placement (part of the floor): the raw pg and floor SELECT sides with every process of a read
 *   on one vCPU — this process (all threads, `taskset -a`; its affinity restored after each
 *   round), a second bare server started pinned, and the PostgreSQL backends of both sides' pools
 *   (pinned before a connection serves a read; the pools are ended after the latency rounds) — in
 *   the same rounds: what the hop adds when no process has to be woken on another vCPU. Skipped,
 *   with the reason, without taskset, with fewer than 2 CPUs, or when a backend cannot be pinned.
 * - Throughput: reads by id with 1, 8, 32, 128 concurrent clients (one request in flight each),
 *   raw pg and daemon, the floor at 32; CPU per read of the serving process (/proc/<pid>/stat
 *   utime + stime for the daemon and the floor; this process's cpuUsage for raw pg).
 * - Memory: VmRSS of a fresh daemon idle and with 1,000 authenticated idle connections.
 * - Cache: a daemon with performance.cache_enabled: a repeated list (hit) against the same list
 *   after a write that invalidates it (miss).
 *
 * Environment: BENCH_ROUNDS (3), BENCH_ITER (300 single-row requests per round and side),
 * BENCH_ITER_JOIN (200), BENCH_ITER_BULK (30), BENCH_WARMUP (500 requests per operation and side
 * before the rounds; a tenth of it for Bulk), BENCH_TP_SECONDS (2),
 * BENCH_CONNS (1000), BENCH_POOL (20), BENCH_PROFILE=1 (daemon under node --cpu-prof, profile
 * summarized at the end; BENCH_PROFILE_DIR, default bench/results/profiles), BENCH_COMPILED=1
 * (the daemon compiled by tsc first), BENCH_NODE_FLAGS (the shipped launchers' NODE_OPTIONS,
 * --max-semi-space-size=4), BENCH_OUT (bench/results/latest.json), BENCH_AUDIT_FSYNC=0 (the
 * daemon's audit log without fsync: what the fsync costs; not the specification's setup),
 * BENCH_FLOOR_WARMUP (3000 reads per transport-floor side before its rounds), BENCH_PLACEMENT=0
 * (no placement measurement), BENCH_BASELINE, BENCH_DIRECT=1 (above).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime } from "effect"
import { execFileSync, execSync, spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { loadConfig } from "../layers/Config.js"
import { executeVia, queryVia, sqlClientLayer } from "../layers/Database.js"
import { fromConfig } from "../layers/Entities.js"
import type { EntityDef } from "../src/entity/Model.js"
import { validateCreate, validateCreateMany, validateUpdate } from "../src/entity/Validate.js"
import { encodeValue } from "../src/query/Codec.js"
import { parseFilter, TRUE } from "../src/query/Filter.js"
import { type Access, fullAccess, type Include, makeRepository } from "../src/query/Repository.js"
import type { DatabaseShape } from "../src/services/Database.js"
import { writeBenchDaemonConfig, writeBenchRules } from "./daemon-config.js"
import { type Client, connect, type Daemon, root, startDaemon } from "../test/support/daemon.js"
import { createDatabase, SERVICE_TOKEN, tempDir, unavailable } from "../test/support/services.js"
import { buildState } from "../bin/build-state.mjs"
import { pinBackendTo } from "./pin-backend.mjs"
import { formatSummary, summarize } from "./profile.js"

const env = (k: string, d: number) => {
  const v = process.env[k]
  return v === undefined || v === "" ? d : Number(v)
}
const ROUNDS = env("BENCH_ROUNDS", 3)
const ITER = env("BENCH_ITER", 300)
const ITER_JOIN = env("BENCH_ITER_JOIN", 200)
const ITER_BULK = env("BENCH_ITER_BULK", 30)
/** Requests per operation and side before the latency rounds (both sides measured warm, as the floor is). */
const WARMUP = env("BENCH_WARMUP", 500)
const TP_SECONDS = env("BENCH_TP_SECONDS", 2)
const CONNS = env("BENCH_CONNS", 1000)
const POOL = env("BENCH_POOL", 20)
const PROFILE = process.env.BENCH_PROFILE === "1"
const PROFILE_DIR = path.resolve(process.env.BENCH_PROFILE_DIR ?? path.join(root, "bench", "results", "profiles"))
/** Run the daemon from a fresh `tsc` build (what DBAL_COMPILED=1 runs) instead of through tsx. */
const COMPILED = process.env.BENCH_COMPILED === "1"
/** BENCH_AUDIT_FSYNC=0: the daemon's audit log without fsync, to see what the fsync costs (not the specification's setup). */
const AUDIT_FSYNC = process.env.BENCH_AUDIT_FSYNC !== "0"
/**
 * Reads per transport-floor side (raw pg, bare server; free and one-vCPU) before the rounds: a fresh
 * bare server's read path takes some 2,000 reads to be optimized by V8 (on one vCPU its p50 goes
 * from ~180 to ~55 µs over them), and the floor is what a warmed server costs.
 */
const FLOOR_WARMUP = env("BENCH_FLOOR_WARMUP", 3000)
/** BENCH_PLACEMENT=0: no placement measurement (the floor's SELECT sides with every process on one vCPU). */
const PLACEMENT = process.env.BENCH_PLACEMENT !== "0"
/**
 * Node flags of the daemon process: by default those the shipped launchers set in NODE_OPTIONS
 * (deploy/Dockerfile, the systemd unit, the Kubernetes Deployment); BENCH_NODE_FLAGS="" for none.
 */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "--max-semi-space-size=4").split(" ").filter((f) => f !== "")
const OUT = path.resolve(process.env.BENCH_OUT ?? path.join(root, "bench", "results", "latest.json"))
/** BENCH_DIRECT=1: also the daemon's Repository in-process through @effect/sql (the side the raw pg side replaced). */
const DIRECT = process.env.BENCH_DIRECT === "1"
const CLIENT_COUNTS = [1, 8, 32, 128] as const
/** The client count of issue 16's throughput and CPU targets; the floor server is measured there only. */
const FLOOR_CLIENTS = 32
/** Before issue 16 (bench/README.md, 2026-11-28: 120–124 MB, 4.6–4.9×): "no worse than today". */
const RSS_BEFORE_MB = 124
const CACHE_BEFORE = 4.6
const BULK = "Bulk (100)"
/**
 * The sides of a measurement: raw pg in this process, the floor server (reads by id only), the
 * daemon, and with BENCH_DIRECT=1 the Repository in-process.
 */
type Side = "raw" | "floor" | "daemon" | "baseline" | "direct"
type WriteSide = Exclude<Side, "floor">
/**
 * BENCH_BASELINE=<dir>: also a daemon started from another checkout (its bin/dbal-daemon.mjs, same
 * configuration, its own audit file), as side "baseline" in the latency rounds: before/after a
 * change, measured alternately in one run. Its node_modules must resolve (a symlink will do).
 */
const BASELINE =
  process.env.BENCH_BASELINE === undefined || process.env.BENCH_BASELINE === "" ? undefined : path.resolve(process.env.BENCH_BASELINE)
const ACTIVE_SIDES: ReadonlyArray<Side> = [
  "raw",
  "floor",
  "daemon",
  ...(BASELINE === undefined ? [] : (["baseline"] as const)),
  ...(DIRECT ? (["direct"] as const) : [])
]
/** The sides in round r's order: each round starts one side later, so no side always runs first. */
const rotated = <A>(sides: ReadonlyArray<A>, r: number): Array<A> => sides.map((_, i) => sides[(i + r) % sides.length]!)
const SEED_PAGES = 1000
const SEED_COMPONENTS = 200

// ---------------------------------------------------------------------------------------------
// helpers

const uptime = () => {
  try {
    return execSync("uptime", { encoding: "utf8" }).trim()
  } catch {
    return `load average: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(", ")}`
  }
}
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
/** Nearest-rank percentile of unsorted samples. */
const pct = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const rssKb = (pid: number): { rss: number; hwm: number } => {
  const text = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, "m").exec(text)?.[1] ?? Number.NaN)
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") }
}
const log = (s: string) => console.log(s)
let seq = 0
const uniq = () => `${randomBytes(3).toString("hex")}-${(++seq).toString(36)}`
const pageData = (i: number, prefix = "b") => ({
  slug: `${prefix}/${uniq()}`,
  title: `bench page ${i}`,
  level: 1 + (i % 5),
  layout: { blocks: [{ type: "text", n: i }] }
})

/** One call through the daemon; an error answer is a failure of the benchmark. */
const ok = async (c: Client, method: string, params: ReadonlyArray<unknown>): Promise<unknown> => {
  const a = await c.call(method, params)
  if (a.error !== undefined)
    throw new Error(`${method} failed: ${a.error.code} ${a.error.message} ${JSON.stringify(a.error.details ?? {})}`)
  return a.result
}
const right = <A, E>(e: Either.Either<A, E>): A => {
  if (Either.isLeft(e)) throw new Error(`invalid benchmark data: ${JSON.stringify(e.left)}`)
  return e.right
}

// placement: every process of a read pinned to one CPU (Linux, taskset)

const taskset = (args: ReadonlyArray<string>) => execFileSync("taskset", args, { stdio: ["ignore", "ignore", "pipe"] })
/** The first line of what a failed command or call says. */
const firstLine = (e: unknown): string => {
  const stderr = typeof e === "object" && e !== null && "stderr" in e ? String(e.stderr).trim() : ""
  return (stderr !== "" ? stderr : e instanceof Error ? e.message : String(e)).split("\n")[0]!
}
/** A CPU list as taskset and /proc print it ("0-1,3") as CPU numbers. */
const cpuList = (list: string): Array<number> =>
  list.split(",").flatMap((part) => {
    const [a, b = a] = part.split("-").map(Number)
    return Array.from({ length: b! - a! + 1 }, (_, i) => a! + i)
  })
const threadsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/task`).map(Number)
/** A thread's allowed CPUs (Cpus_allowed_list), or undefined when the thread is gone. */
const affinityOf = (pid: number, tid: number): string | undefined => {
  try {
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"))?.[1]
  } catch {
    return undefined
  }
}
/**
 * Pins every thread of this process to `cpu` (`taskset -a -pc`); the function returned puts each
 * thread back on the CPUs it had (a thread started while pinned: on the main thread's) and checks
 * that it did.
 */
const pinSelf = (cpu: number): (() => void) => {
  const pid = process.pid
  const before = new Map(threadsOf(pid).map((t) => [t, affinityOf(pid, t)] as const))
  const main = before.get(pid)!
  taskset(["-a", "-pc", String(cpu), String(pid)])
  return () => {
    const uniform = [...before.values()].every((a) => a === main)
    if (uniform) taskset(["-a", "-pc", main, String(pid)])
    else
      for (const t of threadsOf(pid)) {
        try {
          taskset(["-pc", before.get(t) ?? main, String(t)])
        } catch (e) {
          if (affinityOf(pid, t) !== undefined) throw e
        }
      }
    const left = threadsOf(pid).filter((t) => {
      const now = affinityOf(pid, t)
      return now !== undefined && now !== (before.get(t) ?? main)
    })
    if (left.length > 0) throw new Error(`placement: threads ${left.join(", ")} of the bench process kept a pinned CPU affinity`)
  }
}
// ---------------------------------------------------------------------------------------------
// setup

const why = await unavailable("postgresql")
if (why !== undefined) {
  console.error(`bench: ${why}`)
  process.exit(1)
}

/** What bin/dbal-daemon.mjs runs without BENCH_COMPILED: dist/ when it is a build of the current sources, else tsx. */
const runsCompiled = process.env.DBAL_COMPILED === "1" || (process.env.DBAL_COMPILED !== "0" && buildState(root).isFresh())
const loadStart = uptime()
const t0 = performance.now()
log(`dbal-daemon benchmark — ${os.cpus().length} CPUs, node ${process.version}`)
log(`uptime at start: ${loadStart}`)
log(
  `rounds ${ROUNDS}, ${ITER} single-row / ${ITER_JOIN} join / ${ITER_BULK} bulk requests per round and side, pool ${POOL}, daemon ${COMPILED ? "compiled (tsc)" : `by bin/dbal-daemon.mjs: ${runsCompiled ? "dist/ (a fresh build)" : "the sources through tsx (no fresh build in dist/)"}`}${PROFILE ? ", profiled (--cpu-prof)" : ""}`
)

const db = await createDatabase("postgresql")
const dir = tempDir("bench")
const daemons: Array<Daemon> = []
const clients: Array<Client> = []
let runtime: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown> | undefined

/** What ends before the rest of the cleanup (the placement's pinned server and pool). */
const teardowns: Array<() => Promise<void>> = []
const cleanup = async () => {
  for (const t of teardowns.splice(0)) await t().catch(() => undefined)
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)))
  for (const d of daemons.splice(0)) await d.stop().catch(() => null)
  if (runtime !== undefined) await runtime.dispose().catch(() => undefined)
  runtime = undefined
  await db.drop().catch((e: unknown) => console.error(`could not drop the benchmark database: ${String(e)}`))
  fs.rmSync(dir, { recursive: true, force: true })
}
process.once("SIGINT", () => void cleanup().finally(() => process.exit(130)))

try {
  const rulesFile = writeBenchRules(dir)
  const daemonConfigFor = (cacheEnabled: boolean, name: string): string =>
    writeBenchDaemonConfig({
      db,
      dir: path.join(dir, name),
      rulesFile,
      pool: POOL,
      auditFsync: AUDIT_FSYNC,
      performance: { cache_enabled: cacheEnabled }
    })
  const mainConfig = daemonConfigFor(false, "main")
  if (PROFILE) fs.mkdirSync(PROFILE_DIR, { recursive: true })
  const profiledBefore = PROFILE ? new Set(fs.readdirSync(PROFILE_DIR)) : new Set<string>()
  // BENCH_COMPILED=1: the sources compiled into bench/results/build (dist/ is left alone) and
  // started as bin/dbal-daemon.mjs starts dist/ (`main(argv)`).
  const buildDir = path.join(root, "bench", "results", "build")
  if (COMPILED) {
    log("compiling the daemon (tsc -p tsconfig.build.json) into bench/results/build ...")
    execSync(`npx tsc -p tsconfig.build.json --outDir ${JSON.stringify(buildDir)}`, { cwd: root, stdio: "inherit" })
  }
  const entry = COMPILED
    ? [
        "--input-type=module",
        "-e",
        `import(${JSON.stringify(`file://${path.join(buildDir, "app", "main.js")}`)}).then((m) => m.main(process.argv.slice(1)))`,
        "--"
      ]
    : [path.join(root, "bin", "dbal-daemon.mjs")]
  const start = (config: string, profile: boolean) =>
    startDaemon([`--config=${config}`], {
      command: [process.execPath, ...NODE_FLAGS, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : []), ...entry]
    })
  const daemon = await start(mainConfig, PROFILE)
  daemons.push(daemon)

  // The benchmark user and its session, created through the daemon with the service token.
  const service = await connect(daemon.port, { token: SERVICE_TOKEN, user_id: "bench" })
  clients.push(service)
  const user = (await ok(service, "create", [
    "User",
    { username: `bench_${randomBytes(4).toString("hex")}`, email: `bench_${randomBytes(4).toString("hex")}@example.com`, role: "god" }
  ])) as { id: string }
  const sessionToken = randomBytes(24).toString("hex")
  await ok(service, "create", [
    "Session",
    { userId: user.id, token: sessionToken, expiresAt: new Date(Date.now() + 86_400_000).toISOString() }
  ])
  const userAuth = { token: sessionToken, user_id: user.id }
  const openUser = async (port: number): Promise<Client> => {
    const c = await connect(port)
    clients.push(c)
    const r = (await ok(c, "authenticate", [userAuth])) as { role: string }
    if (r.role !== "god") throw new Error(`expected the god role, got ${r.role}`)
    return c
  }

  // Direct: the daemon's configuration, entities, pool and repository, in this process.
  const cfg = await Effect.runPromise(loadConfig(mainConfig, {}))
  const registry = await Effect.runPromise(fromConfig(cfg))
  runtime = ManagedRuntime.make(sqlClientLayer(cfg))
  const rt = runtime
  const sql = await rt.runPromise(SqlClient.SqlClient)
  // Statements through @effect/sql-pg, as the issue defines Direct DB (the daemon itself takes the
  // pool directly for statements outside transactions: layers/db/Pg.ts).
  const dbShape: DatabaseShape = {
    sql,
    dialect: "pg",
    adapter: "postgresql",
    ping: Effect.succeed(0),
    query: queryVia(undefined),
    execute: executeVia(undefined)
  }
  const repo = makeRepository(dbShape, registry, { retry: cfg.performance.retry, queryTimeoutMs: cfg.performance.query_timeout })
  const entity = (n: string): EntityDef => registry.entities.get(n)!
  const pv = entity("PageView")
  const ch = entity("ComponentHierarchy")
  const pvAccess: Access = { rowFilter: right(parseFilter(pv, { isActive: true })), readable: pv.exposed }
  const pageField = ch.fields.find((f) => f.foreignKey?.relation === "page")!
  const include: Include = {
    name: "page",
    field: pageField,
    target: pv,
    targetField: pv.byName.get(pageField.foreignKey!.field)!,
    access: pvAccess
  }
  const chAccess = fullAccess(ch)
  const run = <A, E>(e: Effect.Effect<A, E, SqlClient.SqlClient>) => rt.runPromise(e)

  // Seed: pages to read and update, components for the join.
  await run(
    repo.createMany(
      pv,
      right(
        validateCreateMany(
          pv,
          Array.from({ length: SEED_PAGES }, (_, i) => pageData(i))
        )
      ),
      TRUE
    )
  )
  const pageIds = (await run(sql<{ id: string }>`SELECT id FROM page_views WHERE is_active`)).map((r) => r.id)
  await run(
    repo.createMany(
      ch,
      right(
        validateCreateMany(
          ch,
          Array.from({ length: SEED_COMPONENTS }, (_, i) => ({
            [pageField.name]: pageIds[i % pageIds.length],
            componentType: "text",
            order: i,
            props: { i }
          }))
        )
      ),
      TRUE
    )
  )
  await run(sql`ANALYZE`)
  const scratchId = pageIds[0]!
  log(`seeded ${pageIds.length} pages and ${SEED_COMPONENTS} components; setup ${((performance.now() - t0) / 1000).toFixed(1)} s`)

  // Audit fsync cost on this disk (what every acknowledged write waits for).
  const fsyncUs = (() => {
    const f = path.join(dir, "fsync-probe")
    const fd = fs.openSync(f, "a")
    const xs: Array<number> = []
    const line = Buffer.from(`${"x".repeat(400)}\n`)
    for (let i = 0; i < 60; i++) {
      const t = performance.now()
      fs.writeSync(fd, line)
      fs.fdatasyncSync(fd)
      xs.push((performance.now() - t) * 1000)
    }
    fs.closeSync(fd)
    return { p50: pct(xs, 50), p99: pct(xs, 99) }
  })()
  log(`audit disk: write + fdatasync p50 ${fsyncUs.p50.toFixed(0)} µs, p99 ${fsyncUs.p99.toFixed(0)} µs`)

  // Transport floor: the daemon's read by id as plain SQL (its columns, its row filter), run by a
  // bare server process and by pg in this process.
  const conn = db.databaseConfig.connection as { host: string; port: number; database: string; user: string }
  const pgUrl = `postgres://${encodeURIComponent(conn.user)}@${conn.host}:${conn.port}/${encodeURIComponent(conn.database)}`
  const q = (c: string) => `"${c.replaceAll('"', '""')}"`
  const floorSql = `SELECT ${pv.exposed.map((f) => q(f.column)).join(", ")} FROM ${q(pv.table)} WHERE ${q(pv.primaryKey.column)} = $1 AND ${q(pv.byName.get("isActive")!.column)} = true`
  const rawPool = new pg.Pool({ connectionString: pgUrl, max: POOL })
  const readOn = (pool: pg.Pool) => async (id: string) => {
    const r = await pool.query({ name: "floor_read", text: floorSql, values: [id] })
    if (r.rows.length !== 1) throw new Error(`raw read of ${id} found ${r.rows.length} rows`)
  }
  const rawRead = readOn(rawPool)
  /** A bare server process (bench/floor-server.mjs); with `pinCpu`, it and its backends on that CPU. */
  const startFloorServer = async (poolSize: number, pinCpu?: number) => {
    const child = spawn(
      process.execPath,
      [path.join(root, "bench", "floor-server.mjs"), pgUrl, String(poolSize), floorSql, ...(pinCpu === undefined ? [] : [String(pinCpu)])],
      {
        stdio: ["ignore", "pipe", "inherit"]
      }
    )
    process.once("exit", () => child.kill("SIGKILL"))
    const port = await new Promise<number>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`the floor server exited (${code})`)))
      child.stdout!.once("data", (d: Buffer) => {
        const m = JSON.parse(d.toString()) as { port?: number; error?: string }
        if (m.port !== undefined) resolve(m.port)
        else reject(new Error(m.error ?? `the floor server said ${d.toString().trim()}`))
      })
    })
    return { process: child, port }
  }
  const stopFloorServer = async (child: ReturnType<typeof spawn>) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once("exit", r))
    child.kill("SIGTERM")
    await Promise.race([exited, sleep(5000)])
  }
  const { process: floorProcess, port: floorPort } = await startFloorServer(POOL)
  const floorClients: Array<Client> = []
  const openFloor = async () => {
    const c = await connect(floorPort)
    floorClients.push(c)
    return c
  }
  const floorRead = async (c: Client, id: string) => {
    const a = await c.call("read", ["PageView", id])
    if (a.error !== undefined || a.result === null) throw new Error(`floor read of ${id} failed: ${JSON.stringify(a)}`)
  }

  // Placement: the same two SELECT sides with every process of a read on one CPU — this process
  // (pinned around those sides in each round: pinSelf), a second bare server started pinned, and
  // the PostgreSQL backends of a small pool of this process and of that server's pool (pinned
  // before a connection serves a read; both pools keep their connections). Sequential reads use
  // one connection of a pool, so 2 is enough. Ended after the latency rounds.
  interface Pinned {
    readonly cpu: number
    readonly pool: pg.Pool
    readonly server: ReturnType<typeof spawn>
    readonly client: Client
  }
  const setUpPlacement = async (): Promise<Pinned | string> => {
    if (!PLACEMENT) return "BENCH_PLACEMENT=0"
    if (process.platform !== "linux") return `not Linux (${process.platform})`
    try {
      taskset(["--version"])
    } catch (e) {
      return `taskset is not available: ${firstLine(e)}`
    }
    const affinity = affinityOf(process.pid, process.pid)
    const allowed = affinity === undefined ? [] : cpuList(affinity)
    if (os.cpus().length < 2 || allowed.length < 2)
      return `fewer than 2 CPUs: ${os.cpus().length} CPUs, this process allowed on ${affinity ?? "?"}`
    const cpu = allowed[0]!
    try {
      pinSelf(cpu)()
    } catch (e) {
      return `pinning the bench process to CPU ${cpu} failed: ${firstLine(e)}`
    }
    const pool = new pg.Pool({ connectionString: pgUrl, max: 2, idleTimeoutMillis: 0, onConnect: pinBackendTo(cpu) })
    try {
      ;(await pool.connect()).release()
    } catch (e) {
      await pool.end().catch(() => undefined)
      return `pinning a PostgreSQL backend to CPU ${cpu} failed: ${firstLine(e)}`
    }
    let server: Awaited<ReturnType<typeof startFloorServer>> | undefined
    try {
      server = await startFloorServer(2, cpu)
      const p: Pinned = { cpu, pool, server: server.process, client: await connect(server.port) }
      teardowns.push(() => endPlacement(p))
      return p
    } catch (e) {
      if (server !== undefined) await stopFloorServer(server.process)
      await pool.end().catch(() => undefined)
      return `the pinned bare server: ${firstLine(e)}`
    }
  }
  let placementEnded = false
  /** Ends the pinned side: its client, its server (whose pool ends with it) and the pinned pool; their backends exit. */
  const endPlacement = async (p: Pinned) => {
    if (placementEnded) return
    placementEnded = true
    await p.client.close().catch(() => undefined)
    await stopFloorServer(p.server)
    await p.pool.end()
  }
  const placementSetUp = await setUpPlacement()
  const pinned = typeof placementSetUp === "string" ? undefined : placementSetUp
  const placementWhy = typeof placementSetUp === "string" ? placementSetUp : ""
  if (pinned === undefined) log(`placement: not measured (${placementWhy})`)
  else
    log(
      `placement: this process, a second bare server and both pools' PostgreSQL backends pinned to CPU ${pinned.cpu} for the one-vCPU sides`
    )
  /** Runs f with this process (all threads) on the pinned CPU, and puts it back after. */
  const onOneCpu = async (p: Pinned, f: () => Promise<void>) => {
    const restore = pinSelf(p.cpu)
    try {
      await f()
    } finally {
      restore()
    }
  }

  // -------------------------------------------------------------------------------------------
  // latency

  const userClient = await openUser(daemon.port)
  const created: Record<WriteSide, Array<string>> = { raw: [], daemon: [], baseline: [], direct: [] }
  // The baseline daemon (BENCH_BASELINE): same configuration but its own audit file, same benchmark user.
  const baselineDaemon =
    BASELINE === undefined
      ? undefined
      : await startDaemon([`--config=${daemonConfigFor(false, "baseline")}`], {
          command: [process.execPath, ...NODE_FLAGS, path.join(BASELINE, "bin", "dbal-daemon.mjs")]
        })
  if (baselineDaemon !== undefined) daemons.push(baselineDaemon)
  const baselineClient = baselineDaemon === undefined ? undefined : await openUser(baselineDaemon.port)
  /** The operations through a daemon, on one authenticated connection. */
  const through = (c: Client) => ({
    read: () => ok(c, "read", ["PageView", nextPage()]),
    create: async () => ((await ok(c, "create", ["PageView", pageData(1)])) as { id: string }).id,
    update: () => ok(c, "update", ["PageView", nextPage(), { title: `t ${uniq()}` }]),
    remove: (id: string) => ok(c, "delete", ["PageView", id]),
    list: () => ok(c, "list", ["ComponentHierarchy", { include: ["page"], limit: 20 }]),
    createMany: () => ok(c, "createMany", ["PageView", bulkItems()])
  })
  const viaDaemon = through(userClient)
  const viaBaseline = baselineClient === undefined ? undefined : through(baselineClient)
  let pick = 0
  const nextPage = () => pageIds[(pick = (pick + 7919) % pageIds.length)]!
  const bulkItems = () => Array.from({ length: 100 }, (_, i) => pageData(i, "bulk"))
  // Each side's bulk rows are removed (and the table vacuumed) after its batch, outside the
  // timing: otherwise the side that runs second works on a table 3,000 rows larger, and the
  // write's access check (a COUNT over the 100 ids with the row filter) is planned on the
  // statistics of the seeded table, so it scans the whole table and the sides are not comparable.
  const removeBulkRows = async () => {
    await rawPool.query(`DELETE FROM ${q(pv.table)} WHERE ${q(pv.byName.get("slug")!.column)} LIKE 'bulk/%'`)
    await rawPool.query(`VACUUM ${q(pv.table)}`)
  }

  // Raw pg: the statements a hand-written server would send for the same operations, named
  // (prepared once per connection), on a pg.Pool of the same size, in this process.
  const insertFields = pv.fields.filter((f) => f.autoIncrement !== true)
  const exposedCols = pv.exposed.map((f) => q(f.column)).join(", ")
  const pvCol = (name: string) => q(pv.byName.get(name)!.column)
  const placeholders = (row: number) => `(${insertFields.map((_, i) => `$${row * insertFields.length + i + 1}`).join(", ")})`
  const rawSql = {
    insert: `INSERT INTO ${q(pv.table)} (${insertFields.map((f) => q(f.column)).join(", ")}) VALUES ${placeholders(0)} RETURNING ${exposedCols}`,
    update: `UPDATE ${q(pv.table)} SET ${pvCol("title")} = $2, ${pvCol("updatedAt")} = $3 WHERE ${q(pv.primaryKey.column)} = $1 AND ${pvCol("isActive")} = true RETURNING ${exposedCols}`,
    delete: `DELETE FROM ${q(pv.table)} WHERE ${q(pv.primaryKey.column)} = $1 AND ${pvCol("isActive")} = true`,
    insert100: `INSERT INTO ${q(pv.table)} (${insertFields.map((f) => q(f.column)).join(", ")}) VALUES ${Array.from({ length: 100 }, (_, i) => placeholders(i)).join(", ")}`,
    join: (() => {
      const chCols = ch.exposed.map((f) => `t0.${q(f.column)} AS ${q(`t0__${f.column}`)}`)
      const pvCols = pv.exposed.map((f) => `r0.${q(f.column)} AS ${q(`r0__${f.column}`)}`)
      const order = [...(ch.orderField === undefined ? [] : [ch.orderField]), ch.primaryKey].map((f) => `t0.${q(f.column)} ASC`).join(", ")
      return `SELECT ${[...chCols, `r0.${q(pv.primaryKey.column)} AS "r0__present"`, ...pvCols].join(", ")} FROM ${q(ch.table)} t0 LEFT JOIN ${q(pv.table)} r0 ON r0.${q(pageField.foreignKey!.field === "id" ? pv.primaryKey.column : pv.byName.get(pageField.foreignKey!.field)!.column)} = t0.${q(pageField.column)} AND r0.${pvCol("isActive")} = true ORDER BY ${order} LIMIT 20 OFFSET 0`
    })(),
    count: `SELECT COUNT(*) AS n FROM ${q(ch.table)}`
  }
  /** A new page's column values as pg parameters: the id and timestamps made here, as the daemon makes them. */
  const rawRow = (data: Record<string, unknown>, now: string): Array<unknown> =>
    insertFields.map((f) =>
      f.primary
        ? randomUUID()
        : (f.generated && f.type === "datetime") || f.autoUpdate
          ? now
          : encodeValue("pg", f, data[f.name] ?? (f.default === undefined ? null : f.default))
    )
  const rawOne = async (name: string, text: string, values: Array<unknown>) => {
    const r = await rawPool.query({ name, text, values })
    if (r.rowCount !== 1) throw new Error(`raw ${name} changed ${r.rowCount} rows`)
    return r
  }
  const raw = {
    create: async () => (await rawOne("raw_insert", rawSql.insert, rawRow(pageData(1), new Date().toISOString()))).rows[0].id as string,
    update: () => rawOne("raw_update", rawSql.update, [nextPage(), `t ${uniq()}`, new Date().toISOString()]),
    remove: (id: string) => rawOne("raw_delete", rawSql.delete, [id]),
    join: async () => {
      await rawPool.query({ name: "raw_join", text: rawSql.join, values: [] })
      await rawPool.query({ name: "raw_count", text: rawSql.count, values: [] })
    },
    insert100: async () => {
      const now = new Date().toISOString()
      const r = await rawPool.query({ name: "raw_insert_100", text: rawSql.insert100, values: bulkItems().flatMap((d) => rawRow(d, now)) })
      if (r.rowCount !== 100) throw new Error(`raw multi-row INSERT inserted ${r.rowCount} rows`)
    }
  }
  const createOn = async (side: WriteSide): Promise<string> =>
    side === "raw"
      ? raw.create()
      : side === "daemon"
        ? viaDaemon.create()
        : side === "baseline"
          ? viaBaseline!.create()
          : String((await run(repo.create(pv, right(validateCreate(pv, pageData(1))), pvAccess))).id)

  interface Op {
    readonly name: string
    readonly iterations: number
    readonly sides: { readonly [S in Side]?: (() => Promise<unknown>) | undefined }
  }
  const floorClient = await openFloor()
  const ops: ReadonlyArray<Op> = [
    {
      name: "SELECT",
      iterations: ITER,
      sides: {
        raw: () => rawRead(nextPage()),
        floor: () => floorRead(floorClient, nextPage()),
        daemon: viaDaemon.read,
        baseline: viaBaseline?.read,
        direct: () => run(repo.read(pv, nextPage(), pvAccess))
      }
    },
    {
      name: "INSERT",
      iterations: ITER,
      sides: {
        raw: async () => created.raw.push(await createOn("raw")),
        daemon: async () => created.daemon.push(await createOn("daemon")),
        baseline: async () => created.baseline.push(await createOn("baseline")),
        direct: async () => created.direct.push(await createOn("direct"))
      }
    },
    {
      name: "UPDATE",
      iterations: ITER,
      sides: {
        raw: () => raw.update(),
        daemon: viaDaemon.update,
        baseline: viaBaseline?.update,
        direct: () => run(repo.update(pv, nextPage(), right(validateUpdate(pv, { title: `t ${uniq()}` })), pvAccess))
      }
    },
    {
      // The rows deleted are created before the timed requests (below): only the delete is timed.
      name: "DELETE",
      iterations: ITER,
      sides: {
        raw: () => raw.remove(created.raw.pop()!),
        daemon: () => viaDaemon.remove(created.daemon.pop()!),
        baseline: () => viaBaseline!.remove(created.baseline.pop()!),
        direct: () => run(repo.remove(pv, created.direct.pop()!, pvAccess))
      }
    },
    {
      name: "JOIN",
      iterations: ITER_JOIN,
      sides: {
        raw: () => raw.join(),
        daemon: viaDaemon.list,
        baseline: viaBaseline?.list,
        direct: () => run(repo.listWithIncludes(ch, TRUE, [], 1, 20, chAccess, [include]))
      }
    },
    {
      name: BULK,
      iterations: ITER_BULK,
      sides: {
        raw: () => raw.insert100(),
        daemon: viaDaemon.createMany,
        baseline: viaBaseline?.createMany,
        direct: () => run(repo.createMany(pv, right(validateCreateMany(pv, bulkItems())), pvAccess.rowFilter))
      }
    }
  ]
  const sidesOf = (op: Op): Array<Side> => ACTIVE_SIDES.filter((s) => op.sides[s] !== undefined)
  const timed = async (n: number, f: () => Promise<unknown>): Promise<Array<number>> => {
    const xs: Array<number> = []
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await f()
      xs.push((performance.now() - t) * 1000)
    }
    return xs
  }
  /** Fills a side's stock of rows for DELETE, outside the timing. */
  const stockFor = async (side: Side, n: number) => {
    if (side === "floor") return
    while (created[side].length < n) created[side].push(await createOn(side))
  }
  const warm = Math.max(1, WARMUP)
  const floorWarm = Math.max(warm, FLOOR_WARMUP)
  const pinnedSides =
    pinned === undefined ? undefined : { raw: () => readOn(pinned.pool)(nextPage()), floor: () => floorRead(pinned.client, nextPage()) }
  const pinnedRounds: Record<"raw" | "floor", Array<number>> = { raw: [], floor: [] }
  // The floor's sides get the longer warm-up (a fresh bare server takes ~2,000 reads to be optimized).
  await timed(floorWarm, ops[0]!.sides.raw!)
  await timed(floorWarm, ops[0]!.sides.floor!)
  if (pinned !== undefined && pinnedSides !== undefined)
    await onOneCpu(pinned, async () => {
      await timed(floorWarm, pinnedSides.raw)
      await timed(floorWarm, pinnedSides.floor)
    })
  for (const op of ops) {
    const n = op.name === BULK ? Math.max(1, Math.ceil(warm / 10)) : warm
    for (const side of sidesOf(op)) {
      if (op.name === "DELETE") await stockFor(side, n)
      await timed(n, op.sides[side]!)
    }
    if (op.name === BULK) await removeBulkRows()
  }
  interface RoundStat {
    readonly p50: number
    readonly p99: number
    readonly mean: number
  }
  const rounds = new Map<string, Partial<Record<Side, Array<RoundStat>>>>()
  for (const op of ops) rounds.set(op.name, Object.fromEntries(sidesOf(op).map((s) => [s, []])))
  const tl = performance.now()
  for (let r = 0; r < ROUNDS; r++) {
    for (const op of ops) {
      for (const side of rotated(sidesOf(op), r)) {
        if (op.name === "DELETE") await stockFor(side, op.iterations)
        const xs = await timed(op.iterations, op.sides[side]!)
        if (op.name === BULK) await removeBulkRows()
        rounds.get(op.name)![side]!.push({ p50: pct(xs, 50), p99: pct(xs, 99), mean: xs.reduce((a, b) => a + b, 0) / xs.length })
      }
    }
    if (pinned !== undefined && pinnedSides !== undefined)
      await onOneCpu(pinned, async () => {
        for (const side of rotated(["raw", "floor"] as const, r)) pinnedRounds[side].push(pct(await timed(ITER, pinnedSides[side]), 50))
      })
    log(`latency round ${r + 1}/${ROUNDS} done (${((performance.now() - tl) / 1000).toFixed(1)} s)`)
  }
  // The pinned side is done: its server and pools are ended (their backends exit with them).
  if (pinned !== undefined) await endPlacement(pinned)
  // The baseline daemon is measured in the latency rounds only: it stops before the throughput.
  if (baselineDaemon !== undefined) {
    clients.splice(clients.indexOf(baselineClient!), 1)
    await baselineClient!.close()
    await baselineDaemon.stop()
    daemons.splice(daemons.indexOf(baselineDaemon), 1)
  }
  const latency = ops.map((op) => {
    const r = rounds.get(op.name)!
    const p50Rounds = (s: Side) => (r[s] ?? []).map((x) => x.p50)
    const sideStats = Object.fromEntries(
      sidesOf(op).map((s) => [s, { p50: median(p50Rounds(s)), p99: median((r[s] ?? []).map((x) => x.p99)) }])
    ) as Partial<Record<Side, { p50: number; p99: number }>>
    const rawP50 = sideStats.raw!.p50
    /** p50 added over raw pg: the difference of the medians, and the median of the per-round differences (same round, same load). */
    const addedOverRaw = (s: Side) =>
      sideStats[s] === undefined
        ? undefined
        : {
            us: sideStats[s].p50 - rawP50,
            usRounds: p50Rounds(s).map((x, i) => x - p50Rounds("raw")[i]!),
            ratio: sideStats[s].p50 / rawP50
          }
    return {
      operation: op.name,
      iterations: op.iterations,
      ...sideStats,
      added: {
        daemon: addedOverRaw("daemon")!,
        floor: addedOverRaw("floor"),
        baseline: addedOverRaw("baseline"),
        direct: addedOverRaw("direct")
      }
    }
  })

  // -------------------------------------------------------------------------------------------
  // throughput (reads by id)

  const maxClients = Math.max(...CLIENT_COUNTS)
  const tpClients: Array<Client> = [userClient]
  while (tpClients.length < maxClients) tpClients.push(await openUser(daemon.port))
  /** CPU seconds (user + system) of a process so far, from /proc/<pid>/stat. */
  const cpuSecondsOf = (pid: number) => {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  }
  const cpuPerRequest = new Map<string, Array<number>>()
  const floorTpClients: Array<Client> = [floorClient]
  while (floorTpClients.length < FLOOR_CLIENTS) floorTpClients.push(await openFloor())
  const throughputOnce = async (side: Side, n: number): Promise<number> => {
    let stop = false
    let counting = false
    let done = 0
    const loop = async (lane: number) => {
      let k = lane * 7919
      while (!stop) {
        const id = pageIds[(k = (k + 104_729) % pageIds.length)]!
        if (side === "direct") await run(repo.read(pv, id, pvAccess))
        else if (side === "daemon") await ok(tpClients[lane]!, "read", ["PageView", id])
        else if (side === "raw") await rawRead(id)
        else await floorRead(floorTpClients[lane]!, id)
        if (counting) done++
      }
    }
    const loops = Array.from({ length: n }, (_, i) => loop(i))
    await sleep(300)
    counting = true
    const ts = performance.now()
    // CPU of whoever serves the reads: the daemon (or floor) process, or this process for raw pg and direct.
    const server = side === "daemon" ? daemon.process.pid! : side === "floor" ? floorProcess.pid! : undefined
    const cpu0 = server !== undefined ? cpuSecondsOf(server) : process.cpuUsage()
    await sleep(TP_SECONDS * 1000)
    const elapsed = (performance.now() - ts) / 1000
    const cpu =
      typeof cpu0 === "number"
        ? cpuSecondsOf(server!) - cpu0
        : (() => {
            const u = process.cpuUsage(cpu0)
            return (u.user + u.system) / 1e6
          })()
    const served = done
    counting = false
    stop = true
    await Promise.all(loops)
    const key = `${side}:${n}`
    cpuPerRequest.set(key, [...(cpuPerRequest.get(key) ?? []), (cpu * 1e6) / Math.max(1, served)])
    return served / elapsed
  }
  /** The sides measured at n clients: the floor only at FLOOR_CLIENTS (the target's 32). */
  const tpSides = (n: number): Array<Side> => ACTIVE_SIDES.filter((s) => s !== "baseline" && (s !== "floor" || n === FLOOR_CLIENTS))
  const tpRounds = new Map<string, Array<number>>()
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of CLIENT_COUNTS)
      for (const side of rotated(tpSides(n), r)) {
        const key = `${side}:${n}`
        tpRounds.set(key, [...(tpRounds.get(key) ?? []), await throughputOnce(side, n)])
      }
    log(`throughput round ${r + 1}/${ROUNDS} done`)
  }
  const throughput = CLIENT_COUNTS.map((n) => {
    const of = (s: Side) => {
      const xs = tpRounds.get(`${s}:${n}`)
      return xs === undefined ? undefined : { rps: median(xs), rpsRounds: xs, cpuUsPerRead: median(cpuPerRequest.get(`${s}:${n}`) ?? []) }
    }
    return { clients: n, raw: of("raw")!, floor: of("floor"), daemon: of("daemon")!, direct: of("direct") }
  })
  const placement =
    pinned === undefined
      ? { measured: false as const, reason: placementWhy }
      : (() => {
          const rawP = median(pinnedRounds.raw)
          const fl = median(pinnedRounds.floor)
          const oneVcpu = {
            raw: rawP,
            floor: fl,
            addedUs: fl - rawP,
            addedUsRounds: pinnedRounds.floor.map((f, i) => f - pinnedRounds.raw[i]!)
          }
          const freeAddedUs = latency[0]!.added.floor!.us
          return {
            measured: true as const,
            cpu: pinned.cpu,
            pinned: "this process (all threads), a second bare server process (all threads), the PostgreSQL backends of both pools",
            oneVcpu,
            // The SELECT sides above are the free placement (the scheduler's): what the hop adds beyond one vCPU.
            freeAddedUs,
            crossVcpuUs: freeAddedUs - oneVcpu.addedUs
          }
        })()
  await Promise.all(floorClients.splice(0).map((c) => c.close()))
  floorProcess.kill("SIGTERM")
  await removeBulkRows()
  await rawPool.end()
  for (const c of tpClients.splice(1)) {
    clients.splice(clients.indexOf(c), 1)
    await c.close()
  }

  // Stop the profiled daemon now, so that its profile covers exactly the measurements above.
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await daemon.stop()
  daemons.splice(daemons.indexOf(daemon), 1)

  // -------------------------------------------------------------------------------------------
  // memory: a fresh daemon, idle, then with CONNS authenticated idle connections

  const memDaemon = await start(daemonConfigFor(false, "memory"), false)
  daemons.push(memDaemon)
  const pid = memDaemon.process.pid!
  {
    const c = await openUser(memDaemon.port)
    for (let i = 0; i < 20; i++) await ok(c, "read", ["PageView", nextPage()])
    await c.close()
    clients.splice(clients.indexOf(c), 1)
  }
  await sleep(1000)
  const idle = rssKb(pid)
  const conns: Array<Client> = []
  for (let i = 0; i < CONNS; i += 50) {
    conns.push(...(await Promise.all(Array.from({ length: Math.min(50, CONNS - i) }, () => openUser(memDaemon.port)))))
  }
  await sleep(1500)
  const loaded = rssKb(pid)
  const memory = {
    idleMb: idle.rss / 1024,
    connectionsMb: loaded.rss / 1024,
    peakMb: loaded.hwm / 1024,
    connections: conns.length,
    perConnectionKb: (loaded.rss - idle.rss) / Math.max(1, conns.length)
  }
  log(`memory: idle ${memory.idleMb.toFixed(1)} MB, ${conns.length} connections ${memory.connectionsMb.toFixed(1)} MB`)
  await Promise.all(conns.map((c) => c.close()))
  clients.length = 0
  await memDaemon.stop()
  daemons.splice(daemons.indexOf(memDaemon), 1)

  // -------------------------------------------------------------------------------------------
  // cache: hit (the same list repeated) vs miss (the same list after a write that invalidates it)

  const cacheDaemon = await start(daemonConfigFor(true, "cache"), false)
  daemons.push(cacheDaemon)
  const cc = await openUser(cacheDaemon.port)
  const listParams = ["ComponentHierarchy", { include: ["page"], limit: 20 }] as const
  const invalidate = () => ok(cc, "update", ["PageView", scratchId, { title: `t ${uniq()}` }])
  const hitOnce = () => ok(cc, "list", listParams)
  const missOnce = async () => {
    await invalidate()
    const t = performance.now()
    await ok(cc, "list", listParams)
    return (performance.now() - t) * 1000
  }
  for (let i = 0; i < warm; i++) {
    await hitOnce()
    await missOnce()
  }
  const hitRounds: Array<number> = []
  const missRounds: Array<number> = []
  for (let r = 0; r < ROUNDS; r++) {
    const misses: Array<number> = []
    for (let i = 0; i < ITER_JOIN; i++) misses.push(await missOnce())
    await hitOnce()
    const hits = await timed(ITER_JOIN, hitOnce)
    hitRounds.push(pct(hits, 50))
    missRounds.push(pct(misses, 50))
  }
  const cache = { hitP50: median(hitRounds), missP50: median(missRounds), ratio: median(missRounds) / median(hitRounds) }
  await cc.close()
  clients.length = 0
  await cacheDaemon.stop()
  daemons.splice(daemons.indexOf(cacheDaemon), 1)

  // -------------------------------------------------------------------------------------------
  // report

  const loadEnd = uptime()
  const us = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)} ms` : x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(0)} µs`)
  const signed = (x: number) => `${x >= 0 ? "+" : "−"}${us(Math.abs(x))}`
  const cell = (s: { p50: number; p99: number } | undefined) => (s === undefined ? "–" : `${us(s.p50)} / ${us(s.p99)}`)
  const lines: Array<string> = []
  lines.push(`\n### Latency (sequential, 1 client; median of ${ROUNDS} rounds' p50 / p99; added = p50 over raw pg)\n`)
  const B = BASELINE !== undefined
  lines.push(
    `| Operation | Raw pg | Floor server | Daemon |${B ? " Baseline daemon |" : ""}${DIRECT ? " Direct (Repository) |" : ""} Floor added | Daemon added |${B ? " Baseline added |" : ""}`
  )
  lines.push(`|---|---:|---:|---:|${B ? "---:|" : ""}${DIRECT ? "---:|" : ""}---:|---:|${B ? "---:|" : ""}`)
  for (const l of latency) {
    const baselineAdded = l.added.baseline === undefined ? "–" : `${signed(l.added.baseline.us)} (×${l.added.baseline.ratio.toFixed(2)})`
    lines.push(
      `| ${l.operation} | ${cell(l.raw)} | ${cell(l.floor)} | ${cell(l.daemon)} |${B ? ` ${cell(l.baseline)} |` : ""}${DIRECT ? ` ${cell(l.direct)} |` : ""} ${l.added.floor === undefined ? "–" : signed(l.added.floor.us)} | ${signed(l.added.daemon.us)} (×${l.added.daemon.ratio.toFixed(2)}) |${B ? ` ${baselineAdded} |` : ""}`
    )
  }
  if (B)
    lines.push(`
Baseline daemon: ${BASELINE}`)
  lines.push(
    `\n### Throughput (reads by id, one request in flight per client; median of ${ROUNDS} rounds; CPU per read of the serving process)\n`
  )
  lines.push(
    `| Clients | Raw pg req/s | Floor req/s | Daemon req/s |${DIRECT ? " Direct req/s |" : ""} CPU per read: raw pg (this process) / floor / daemon |`
  )
  lines.push(`|---:|---:|---:|---:|${DIRECT ? "---:|" : ""}---:|`)
  for (const t of throughput) {
    const cpu = [t.raw, t.floor, t.daemon].map((x) => (x === undefined ? "–" : `${x.cpuUsPerRead.toFixed(0)} µs`)).join(" / ")
    lines.push(
      `| ${t.clients} | ${t.raw.rps.toFixed(0)} | ${t.floor?.rps.toFixed(0) ?? "–"} | ${t.daemon.rps.toFixed(0)} |${DIRECT ? ` ${t.direct?.rps.toFixed(0) ?? "–"} |` : ""} ${cpu} |`
    )
  }
  if (!placement.measured) lines.push(`\nplacement: not measured (${placement.reason})`)
  else {
    const p = placement
    lines.push(
      `\nPlacement: with every process of a read on one vCPU (this process, a second floor server, their PostgreSQL backends on CPU ${p.cpu}) the floor server adds ${signed(p.oneVcpu.addedUs)} over raw pg (raw ${us(p.oneVcpu.raw)}, floor ${us(p.oneVcpu.floor)}) instead of ${signed(p.freeAddedUs)}: waking processes on the other vCPU accounts for ${signed(p.crossVcpuUs)} of the hop here.`
    )
  }
  lines.push("\n### Memory and cache\n")
  lines.push("| Measure | Value |")
  lines.push("|---|---:|")
  lines.push(`| Daemon RSS idle | ${memory.idleMb.toFixed(1)} MB |`)
  lines.push(
    `| Daemon RSS with ${memory.connections} idle authenticated connections | ${memory.connectionsMb.toFixed(1)} MB (≈ ${memory.perConnectionKb.toFixed(1)} kB each) |`
  )
  lines.push(`| Cache hit p50 (repeated list) | ${us(cache.hitP50)} |`)
  lines.push(`| Cache miss p50 (same list after an invalidating write) | ${us(cache.missP50)} |`)
  lines.push(`| Miss / hit | ${cache.ratio.toFixed(1)}× |`)
  lines.push(`| Audit disk write + fdatasync p50 / p99 | ${us(fsyncUs.p50)} / ${us(fsyncUs.p99)} |`)

  // Issue 16's targets, each from the sides of this run.
  const op = (name: string) => latency.find((l) => l.operation === name)!
  const floorAdded = op("SELECT").added.floor!.us
  const tp32 = throughput.find((t) => t.clients === FLOOR_CLIENTS)!
  const readRatio = op("SELECT").added.daemon.us / floorAdded
  const tpRatio = tp32.daemon.rps / tp32.floor!.rps
  const cpuRatio = tp32.daemon.cpuUsPerRead / tp32.floor!.cpuUsPerRead
  const bulkRatio = op(BULK).daemon!.p50 / op(BULK).raw!.p50
  const targets = [
    {
      target: "read by id: daemon added p50 ≤ 1.25 × floor added p50",
      measured: `${signed(op("SELECT").added.daemon.us)} / ${signed(floorAdded)} = ×${readRatio.toFixed(2)}`,
      ratio: readRatio,
      met: readRatio <= 1.25
    },
    {
      target: `reads/s at ${FLOOR_CLIENTS} clients: daemon ≥ 80 % of the floor server`,
      measured: `${tp32.daemon.rps.toFixed(0)} / ${tp32.floor!.rps.toFixed(0)} = ${(tpRatio * 100).toFixed(0)} %`,
      ratio: tpRatio,
      met: tpRatio >= 0.8
    },
    {
      target: `CPU per read at ${FLOOR_CLIENTS} clients: daemon ≤ 1.5 × the floor server`,
      measured: `${tp32.daemon.cpuUsPerRead.toFixed(0)} / ${tp32.floor!.cpuUsPerRead.toFixed(0)} µs = ×${cpuRatio.toFixed(2)}`,
      ratio: cpuRatio,
      met: cpuRatio <= 1.5
    },
    ...["INSERT", "UPDATE", "DELETE"].map((name) => {
      const added = op(name).added.daemon.us
      return {
        target: `${name === "INSERT" ? "create" : name === "UPDATE" ? "update" : "delete"} by id: daemon added p50 over raw pg ≤ floor added + 200 µs`,
        measured: `${signed(added)} vs ${signed(floorAdded + 200)}`,
        ratio: added / (floorAdded + 200),
        met: added <= floorAdded + 200
      }
    }),
    {
      target: "createMany(100) ≤ 1.15 × one multi-row INSERT through raw pg",
      measured: `${us(op(BULK).daemon!.p50)} / ${us(op(BULK).raw!.p50)} = ×${bulkRatio.toFixed(2)}`,
      ratio: bulkRatio,
      met: bulkRatio <= 1.15
    },
    {
      target: `RSS with 1,000 idle connections no worse than before issue 16 (≤ ${RSS_BEFORE_MB} MB)`,
      measured: `${memory.connectionsMb.toFixed(1)} MB`,
      ratio: memory.connectionsMb / RSS_BEFORE_MB,
      met: memory.connectionsMb <= RSS_BEFORE_MB && memory.connections >= 1000
    },
    {
      target: `Cache hit vs miss no worse than before issue 16 (≥ ${CACHE_BEFORE}×)`,
      measured: `${cache.ratio.toFixed(1)}×`,
      ratio: cache.ratio / CACHE_BEFORE,
      met: cache.ratio >= CACHE_BEFORE
    }
  ]
  lines.push("\n### Targets (issue 16)\n")
  lines.push("| Target | Measured | Met |")
  lines.push("|---|---:|:---:|")
  for (const t of targets) lines.push(`| ${t.target} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`)
  const totalS = (performance.now() - t0) / 1000
  lines.push(`\nuptime at start: ${loadStart}\nuptime at end:   ${loadEnd}`)
  lines.push(`total ${totalS.toFixed(0)} s${PROFILE ? " (daemon profiled: its numbers include the profiler's cost)" : ""}`)
  log(lines.join("\n"))

  let profile: ReturnType<typeof summarize> | undefined
  if (PROFILE) {
    const fresh = fs.readdirSync(PROFILE_DIR).filter((f) => f.endsWith(".cpuprofile") && !profiledBefore.has(f))
    if (fresh.length > 0) {
      // One profile per thread (tsx runs a loader thread): the busiest is the main thread.
      const summaries = fresh.map((f) => summarize(path.join(PROFILE_DIR, f), 30))
      profile = summaries.sort((a, b) => b.busyMs - a.busyMs)[0]!
      log(`\n### Daemon CPU profile (self time)\n\n${formatSummary(profile)}`)
    } else log("no CPU profile was written by the daemon")
  }

  fs.mkdirSync(path.dirname(OUT), { recursive: true })
  fs.writeFileSync(
    OUT,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: {
          cpus: os.cpus().length,
          model: os.cpus()[0]?.model ?? "",
          node: process.version,
          uptimeStart: loadStart,
          uptimeEnd: loadEnd
        },
        daemon: { compiled: COMPILED || runsCompiled, nodeFlags: NODE_FLAGS },
        settings: {
          rounds: ROUNDS,
          iterations: ITER,
          iterationsJoin: ITER_JOIN,
          iterationsBulk: ITER_BULK,
          warmup: WARMUP,
          floorWarmup: FLOOR_WARMUP,
          placement: PLACEMENT,
          throughputSeconds: TP_SECONDS,
          pool: POOL,
          connections: CONNS,
          profiled: PROFILE,
          compiled: COMPILED,
          auditFsync: AUDIT_FSYNC,
          sides: ACTIVE_SIDES,
          ...(BASELINE === undefined ? {} : { baseline: BASELINE }),
          durationSeconds: Math.round(totalS)
        },
        setup: {
          raw: "pg.Pool of the same size in this process, named prepared statements ({name, text, values}), the same SQL a hand-written server would send (read with the row filter, INSERT/UPDATE … RETURNING the columns, DELETE, one 100-row INSERT)",
          floor:
            "bench/floor-server.mjs: a separate node process, bare ws + pg.Pool of the same size, parses JSON, runs the raw read by id (named), answers JSON; no security",
          ...(DIRECT
            ? {
                direct:
                  "the daemon's Repository (makeRepository) in-process on the daemon's pg pool layer, every statement through @effect/sql-pg, with the access decision the daemon computes for the user"
              }
            : {}),
          daemon: `separate process; session token of a god user; ACL row filter isActive=true on PageView; rate limit on; audit file ${AUDIT_FSYNC ? "with" : "WITHOUT"} fsync`
        },
        unit: "µs (latency), requests/s (throughput), MB (memory)",
        latency,
        throughput,
        floor: { sql: floorSql, placement },
        memory,
        cache,
        auditFsyncUs: fsyncUs,
        targets,
        ...(profile === undefined ? {} : { profile })
      },
      null,
      2
    ) + "\n"
  )
  log(`\nresults written to ${path.relative(process.cwd(), OUT)}`)
} finally {
  await cleanup()
}
