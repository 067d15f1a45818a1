/**
 * `npx tsx bench/realtime.ts`: the realtime targets of docs/realtime.md on the local PostgreSQL,
 * one daemon process (a fresh database, dropped at the end).
 *
 * - 100 connections × 100 subscriptions to PageView = 10,000, of mixed principals: users (whose
 *   access rule has a row filter, level <= 3, and read_fields), admins and the service role,
 *   with subscription filters on title and level (all admit the benchmark's rows, so every
 *   change fans out to every subscription). The subscribing connections run in a worker thread
 *   (BENCH_RT_SUBSCRIBERS=inline: in the readers' thread), so that receiving 10,000 frames per
 *   change does not stall the readers' event loop; they still use the same two CPUs.
 * - Rounds (BENCH_RT_ROUNDS, 5), in alternating order (without then with, with then without, …):
 *   read throughput of 32 clients reading by id for BENCH_TP_SECONDS (3) while a writer changes
 *   a row BENCH_RT_RATE (5) times a second, without and with the 10,000 subscriptions; and
 *   BENCH_RT_CHANGES (20) changes (creates and updates, alternating) one at a time, without
 *   subscriptions and with them, each waiting for every subscription's event.
 * - Delivery: the time from sending a write to each subscription's event arriving (p50/p99/max
 *   over every delivery of every round), and the daemon's own dbal_realtime_delivery_seconds.
 * - Queries: dbal_realtime_fetches_total per change, hence per subscriber.
 * - CPU: the daemon's (/proc) and this process's per phase; the daemon's CPU per change fanned
 *   out (the same changes' CPU without subscriptions subtracted) and per read: less sensitive
 *   than reads/s to other processes taking the CPUs.
 * - Memory: the daemon's VmRSS with the 100 connections open and no subscriptions, then with the
 *   10,000 subscriptions.
 *
 * Prints a table and writes bench/results/realtime.json (or BENCH_OUT). BENCH_PROFILE=1 runs the
 * daemon under node --cpu-prof (BENCH_PROFILE_DIR, default bench/results/profiles).
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Worker } from "node:worker_threads"
import { type Daemon, root, startDaemon } from "../test/support/daemon.js"
import { createDatabase, SERVICE_TOKEN, tempDir, unavailable, writeConfig } from "../test/support/services.js"
import { type Conn, makeSubscribers, now, ok, open, type Rec, type Subscribers, type SubscribersSetup } from "./realtime-clients.js"

const env = (k: string, d: number) => (process.env[k] === undefined || process.env[k] === "" ? d : Number(process.env[k]))
const CONNECTIONS = env("BENCH_RT_CONNECTIONS", 100)
const PER_CONNECTION = env("BENCH_RT_PER_CONNECTION", 100)
const CHANGES = env("BENCH_RT_CHANGES", 20)
const RATE = env("BENCH_RT_RATE", 5)
const TP_SECONDS = env("BENCH_TP_SECONDS", 3)
const TP_CLIENTS = env("BENCH_TP_CLIENTS", 32)
const ROUNDS = env("BENCH_RT_ROUNDS", 5)
/** worker (default): the subscribing connections in a worker thread; inline: in the readers' thread. */
const SUBSCRIBERS = process.env.BENCH_RT_SUBSCRIBERS === "inline" ? "inline" : "worker"
const OUT = path.resolve(process.env.BENCH_OUT ?? path.join(root, "bench", "results", "realtime.json"))
const PROFILE = process.env.BENCH_PROFILE === "1"
const PROFILE_DIR = path.resolve(process.env.BENCH_PROFILE_DIR ?? path.join(root, "bench", "results", "profiles"))

/** The subscribing side in a worker thread, behind the same interface. */
const subscribersInWorker = (setup: SubscribersSetup): Promise<Subscribers> =>
  new Promise((resolve, reject) => {
    // A worker does not get tsx's loader hooks from the parent (Node 20): it registers them first.
    const script = new URL("./realtime-subscribers.ts", import.meta.url).href
    const worker = new Worker(`import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(script)}) })`, {
      eval: true,
      workerData: setup
    })
    const waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>()
    let n = 0
    const call = <T>(method: keyof Subscribers, arg?: number) =>
      new Promise<T>((ok, fail) => {
        waiting.set(++n, { ok: ok as (v: unknown) => void, fail })
        worker.postMessage({ n, method, arg })
      })
    worker.on("error", reject)
    worker.on("message", (m: { n: number; result?: unknown; error?: string }) => {
      if (m.n === 0) {
        if (m.error !== undefined) return reject(new Error(m.error))
        return resolve({
          subscribeAll: () => call<number>("subscribeAll"),
          unsubscribeAll: () => call<void>("unsubscribeAll"),
          arm: (count) => call<void>("arm", count),
          done: () => call<Array<number>>("done"),
          close: async () => {
            await call<void>("close")
            await worker.terminate()
          }
        })
      }
      const w = waiting.get(m.n)
      waiting.delete(m.n)
      if (m.error !== undefined) w?.fail(new Error(m.error))
      else w?.ok(m.result)
    })
  })

