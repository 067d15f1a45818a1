/**
 * Throughput cost of the audit log and of its fsync (group commit), measured in one run:
 * the daemon process is started three times per dialect — audit off, audit on with fsync off,
 * audit on with fsync on — each on a fresh database, and 32 WebSocket clients (one request in
 * flight each) create PageViews for ~5 s after a short warm-up. Prints creates per second
 * and the ratios. The three modes run in rounds (3 by default, the order rotating each round)
 * and the median of each is compared, so that a burst of load elsewhere on the machine does
 * not land on one mode only; the load average is printed with the results.
 * Run: npx tsx bench/audit.ts [seconds] [rounds]
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Client, connect, startDaemon } from "../test/support/daemon.js"
import { createDatabase, daemonConfig, type DialectName, serviceAuth, tempDir, unavailable, writeConfig } from "../test/support/services.js"

const CLIENTS = 32
const SECONDS = Number(process.argv[2] ?? 5)
const ROUNDS = Number(process.argv[3] ?? 3)
const WARMUP_MS = 500

type Mode = "audit off" | "audit, fsync off" | "audit, fsync on"
const MODES: ReadonlyArray<Mode> = ["audit off", "audit, fsync off", "audit, fsync on"]

const securityFor = (mode: Mode, dir: string): Record<string, unknown> =>
  mode === "audit off"
    ? { audit_log: false }
    : { audit_log: true, audit_log_path: path.join(dir, "audit", "audit.log"), audit: { fsync: mode === "audit, fsync on" } }

const measure = async (dialect: DialectName, mode: Mode): Promise<{ rps: number; errors: number; auditLines: number }> => {
  const db = await createDatabase(dialect)
  const dir = tempDir("bench-audit")
  const base = daemonConfig(db)
  const config = { ...base, security: { ...(base.security as Record<string, unknown>), ...securityFor(mode, dir) } }
  const daemon = await startDaemon([`--config=${writeConfig(config, dir)}`])
  const clients: Array<Client> = []
  try {
    for (let i = 0; i < CLIENTS; i++) clients.push(await connect(daemon.port, serviceAuth))
    const run = randomBytes(3).toString("hex")
    let counting = false
    let stop = false
    let ok = 0
    let errors = 0
    const loop = async (c: Client, lane: number) => {
      for (let n = 0; !stop; n++) {
        const a = await c.call("create", ["PageView", { slug: `b-${run}-${lane}-${n}`, title: "bench", level: 1, layout: { n } }])
        if (!counting) continue
        if (a.error === undefined) ok++
        else errors++
      }
    }
    const loops = clients.map((c, i) => loop(c, i))
    await new Promise((r) => setTimeout(r, WARMUP_MS))
    counting = true
    const t0 = performance.now()
    await new Promise((r) => setTimeout(r, SECONDS * 1000))
    counting = false
    const elapsed = (performance.now() - t0) / 1000
    stop = true
    await Promise.all(loops)
    const auditFile = path.join(dir, "audit", "audit.log")
    const auditLines = fs.existsSync(auditFile)
      ? fs
          .readFileSync(auditFile, "utf8")
          .split("\n")
          .filter((l) => l !== "").length
      : 0
    return { rps: ok / elapsed, errors, auditLines }
  } finally {
    for (const c of clients) await c.close()
    await daemon.stop()
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")

console.log(`${CLIENTS} clients, ${SECONDS} s per run, ${ROUNDS} rounds, ${os.cpus().length} CPUs, load average at start ${load()}`)
const results: Array<{ dialect: DialectName; mode: Mode; rps: number }> = []
for (const dialect of ["sqlite", "postgresql"] as const) {
  const why = await unavailable(dialect)
  if (why !== undefined) {
    console.log(`skipping ${dialect}: ${why}`)
    continue
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < MODES.length; k++) {
      const mode = MODES[(k + round) % MODES.length]!
      const r = await measure(dialect, mode)
      results.push({ dialect, mode, rps: r.rps })
      console.log(
        `${dialect.padEnd(10)} round ${round + 1} ${mode.padEnd(17)} ${r.rps.toFixed(0).padStart(7)} creates/s  (${r.errors} errors, ${r.auditLines} audit lines)`
      )
    }
  }
}

console.log(`\nload average at end ${load()}; medians of ${ROUNDS} runs:`)
for (const dialect of new Set(results.map((r) => r.dialect))) {
  const of = (m: Mode) => median(results.filter((r) => r.dialect === dialect && r.mode === m).map((r) => r.rps))
  const off = of("audit off")
  const nofsync = of("audit, fsync off")
  const fsync = of("audit, fsync on")
  console.log(
    `${dialect.padEnd(10)} audit off ${off.toFixed(0)}/s, audit fsync off ${nofsync.toFixed(0)}/s, audit fsync on ${fsync.toFixed(0)}/s`
  )
  console.log(
    `${"".padEnd(10)} fsync on / audit off = ${(fsync / off).toFixed(2)}, fsync off / audit off = ${(nofsync / off).toFixed(2)}, fsync on / fsync off = ${(fsync / nofsync).toFixed(2)}`
  )
}
