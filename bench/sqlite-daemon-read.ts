/**
 * A read by id through the daemon on SQLite: the latency a client sees over a real WebSocket
 * (service token, no audit, no rate limit), in alternating rounds. Each package folder given runs
 * its own daemon on its own copy of the same database, so two versions of the daemon can be
 * compared on one machine at one time (e.g. this folder and a `git archive` of an earlier commit
 * with node_modules linked in). Prints the median and p90 of each round and the medians of the
 * rounds per folder.
 *
 *   npx tsx bench/sqlite-daemon-read.ts [rounds=6] [reads per round=2000] [package folder...]
 */
import * as path from "node:path"
import { connect, root, startDaemon } from "../test/support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, writeConfig } from "../test/support/services.js"

const rounds = Number(process.argv[2] ?? 6)
const reads = Number(process.argv[3] ?? 2000)
const folders = process.argv.length > 4 ? process.argv.slice(4).map((f) => path.resolve(f)) : [root]

const quantile = (xs: ReadonlyArray<number>, q: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)]!

const main = async () => {
  const sides = await Promise.all(
    folders.map(async (folder) => {
      const db = await createDatabase("sqlite")
      const daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db))}`], {
        command: [process.execPath, path.join(folder, "bin", "dbal-daemon.mjs")],
        timeoutMs: 60_000
      })
      const client = await connect(daemon.port, serviceAuth)
      const created = await client.call("create", ["PageView", { slug: "bench", title: "Bench", level: 1, layout: {} }])
      if (created.error !== undefined) throw new Error(JSON.stringify(created.error))
      const id = (created.result as { id: string }).id
      return { folder, db, daemon, client, id, medians: [] as Array<number>, p90s: [] as Array<number> }
    })
  )
  for (const s of sides) for (let i = 0; i < 500; i++) await s.client.call("read", ["PageView", s.id])
  for (let round = 0; round < rounds; round++) {
    for (const s of round % 2 === 0 ? sides : [...sides].reverse()) {
      const each: Array<number> = []
      for (let i = 0; i < reads; i++) {
        const t0 = performance.now()
        const r = await s.client.call("read", ["PageView", s.id])
        each.push((performance.now() - t0) * 1000)
        if (r.error !== undefined) throw new Error(JSON.stringify(r.error))
      }
      s.medians.push(quantile(each, 0.5))
      s.p90s.push(quantile(each, 0.9))
      console.log(`round ${round + 1} ${s.folder}: median ${quantile(each, 0.5).toFixed(0)} µs, p90 ${quantile(each, 0.9).toFixed(0)} µs`)
    }
  }
  for (const s of sides) {
    console.log(
      `${s.folder}: medians ${s.medians.map((x) => x.toFixed(0)).join(", ")} µs (median ${quantile(s.medians, 0.5).toFixed(0)}); p90 ${s.p90s.map((x) => x.toFixed(0)).join(", ")} µs (median ${quantile(s.p90s, 0.5).toFixed(0)})`
    )
    await s.client.close()
    await s.daemon.stop()
    await s.db.drop()
  }
}

void main()
