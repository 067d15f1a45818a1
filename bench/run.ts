/**
 * `npm run bench`: the performance table of bench/README.md (method and results there) on
 * the local PostgreSQL, in one run, on a fresh database that is dropped at the end.
 *
 * - Direct DB: the daemon's own Repository (src/query/Repository.ts) in this process, on the
 *   daemon's own PostgreSQL pool (layers/Database.ts: pg.Pool with named prepared statements,
 *   same pool size), given the SAME access decision the daemon computes for the benchmark user
 *   (the same row filter, the same fields), so both sides run the same SQL statements. Every
 *   statement goes through @effect/sql-pg, as the issue defines Direct DB; the daemon sends its
 *   statements outside transactions to the pool directly (layers/db/Pg.ts).
 * - Via Daemon: a separate daemon process (bin/dbal-daemon.mjs) with a session token of a `god`
 *   user, access rules with a row filter on every PageView operation, rate limiting on (limits
 *   far above the load), and the audit file with fsync on; a real `ws` client per connection
 *   that authenticates once (`authenticate`), as the client library does.
 * - Latency: SELECT (read by id), INSERT (create), UPDATE (update by id), DELETE (delete by id),
 *   JOIN (list ComponentHierarchy include ["page"], limit 20) and Bulk (createMany of 100), one
 *   request at a time; direct and daemon alternate in rounds and the median of the rounds'
 *   p50/p99 is reported.
 * - Transport floor (bench/floor-server.mjs): a bare ws + pg server process with none of the
 *   daemon's stages, and the same query through pg in this process, measured in the same rounds
 *   (SELECT) and at 32 clients: what the extra process and the WebSocket hop alone cost here.
 *   Each floor side is warmed first with BENCH_FLOOR_WARMUP reads (V8 optimizes the server).
 * - Placement (part of the floor): the same two SELECT sides with every process of a read on one
 *   vCPU — this process (all threads, `taskset -a`; its affinity restored after each round), a
 *   second bare server started pinned, and the PostgreSQL backends of both sides' pools (pinned
 *   before a connection serves a read; the pools are ended after the latency rounds) — in the
 *   same rounds: what the hop adds when no process has to be woken on another vCPU. Skipped, with
 *   the reason, without taskset, with fewer than 2 CPUs, or when a backend cannot be pinned.
 * - Throughput: reads by id with 1, 8, 32, 128 concurrent clients (one request in flight each).
 * - Memory: VmRSS of a fresh daemon idle and with 1,000 authenticated idle connections.
 * - Cache: a daemon with performance.cache_enabled: a repeated list (hit) against the same list
 *   after a write that invalidates it (miss).
 *
 * Environment: BENCH_ROUNDS (3), BENCH_ITER (300 single-row requests per round and side),
 * BENCH_ITER_JOIN (200), BENCH_ITER_BULK (30), BENCH_WARMUP (500 requests per operation and side
 * before the rounds; a tenth of it for Bulk), BENCH_TP_SECONDS (2),
 * BENCH_CONNS (1000), BENCH_POOL (20), BENCH_PROFILE=1 (daemon under node --cpu-prof, profile
 * summarized at the end; BENCH_PROFILE_DIR, default bench/results/profiles),
 * BENCH_NODE_FLAGS (the shipped launchers' NODE_OPTIONS, --max-semi-space-size=4),
 * BENCH_OUT (bench/results/latest.json), BENCH_AUDIT_FSYNC=0 (the daemon's audit log without
 * fsync: what the fsync costs; not the specification's setup), BENCH_FLOOR_WARMUP (3000 reads
 * per transport-floor side before its rounds), BENCH_PLACEMENT=0 (no placement measurement).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime } from "effect"
import { execFileSync, execSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { loadConfig } from "../layers/Config.js"
import { executeVia, queryVia, sqlClientLayer } from "../layers/Database.js"
import { fromConfig } from "../layers/Entities.js"
import type { EntityDef } from "../src/entity/Model.js"
import { validateCreate, validateCreateMany, validateUpdate } from "../src/entity/Validate.js"
import { parseFilter, TRUE } from "../src/query/Filter.js"
import { type Access, fullAccess, type Include, makeRepository } from "../src/query/Repository.js"
import type { DatabaseShape } from "../src/services/Database.js"
import { type Client, connect, type Daemon, root, startDaemon } from "../test/support/daemon.js"
import { createDatabase, SERVICE_TOKEN, tempDir, unavailable, writeConfig } from "../test/support/services.js"
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
const CLIENT_COUNTS = [1, 8, 32, 128] as const
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

const loadStart = uptime()
const t0 = performance.now()
log(`dbal-daemon benchmark — ${os.cpus().length} CPUs, node ${process.version}`)
log(`uptime at start: ${loadStart}`)
log(
  `rounds ${ROUNDS}, ${ITER} single-row / ${ITER_JOIN} join / ${ITER_BULK} bulk requests per round and side, pool ${POOL}, daemon ${COMPILED ? "compiled (tsc)" : "through tsx (as npm start)"}${PROFILE ? ", profiled (--cpu-prof)" : ""}`
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
  // Rules: the benchmark user (role god) sees and writes only active pages — a row filter on
  // every PageView operation (reads, the create/update re-check, deletes, the join's include).
  const rulesFile = path.join(dir, "bench_rules.yaml")
  fs.writeFileSync(
    rulesFile,
    JSON.stringify({ rules: [{ roles: ["god"], entities: ["PageView"], operations: "*", filter: { isActive: true } }] }, null, 2)
  )
  const daemonConfigFor = (cacheEnabled: boolean, name: string): string => {
    const cdir = path.join(dir, name)
    fs.mkdirSync(cdir, { recursive: true })
    return writeConfig(
      {
        server: { host: "127.0.0.1", port: 0, max_connections: 20_000, max_connections_per_address: 20_000 },
        database: { ...db.databaseConfig, pool_size: POOL, auto_migrate: true },
        security: {
          audit_log: true,
          audit_log_path: path.join(cdir, "audit", "audit.log"),
          audit: { fsync: AUDIT_FSYNC },
          rate_limit: { enabled: true, requests_per_minute: 100_000_000, burst: 10_000_000 },
          auth: { service_tokens: [{ name: "bench", token: SERVICE_TOKEN }] },
          acl: { rules_file: rulesFile }
        },
        performance: { cache_enabled: cacheEnabled }
      },
      cdir
    )
  }
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
        `import(${JSON.stringify(`file://${path.join(buildDir, "src", "main.js")}`)}).then((m) => m.main(process.argv.slice(1)))`,
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
  const createdDirect: Array<string> = []
  const createdDaemon: Array<string> = []
  let pick = 0
  const nextPage = () => pageIds[(pick = (pick + 7919) % pageIds.length)]!
  const bulkItems = () => Array.from({ length: 100 }, (_, i) => pageData(i, "bulk"))
  // Each side's bulk rows are removed (and the table vacuumed) after its batch, outside the
  // timing: otherwise the side that runs second works on a table 3,000 rows larger, and the
  // write's access check (a COUNT over the 100 ids with the row filter) is planned on the
  // statistics of the seeded table, so it scans the whole table and the sides are not comparable.
  const removeBulkRows = () =>
    run(
      Effect.zipRight(
        sql`DELETE FROM ${sql(pv.table)} WHERE ${sql(pv.byName.get("slug")!.column)} LIKE 'bulk/%'`,
        sql.unsafe(`VACUUM "${pv.table}"`)
      )
    )

  interface Op {
    readonly name: string
    readonly iterations: number
    readonly direct: () => Promise<unknown>
    readonly daemon: () => Promise<unknown>
  }
  const ops: ReadonlyArray<Op> = [
    {
      name: "SELECT",
      iterations: ITER,
      direct: () => run(repo.read(pv, nextPage(), pvAccess)),
      daemon: () => ok(userClient, "read", ["PageView", nextPage()])
    },
    {
      name: "INSERT",
      iterations: ITER,
      direct: async () => createdDirect.push(String((await run(repo.create(pv, right(validateCreate(pv, pageData(1))), pvAccess))).id)),
      daemon: async () => createdDaemon.push(String(((await ok(userClient, "create", ["PageView", pageData(1)])) as { id: string }).id))
    },
    {
      name: "UPDATE",
      iterations: ITER,
      direct: () => run(repo.update(pv, nextPage(), right(validateUpdate(pv, { title: `t ${uniq()}` })), pvAccess)),
      daemon: () => ok(userClient, "update", ["PageView", nextPage(), { title: `t ${uniq()}` }])
    },
    {
      name: "DELETE",
      iterations: ITER,
      direct: async () => {
        const id = createdDirect.pop() ?? String((await run(repo.create(pv, right(validateCreate(pv, pageData(1))), pvAccess))).id)
        return run(repo.remove(pv, id, pvAccess))
      },
      daemon: async () => {
        const id = createdDaemon.pop() ?? ((await ok(userClient, "create", ["PageView", pageData(1)])) as { id: string }).id
        return ok(userClient, "delete", ["PageView", id])
      }
    },
    {
      name: "JOIN",
      iterations: ITER_JOIN,
      direct: () => run(repo.listWithIncludes(ch, TRUE, [], 1, 20, chAccess, [include])),
      daemon: () => ok(userClient, "list", ["ComponentHierarchy", { include: ["page"], limit: 20 }])
    },
    {
      name: "Bulk (100)",
      iterations: ITER_BULK,
      direct: () => run(repo.createMany(pv, right(validateCreateMany(pv, bulkItems())), pvAccess.rowFilter)),
      daemon: () => ok(userClient, "createMany", ["PageView", bulkItems()])
    }
  ]
  // DELETE pops what INSERT created: time only the delete itself.
  const timed = async (n: number, f: () => Promise<unknown>): Promise<Array<number>> => {
    const xs: Array<number> = []
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await f()
      xs.push((performance.now() - t) * 1000)
    }
    return xs
  }
  const warm = Math.max(1, WARMUP)
  const floorClient = await openFloor()
  const floorSides = { raw: () => rawRead(nextPage()), floor: () => floorRead(floorClient, nextPage()) }
  const floorWarm = Math.max(warm, FLOOR_WARMUP)
  await timed(floorWarm, floorSides.raw)
  await timed(floorWarm, floorSides.floor)
  const floorRounds: Record<keyof typeof floorSides, Array<number>> = { raw: [], floor: [] }
  const pinnedSides: typeof floorSides | undefined =
    pinned === undefined ? undefined : { raw: () => readOn(pinned.pool)(nextPage()), floor: () => floorRead(pinned.client, nextPage()) }
  const pinnedRounds: Record<keyof typeof floorSides, Array<number>> = { raw: [], floor: [] }
  if (pinned !== undefined && pinnedSides !== undefined)
    await onOneCpu(pinned, async () => {
      await timed(floorWarm, pinnedSides.raw)
      await timed(floorWarm, pinnedSides.floor)
    })
  for (const op of ops) {
    const n = op.name === "Bulk (100)" ? Math.max(1, Math.ceil(warm / 10)) : warm
    await timed(n, op.direct)
    await timed(n, op.daemon)
    if (op.name === "Bulk (100)") await removeBulkRows()
  }
  type Side = "direct" | "daemon"
  const rounds = new Map<string, Record<Side, Array<{ p50: number; p99: number; mean: number }>>>()
  for (const op of ops) rounds.set(op.name, { direct: [], daemon: [] })
  const tl = performance.now()
  for (let r = 0; r < ROUNDS; r++) {
    for (const op of ops) {
      const order: ReadonlyArray<Side> = r % 2 === 0 ? ["direct", "daemon"] : ["daemon", "direct"]
      for (const side of order) {
        // Pre-create the rows the deletes take, outside the timing.
        if (op.name === "DELETE") {
          const pool = side === "direct" ? createdDirect : createdDaemon
          while (pool.length < op.iterations) {
            if (side === "direct") pool.push(String((await run(repo.create(pv, right(validateCreate(pv, pageData(1))), pvAccess))).id))
            else pool.push(((await ok(userClient, "create", ["PageView", pageData(1)])) as { id: string }).id)
          }
        }
        const xs = await timed(op.iterations, side === "direct" ? op.direct : op.daemon)
        if (op.name === "Bulk (100)") await removeBulkRows()
        rounds.get(op.name)![side].push({ p50: pct(xs, 50), p99: pct(xs, 99), mean: xs.reduce((a, b) => a + b, 0) / xs.length })
      }
    }
    const floorOrder = r % 2 === 0 ? (["raw", "floor"] as const) : (["floor", "raw"] as const)
    for (const side of floorOrder) floorRounds[side].push(pct(await timed(ITER, floorSides[side]), 50))
    if (pinned !== undefined && pinnedSides !== undefined)
      await onOneCpu(pinned, async () => {
        for (const side of floorOrder) pinnedRounds[side].push(pct(await timed(ITER, pinnedSides[side]), 50))
      })
    log(`latency round ${r + 1}/${ROUNDS} done (${((performance.now() - tl) / 1000).toFixed(1)} s)`)
  }
  // The pinned side is done: its server and pools are ended (their backends exit with them).
  if (pinned !== undefined) await endPlacement(pinned)
  const latency = ops.map((op) => {
    const r = rounds.get(op.name)!
    const d50 = median(r.direct.map((x) => x.p50))
    const v50 = median(r.daemon.map((x) => x.p50))
    return {
      operation: op.name,
      iterations: op.iterations,
      direct: { p50: d50, p99: median(r.direct.map((x) => x.p99)) },
      daemon: { p50: v50, p99: median(r.daemon.map((x) => x.p99)) },
      overheadUs: v50 - d50,
      overheadPct: (100 * (v50 - d50)) / d50,
      // Overhead per round (same round, same load) — its median is less exposed to load shifts.
      overheadUsRounds: r.direct.map((d, i) => r.daemon[i]!.p50 - d.p50)
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
  while (floorTpClients.length < 32) floorTpClients.push(await openFloor())
  const throughputOnce = async (side: Side | "raw" | "floor", n: number): Promise<number> => {
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
    // CPU of whoever serves the reads: the daemon (or floor) process, or this process for direct.
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
    counting = false
    stop = true
    await Promise.all(loops)
    const key = `${side}:${n}`
    cpuPerRequest.set(key, [...(cpuPerRequest.get(key) ?? []), (cpu * 1e6) / Math.max(1, done)])
    return done / elapsed
  }
  const tpRounds = new Map<number, Record<Side, Array<number>>>()
  for (const n of CLIENT_COUNTS) tpRounds.set(n, { direct: [], daemon: [] })
  const floorTp: Record<"raw" | "floor", Array<number>> = { raw: [], floor: [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of CLIENT_COUNTS) {
      const order: ReadonlyArray<Side> = r % 2 === 0 ? ["direct", "daemon"] : ["daemon", "direct"]
      for (const side of order) tpRounds.get(n)![side].push(await throughputOnce(side, n))
    }
    for (const side of r % 2 === 0 ? (["raw", "floor"] as const) : (["floor", "raw"] as const))
      floorTp[side].push(await throughputOnce(side, 32))
    log(`throughput round ${r + 1}/${ROUNDS} done`)
  }
  const throughput = CLIENT_COUNTS.map((n) => {
    const r = tpRounds.get(n)!
    const direct = median(r.direct)
    const daemonRps = median(r.daemon)
    return {
      clients: n,
      direct,
      daemon: daemonRps,
      ratio: daemonRps / direct,
      ratioRounds: r.direct.map((d, i) => r.daemon[i]! / d),
      cpuUsPerRequest: { direct: median(cpuPerRequest.get(`direct:${n}`) ?? []), daemon: median(cpuPerRequest.get(`daemon:${n}`) ?? []) }
    }
  })
  const tp32Direct = throughput.find((t) => t.clients === 32)!
  const selectP50 = {
    raw: median(floorRounds.raw),
    floor: median(floorRounds.floor),
    addedUs: median(floorRounds.floor) - median(floorRounds.raw),
    addedUsRounds: floorRounds.floor.map((f, i) => f - floorRounds.raw[i]!)
  }
  const placement =
    pinned === undefined
      ? { measured: false as const, reason: placementWhy }
      : (() => {
          const raw = median(pinnedRounds.raw)
          const fl = median(pinnedRounds.floor)
          const oneVcpu = { raw, floor: fl, addedUs: fl - raw, addedUsRounds: pinnedRounds.floor.map((f, i) => f - pinnedRounds.raw[i]!) }
          return {
            measured: true as const,
            cpu: pinned.cpu,
            pinned: "this process (all threads), a second bare server process (all threads), the PostgreSQL backends of both pools",
            oneVcpu,
            // selectP50 is the free placement (the scheduler's): what the hop adds beyond one vCPU.
            freeAddedUs: selectP50.addedUs,
            crossVcpuUs: selectP50.addedUs - oneVcpu.addedUs
          }
        })()
  const floor = {
    sql: floorSql,
    selectP50,
    placement,
    throughput32: {
      raw: median(floorTp.raw),
      floor: median(floorTp.floor),
      floorOfRaw: median(floorTp.floor) / median(floorTp.raw),
      floorOfDirect: median(floorTp.floor) / tp32Direct.direct,
      cpuUsPerRequest: { raw: median(cpuPerRequest.get("raw:32") ?? []), floor: median(cpuPerRequest.get("floor:32") ?? []) }
    }
  }
  await Promise.all(floorClients.splice(0).map((c) => c.close()))
  floorProcess.kill("SIGTERM")
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
  const sign = (x: number) => (x >= 0 ? "+" : "−")
  const lines: Array<string> = []
  lines.push(`\n### Latency (sequential, 1 client; median of ${ROUNDS} rounds' p50 / p99)\n`)
  lines.push("| Operation | Direct DB p50 | Direct DB p99 | Via Daemon p50 | Via Daemon p99 | Overhead (p50) |")
  lines.push("|-----------|---:|---:|---:|---:|---:|")
  for (const l of latency) {
    lines.push(
      `| ${l.operation} | ${us(l.direct.p50)} | ${us(l.direct.p99)} | ${us(l.daemon.p50)} | ${us(l.daemon.p99)} | ${sign(l.overheadUs)}${us(Math.abs(l.overheadUs))} (${sign(l.overheadPct)}${Math.abs(l.overheadPct).toFixed(0)} %) |`
    )
  }
  lines.push(`\n### Throughput (reads by id, one request in flight per client; median of ${ROUNDS} rounds)\n`)
  lines.push(
    "| Clients | Direct DB req/s | Via Daemon req/s | Daemon / Direct | CPU per request: direct (bench process) / daemon process |"
  )
  lines.push("|---:|---:|---:|---:|---:|")
  for (const t of throughput) {
    lines.push(
      `| ${t.clients} | ${t.direct.toFixed(0)} | ${t.daemon.toFixed(0)} | ${(t.ratio * 100).toFixed(0)} % | ${t.cpuUsPerRequest.direct.toFixed(0)} µs / ${t.cpuUsPerRequest.daemon.toFixed(0)} µs |`
    )
  }
  lines.push(
    `\n### Transport floor (a bare ws + pg server process: no authentication, access rules, rate limit, audit or Effect; same rounds)\n`
  )
  lines.push("| Measure | In this process (pg) | Bare server process | Bare server adds |")
  lines.push("|---|---:|---:|---:|")
  lines.push(
    `| SELECT by id p50 | ${us(floor.selectP50.raw)} | ${us(floor.selectP50.floor)} | ${sign(floor.selectP50.addedUs)}${us(Math.abs(floor.selectP50.addedUs))} |`
  )
  if (floor.placement.measured) {
    const o = floor.placement.oneVcpu
    lines.push(
      `| SELECT by id p50, all processes on one vCPU (this process, the server, their PostgreSQL backends on CPU ${floor.placement.cpu}) | ${us(o.raw)} | ${us(o.floor)} | ${sign(o.addedUs)}${us(Math.abs(o.addedUs))} |`
    )
  }
  lines.push(
    `| Reads/s at 32 clients | ${floor.throughput32.raw.toFixed(0)} | ${floor.throughput32.floor.toFixed(0)} | ${(floor.throughput32.floorOfRaw * 100).toFixed(0)} % of raw pg, ${(floor.throughput32.floorOfDirect * 100).toFixed(0)} % of Direct DB |`
  )
  lines.push(
    `| CPU per read at 32 clients (this process / server process) | ${floor.throughput32.cpuUsPerRequest.raw.toFixed(0)} µs | ${floor.throughput32.cpuUsPerRequest.floor.toFixed(0)} µs | |`
  )
  if (!floor.placement.measured) lines.push(`\nplacement: not measured (${floor.placement.reason})`)
  else {
    const p = floor.placement
    const head = `\nWith every process on one vCPU the bare server adds ${us(p.oneVcpu.addedUs)} instead of ${us(p.freeAddedUs)}`
    lines.push(
      p.crossVcpuUs > p.freeAddedUs / 2
        ? `${head}: most of what the hop costs on this machine (${us(p.crossVcpuUs)}) is waking processes on the other, idle vCPU; ws, JSON and a second Node process account for the ${us(p.oneVcpu.addedUs)} left.`
        : `${head}: waking processes on the other vCPU accounts for ${sign(p.crossVcpuUs)}${us(Math.abs(p.crossVcpuUs))} of the hop's cost here; the rest is the hop itself (ws, JSON, a second Node process).`
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

  const single = latency.filter((l) => ["SELECT", "INSERT", "UPDATE", "DELETE"].includes(l.operation))
  const bulk = latency.find((l) => l.operation === "Bulk (100)")!
  const tp32 = throughput.find((t) => t.clients === 32)!
  const targets = [
    ...single.map((l) => ({
      target: `${l.operation}: added p50 ≤ 150 µs`,
      measured: `${l.overheadUs.toFixed(0)} µs`,
      met: l.overheadUs <= 150
    })),
    { target: "Bulk (100): overhead ≤ 10 %", measured: `${bulk.overheadPct.toFixed(1)} %`, met: bulk.overheadPct <= 10 },
    { target: "Throughput at 32 clients ≥ 60 % of direct", measured: `${(tp32.ratio * 100).toFixed(0)} %`, met: tp32.ratio >= 0.6 },
    {
      target: "RSS with 1,000 idle connections ≤ 150 MB",
      measured: `${memory.connectionsMb.toFixed(1)} MB`,
      met: memory.connectionsMb <= 150 && memory.connections >= 1000
    },
    { target: "Cache hit ≥ 3× faster than a miss", measured: `${cache.ratio.toFixed(1)}×`, met: cache.ratio >= 3 }
  ]
  lines.push("\n### Targets\n")
  lines.push("| Target | Measured | Met |")
  lines.push("|---|---:|:---:|")
  for (const t of targets) lines.push(`| ${t.target} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`)
  lines.push(`\nuptime at start: ${loadStart}\nuptime at end:   ${loadEnd}`)
  lines.push(
    `total ${((performance.now() - t0) / 1000).toFixed(0)} s${PROFILE ? " (daemon profiled: its numbers include the profiler's cost)" : ""}`
  )
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
        daemon: { compiled: COMPILED, nodeFlags: NODE_FLAGS },
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
          auditFsync: AUDIT_FSYNC
        },
        setup: {
          direct:
            "the daemon's Repository (makeRepository) in-process on the daemon's pg pool layer, every statement through @effect/sql-pg, with the access decision the daemon computes for the user",
          daemon: `separate process; session token of a god user; ACL row filter isActive=true on PageView; rate limit on; audit file ${AUDIT_FSYNC ? "with" : "WITHOUT"} fsync`
        },
        unit: "µs (latency), requests/s (throughput), MB (memory)",
        latency,
        throughput,
        floor,
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