const rssMb = (pid: number): number => {
  const text = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(text)?.[1] ?? Number.NaN) / 1024
}

const metric = async (port: number, name: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN

const settle = () => new Promise((r) => setTimeout(r, 1000))

/** CPU time (user + system) of process `pid` so far, milliseconds. */
const cpuMs = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

interface Phase {
  readonly readsPerSecond: number
  /** CPU milliseconds per second of the phase: the daemon's, and this process's (readers, writer, subscribers). */
  readonly daemonCpu: number
  readonly benchCpu: number
}

/** Reads by id from `clients` connections for `seconds`, while `writer` changes a row `RATE` times a second. */
const throughput = async (clients: ReadonlyArray<Conn>, id: string, writer: Conn, pageId: string, pid: number): Promise<Phase> => {
  let reads = 0
  let stop = false
  let level = 1
  const daemon0 = cpuMs(pid)
  const bench0 = process.cpuUsage()
  const writes = (async () => {
    while (!stop) {
      const t0 = performance.now()
      await ok(writer, "update", ["PageView", pageId, { level: (level++ % 3) + 1 }])
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / RATE - (performance.now() - t0))))
    }
  })()
  const start = performance.now()
  const end = start + TP_SECONDS * 1000
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        await ok(c, "read", ["PageView", id])
        reads++
      }
    })
  )
  const seconds = (performance.now() - start) / 1000
  const bench = process.cpuUsage(bench0)
  const daemonCpu = (cpuMs(pid) - daemon0) / seconds
  stop = true
  await writes
  return { readsPerSecond: reads / TP_SECONDS, daemonCpu, benchCpu: (bench.user + bench.system) / 1000 / seconds }
}

