/**
 * What the A/B benchmarks (bench/read-ab.ts, write-ab.ts, bulk-ab.ts) share: each checkout given
 * compiled and started as a daemon, and the benchmark's user, session and pages.
 */
import { execSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Client, connect, type Daemon, startDaemon } from "../test/support/daemon.js"
import { SERVICE_TOKEN, type TestDatabase } from "../test/support/services.js"

export const pct = (xs: ReadonlyArray<number>, p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!
export const median = (xs: ReadonlyArray<number>) => pct(xs, 50)

/** utime + stime of a process (/proc/<pid>/stat, 10 ms ticks), or of this one when `pid` is undefined, in µs. */
export const cpuOf = (pid: number | undefined): number => {
  if (pid === undefined) {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6
}

/** A request that must succeed: its result. */
export const ok = async (c: Client, method: string, params: ReadonlyArray<unknown>): Promise<unknown> => {
  const a = await c.call(method, params)
  if (a.error !== undefined) throw new Error(`${method} failed: ${JSON.stringify(a.error)}`)
  return a.result
}

/**
 * Compiles the checkout in `folder` (tsc, into <folder>/.read-ab-build/<i>: inside the folder, so
 * that its own node_modules resolve; outside what its type check includes) and starts its daemon
 * with the shipped `--max-semi-space-size=4`, `flags`, and `--cpu-prof` into `profileDir` if given.
 */
const startBuild = async (
  folder: string,
  i: number,
  configFile: string,
  options: { readonly flags?: ReadonlyArray<string>; readonly profileDir?: string | undefined } = {}
): Promise<Daemon> => {
  const build = path.join(folder, ".read-ab-build", String(i))
  console.log(`compiling ${folder} ...`)
  execSync(`npx tsc -p tsconfig.build.json --outDir ${JSON.stringify(build)}`, { cwd: folder, stdio: "inherit" })
  const entry = `import(${JSON.stringify(`file://${path.join(build, "app", "main.js")}`)}).then((m) => m.main(process.argv.slice(1)))`
  return startDaemon([`--config=${configFile}`], {
    command: [
      process.execPath,
      "--max-semi-space-size=4",
      ...(options.flags ?? []),
      ...(options.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`]),
      "--input-type=module",
      "-e",
      entry,
      "--"
    ],
    timeoutMs: 60_000
  })
}

/**
 * The benchmark's user (role `god`, whose rule has the row filter) and a session token of it,
 * made through a service connection, then `pages` PageView records.
 */
const makeBenchUser = async (
  service: Client,
  pages: ReadonlyArray<object>
): Promise<{ readonly userId: string; readonly token: string }> => {
  const user = (await ok(service, "create", [
    "User",
    { username: `ab_${randomBytes(4).toString("hex")}`, email: `ab_${randomBytes(4).toString("hex")}@example.com`, role: "god" }
  ])) as { id: string }
  const token = randomBytes(24).toString("hex")
  await ok(service, "create", ["Session", { userId: user.id, token, expiresAt: new Date(Date.now() + 86_400_000).toISOString() }])
  await ok(service, "createMany", ["PageView", pages])
  return { userId: user.id, token }
}

export interface Sides {
  readonly daemons: ReadonlyArray<{ readonly name: string; readonly daemon: Daemon }>
  readonly user: { readonly userId: string; readonly token: string }
  /** The database's URL for raw pg. */
  readonly pgUrl: string
}

/**
 * One daemon per checkout (`folders`, each with its config file and start options), the
 * benchmark's user and 1,000 pages made through the first with the service token, and the
 * database's URL for the raw pg side. What is started is added to `cleanups`.
 */
export const startSides = async (
  db: TestDatabase,
  folders: ReadonlyArray<string>,
  configOf: (i: number) => string,
  optionsOf: (i: number) => { readonly flags?: ReadonlyArray<string>; readonly profileDir?: string | undefined },
  cleanups: Array<() => Promise<unknown>>
): Promise<Sides> => {
  const daemons = []
  for (const [i, folder] of folders.entries()) {
    const d = await startBuild(folder, i, configOf(i), optionsOf(i))
    cleanups.push(() => d.stop())
    daemons.push({ name: `daemon${i} ${path.basename(folder)}`, daemon: d })
  }
  const service = await connect(daemons[0]!.daemon.port, { token: SERVICE_TOKEN, user_id: "bench" })
  cleanups.push(() => service.close())
  const user = await makeBenchUser(
    service,
    Array.from({ length: 1000 }, (_, i) => ({ slug: `ab/${i}`, title: `page ${i}`, level: 1 + (i % 5), layout: { n: i } }))
  )
  const conn = db.databaseConfig.connection as { host: string; port: number; database: string; user: string }
  const pgUrl = `postgres://${encodeURIComponent(conn.user)}@${conn.host}:${conn.port}/${encodeURIComponent(conn.database)}`
  return { daemons, user, pgUrl }
}
