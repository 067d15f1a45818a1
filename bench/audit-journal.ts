/**
 * What the audit journal (docs/security.md, "The journal") saves a write, on the local
 * PostgreSQL: three daemon processes on one database, each with the audit file and fsync on —
 * `journal` (the record committed by the write's own statement), `fsync` (journal off: the write
 * waits for the file's fsync) and, as the reference, `audit off` — and one WebSocket client per
 * daemon (service token, no row filter). Per round, each daemon in turn (the order rotating)
 * answers BENCH_ITER (300) creates, updates by id and deletes by id, one at a time; the p50 of
 * each round is kept and the median over BENCH_ROUNDS (5) rounds printed, with the disk's own
 * fdatasync p50 measured in between. Single-client latency: the fsync is then not shared by
 * concurrent writes (group commit), the case the journal is for.
 * Run: npx tsx bench/audit-journal.ts
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Client, connect, type Daemon, startDaemon } from "../test/support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, tempDir, unavailable, writeConfig } from "../test/support/services.js"

const ITER = Number(process.env.BENCH_ITER ?? 300)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

type Mode = "journal" | "fsync" | "audit off"
const MODES: ReadonlyArray<Mode> = ["journal", "fsync", "audit off"]
type Op = "create" | "update" | "delete"
const OPS: ReadonlyArray<Op> = ["create", "update", "delete"]

const securityFor = (mode: Mode, dir: string): Record<string, unknown> =>
  mode === "audit off"
    ? { audit_log: false }
    : { audit_log: true, audit_log_path: path.join(dir, "audit", "audit.log"), audit: { fsync: true, journal: mode === "journal" } }

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** p50 of one fdatasync of a small append, on the folder the audit files are in. */
const fsyncP50 = (dir: string): number => {
  const file = path.join(dir, "probe.log")
  const fd = fs.openSync(file, "a")
  const times: Array<number> = []
  for (let i = 0; i < 50; i++) {
    fs.writeSync(fd, `{"probe":${i}}\n`)
    const t = performance.now()
    fs.fdatasyncSync(fd)
    times.push((performance.now() - t) * 1000)
  }
  fs.closeSync(fd)
  return median(times)
}

const main = async () => {
  const why = await unavailable("postgresql")
  if (why !== undefined) throw new Error(`PostgreSQL is needed: ${why}`)
  const db = await createDatabase("postgresql")
  const root = tempDir("bench-journal")
  const daemons = new Map<Mode, { daemon: Daemon; client: Client }>()
  const p50s = new Map<string, Array<number>>()
  const fsyncs: Array<number> = []
  try {
    for (const mode of MODES) {
      const dir = path.join(root, mode.replace(" ", "-"))
      fs.mkdirSync(dir, { recursive: true })
      const base = daemonConfig(db)
      const config = { ...base, security: { ...(base.security as Record<string, unknown>), ...securityFor(mode, dir) } }
      const daemon = await startDaemon([`--config=${writeConfig(config, dir)}`])
      daemons.set(mode, { daemon, client: await connect(daemon.port, serviceAuth) })
    }
    const run = randomBytes(3).toString("hex")
    let n = 0
    const one = async (client: Client, op: Op, ids: Array<string>): Promise<number> => {
      const t = performance.now()
      const a =
        op === "create"
          ? await client.call("create", ["PageView", { slug: `j-${run}-${n++}`, title: "bench", level: 1, layout: {} }])
          : op === "update"
            ? await client.call("update", ["PageView", ids[n++ % ids.length], { title: `t${n}` }])
            : await client.call("delete", ["PageView", ids.pop()])
      const us = (performance.now() - t) * 1000
      if (a.error !== undefined) throw new Error(`${op}: ${JSON.stringify(a.error)}`)
      if (op === "create") ids.push((a.result as { id: string }).id)
      return us
    }
    // Warm-up: each daemon's code paths and statements, before any round counts.
    for (const { client } of daemons.values()) {
      const ids: Array<string> = []
      for (const op of OPS) for (let i = 0; i < 200; i++) await one(client, op, ids)
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]!)
      for (const mode of order) {
        const { client } = daemons.get(mode)!
        const ids: Array<string> = []
        for (const op of OPS) {
          const times: Array<number> = []
          for (let i = 0; i < ITER; i++) times.push(await one(client, op, ids))
          const key = `${mode} ${op}`
          p50s.set(key, [...(p50s.get(key) ?? []), median(times)])
        }
      }
      fsyncs.push(fsyncP50(root))
    }
    const row = (op: Op) => {
      const m = (mode: Mode) => median(p50s.get(`${mode} ${op}`) ?? [])
      const journal = m("journal")
      const fsync = m("fsync")
      const off = m("audit off")
      return `| ${op} | ${journal.toFixed(0)} µs | ${fsync.toFixed(0)} µs | ${off.toFixed(0)} µs | ${(fsync - journal).toFixed(0)} µs | ${(journal - off).toFixed(0)} µs |`
    }
    console.log(`\nAudit journal vs fsync on PostgreSQL: p50 per round, median of ${ROUNDS} rounds of ${ITER} (one client per daemon)\n`)
    console.log("| Write | journal | fsync (journal off) | audit off | journal saves | journal costs over audit off |")
    console.log("|---|---:|---:|---:|---:|---:|")
    for (const op of OPS) console.log(row(op))
    console.log(`\nfdatasync of one small append, p50 per round: ${fsyncs.map((f) => f.toFixed(0)).join(" / ")} µs`)
    console.log(
      `load average at end: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`
    )
  } finally {
    for (const { daemon, client } of daemons.values()) {
      await client.close()
      await daemon.stop()
    }
    await db.drop()
    fs.rmSync(root, { recursive: true, force: true })
  }
}

await main()