const main = async () => {
  const why = await unavailable("postgresql")
  if (why !== undefined) throw new Error(why)
  const db = await createDatabase("postgresql")
  const dir = tempDir("bench-realtime")
  const rules = path.join(dir, "rules.yaml")
  fs.writeFileSync(
    rules,
    "rules:\n  - roles: user\n    entities: PageView\n    operations: read\n    filter: { level: { lte: 3 } }\n    read_fields: [id, slug, title, level, layout]\n"
  )
  let daemon: Daemon | undefined
  let subscribers: Subscribers | undefined
  try {
    daemon = await startDaemon(
      [
        `--config=${writeConfig(
          {
            server: { host: "127.0.0.1", port: 0, max_connections: 2000, max_connections_per_address: 2000 },
            database: { ...(db.databaseConfig as Rec), pool_size: 20 },
            security: {
              audit_log: false,
              rate_limit: { enabled: false },
              acl: { rules_file: rules },
              auth: { service_tokens: [{ name: "bench", token: SERVICE_TOKEN }], failed_auth: { burst: 10000, per_minute: 10000 } }
            },
            realtime: {
              max_subscriptions_per_connection: 1000,
              max_subscriptions_per_principal: 100_000,
              max_buffered_bytes: 64 * 1024 * 1024
            }
          },
          dir
        )}`
      ],
      {
        timeoutMs: 120_000,
        ...(PROFILE
          ? { command: [process.execPath, "--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, path.join(root, "bin", "dbal-daemon.mjs")] }
          : {})
      }
    )
    const port = daemon.port
    const pid = daemon.process.pid!
    const system = await open(port, { token: SERVICE_TOKEN, user_id: "bench" })
    // Principals: 10 users (row filter + read_fields), 5 admins, and the service role.
    const principals: Array<Rec> = [{ token: SERVICE_TOKEN, user_id: "bench" }]
    for (let i = 0; i < 15; i++) {
      const name = `rt${randomUUID().slice(0, 8)}`
      const user = await ok(system, "create", ["User", { username: name, email: `${name}@example.com`, role: i < 10 ? "user" : "admin" }])
      const token = `session-${randomUUID()}`
      await ok(system, "create", ["Session", { userId: user.id, token, expiresAt: "2099-01-01T00:00:00Z" }])
      principals.push({ token, user_id: user.id })
    }
    const readers: Array<Conn> = []
    for (let i = 0; i < TP_CLIENTS; i++) readers.push(await open(port, { token: SERVICE_TOKEN, user_id: "bench" }))
    const tag = `rt-${randomUUID().slice(0, 8)}`
    const target = await ok(system, "create", ["PageView", { slug: `${tag}-read`, title: "read target", level: 1, layout: {} }])
    const churn = await ok(system, "create", ["PageView", { slug: `${tag}-churn`, title: "churn", level: 1, layout: {} }])

    const filters: Array<Rec | undefined> = [
      undefined,
      { filter: { title: tag } },
      { filter: { level: { lte: 3 } } },
      { filter: { AND: [{ title: { startsWith: "rt-" } }, { level: { gte: 1 } }] } }
    ]
    const setup: SubscribersSetup = { port, principals, connections: CONNECTIONS, perConnection: PER_CONNECTION, filters }
    subscribers = SUBSCRIBERS === "worker" ? await subscribersInWorker(setup) : await makeSubscribers(setup)
    const subs = subscribers
    const subscribeAll = () => subs.subscribeAll()
    const unsubscribeAll = async () => {
      await subs.unsubscribeAll()
      if ((await metric(port, "dbal_realtime_subscriptions")) !== 0) throw new Error("subscriptions left after unsubscribing")
    }
    /**
     * CHANGES changes, one at a time; with `latencies`, each waits for every subscription's event
     * and notes its delivery time. The daemon's CPU milliseconds and row reads meanwhile.
     */
    let serial = 0
    const changes = async (latencies?: Array<number>): Promise<{ cpuMs: number; fetches: number }> => {
      const fetchesBefore = await metric(port, "dbal_realtime_fetches_total")
      const cpu0 = cpuMs(pid)
      let page: Rec | undefined
      for (let k = 0; k < CHANGES; k++) {
        if (latencies !== undefined) await subs.arm(subscriptions)
        const sent = now()
        page =
          page === undefined || k % 2 === 0
            ? await ok(system, "create", ["PageView", { slug: `${tag}-${++serial}`, title: tag, level: 1 + (k % 3), layout: { k } }])
            : await ok(system, "update", ["PageView", String(page.id), { layout: { k } }])
        if (latencies !== undefined) for (const at of await subs.done()) latencies.push(at - sent)
      }
      const cpu = cpuMs(pid) - cpu0
      return { cpuMs: cpu, fetches: (await metric(port, "dbal_realtime_fetches_total")) - fetchesBefore }
    }
    const measure = () => throughput(readers, String(target.id), system, String(churn.id), pid)

    // Warm-up. RSS is taken in the first round just before and just after subscribing (each after
    // the same settling), so that both readings see the same state but for the subscriptions.
    await measure()
    let rssBefore = Number.NaN

    // Rounds of the throughput without and with the subscriptions, in alternating order (ABBA…),
    // so that drift over the run (other load, the table's growth) falls on both sides.
    const rounds: Array<{ without: Phase; with: Phase; ratio: number }> = []
    let subscriptions = 0
    let subscribeSeconds = 0
    let rssAfter = Number.NaN
    const latencies: Array<number> = []
    let fetches = 0
    const fanOutCpu: Array<number> = []
    for (let r = 0; r < ROUNDS; r++) {
      let without: Phase
      let withSubs: Phase
      let quiet: { cpuMs: number }
      let loud: { cpuMs: number; fetches: number }
      if (r % 2 === 0) {
        without = await measure()
        quiet = await changes()
        if (r === 0) {
          await settle()
          rssBefore = rssMb(pid)
        }
        const seconds = await subscribeAll()
        if (r === 0) {
          subscribeSeconds = seconds
          subscriptions = await metric(port, "dbal_realtime_subscriptions")
          await settle()
          rssAfter = rssMb(pid)
        }
        loud = await changes(latencies)
        withSubs = await measure()
      } else {
        withSubs = await measure()
        loud = await changes(latencies)
        await unsubscribeAll()
        quiet = await changes()
        without = await measure()
      }
      fetches += loud.fetches
      fanOutCpu.push((loud.cpuMs - quiet.cpuMs) / CHANGES)
      rounds.push({ without, with: withSubs, ratio: withSubs.readsPerSecond / without.readsPerSecond })
      console.error(
        `round ${r + 1}: ${without.readsPerSecond.toFixed(0)} → ${withSubs.readsPerSecond.toFixed(0)} reads/s (${((withSubs.readsPerSecond / without.readsPerSecond) * 100).toFixed(0)} %); CPU ms/s daemon ${without.daemonCpu.toFixed(0)} → ${withSubs.daemonCpu.toFixed(0)}, bench ${without.benchCpu.toFixed(0)} → ${withSubs.benchCpu.toFixed(0)}; daemon CPU per change ${(quiet.cpuMs / CHANGES).toFixed(1)} → ${(loud.cpuMs / CHANGES).toFixed(1)} ms`
      )
    }
    const deliveries = latencies.length
    const changesTimed = CHANGES * ROUNDS
    latencies.sort((a, b) => a - b)
    const median = (xs: ReadonlyArray<number>) =>
      quantile(
        [...xs].sort((a, b) => a - b),
        0.5
      )
    const tpBefore = median(rounds.map((x) => x.without.readsPerSecond))
    const tpAfter = median(rounds.map((x) => x.with.readsPerSecond))
    const ratio = median(rounds.map((x) => x.ratio))
    // The CPU the daemon spends per read (its fan-out included): less sensitive than reads/s to
    // other processes taking the CPUs.
    const perRead = (p: Phase) => p.daemonCpu / p.readsPerSecond
    const cpuPerRead = { withoutMs: median(rounds.map((x) => perRead(x.without))), withMs: median(rounds.map((x) => perRead(x.with))) }

    const result = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg() },
      settings: { CONNECTIONS, PER_CONNECTION, CHANGES, RATE, TP_SECONDS, TP_CLIENTS, ROUNDS },
      subscriptions,
      subscribeSeconds,
      delivery: {
        deliveries,
        p50Ms: quantile(latencies, 0.5),
        p99Ms: quantile(latencies, 0.99),
        maxMs: latencies[latencies.length - 1],
        daemonSum: await metric(port, "dbal_realtime_delivery_seconds_sum"),
        daemonCount: await metric(port, "dbal_realtime_delivery_seconds_count")
      },
      queries: { fetches, perChange: fetches / changesTimed, perSubscriberPerChange: fetches / changesTimed / subscriptions },
      fanOutCpuMsPerChange: { median: median(fanOutCpu), rounds: fanOutCpu },
      memory: { rssBeforeMb: rssBefore, rssAfterMb: rssAfter, deltaMb: rssAfter - rssBefore },
      throughput: { readsPerSecondBefore: tpBefore, readsPerSecondAfter: tpAfter, ratio, rounds, daemonCpuPerRead: cpuPerRead }
    }
    fs.mkdirSync(path.dirname(OUT), { recursive: true })
    fs.writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`)
    const row = (k: string, v: string, target: string) => console.log(`| ${k} | ${v} | ${target} |`)
    console.log("| measure | result | target |\n| --- | --- | --- |")
    row("subscriptions", `${subscriptions} (${CONNECTIONS} × ${PER_CONNECTION}), made in ${subscribeSeconds.toFixed(1)} s`, "10,000")
    row(
      "delivery p50 / p99 / max",
      `${result.delivery.p50Ms.toFixed(1)} / ${result.delivery.p99Ms.toFixed(1)} / ${result.delivery.maxMs?.toFixed(1)} ms (${deliveries} deliveries)`,
      "p99 ≤ 100 ms"
    )
    row(
      "daemon-side fan-out (mean)",
      `${((result.delivery.daemonSum / Math.max(1, result.delivery.daemonCount)) * 1000).toFixed(1)} ms`,
      "—"
    )
    row(
      "row reads per change",
      `${result.queries.perChange} (per subscriber: ${result.queries.perSubscriberPerChange.toExponential(1)})`,
      "0 per subscriber"
    )
    row("RSS", `${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MB (+${result.memory.deltaMb.toFixed(0)} MB)`, "≤ +100 MB")
    row(
      "reads/s, writer at " + RATE + "/s",
      `${tpBefore.toFixed(0)} → ${tpAfter.toFixed(0)} (median of ${ROUNDS} rounds' ratios ${(ratio * 100).toFixed(0)} %: ${rounds.map((x) => (x.ratio * 100).toFixed(0)).join(", ")})`,
      "≥ 90 %"
    )
    row(
      "daemon CPU per change fanned out (the same changes' CPU without subscriptions subtracted)",
      `${median(fanOutCpu).toFixed(1)} ms (median; rounds: ${fanOutCpu.map((x) => x.toFixed(1)).join(", ")})`,
      "—"
    )
    row("daemon CPU per read (fan-out included)", `${cpuPerRead.withoutMs.toFixed(3)} → ${cpuPerRead.withMs.toFixed(3)} ms (medians)`, "—")
    console.log(
      `\nwritten to ${path.relative(root, OUT)}; load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")}`
    )
  } finally {
    await subscribers?.close()
    await daemon?.stop()
    await db.drop()
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e)
    process.exit(1)
  }
)
