/**
 * `npx tsx bench/realtime.ts`: the realtime targets of docs/realtime.md on the local PostgreSQL,
 * one daemon process (a fresh database, dropped at the end).
 *
 * - 100 connections × 100 subscriptions to PageView = 10,000, of mixed principals: users (whose
 *   access rule has a row filter, level <= 3, and read_fields), admins and the service role,
 *   with subscription filters on title and level (all admit the benchmark's rows, so every
 *   change fans out to every subscription).
 * - Delivery: BENCH_RT_CHANGES (20) changes (creates and updates, alternating), one at a time;
 *   for each, the time from sending the write to each subscription's event arriving at the
 *   client (p50/p99/max over every delivery), and the daemon's own dbal_realtime_delivery_seconds.
 * - Queries: dbal_realtime_fetches_total per change (the daemon reads each changed row once,
 *   whatever the number of subscribers), hence per subscriber.
 * - Memory: the daemon's VmRSS with the 100 connections open and no subscriptions, then with the
 *   10,000 subscriptions.
 * - Read throughput: 32 clients reading by id for BENCH_TP_SECONDS (3) while a writer changes a
 *   row BENCH_RT_RATE (5) times a second, without subscriptions and then with the 10,000 (the
 *   events go to the subscribed connections, received in this process but not parsed).
 *
 * Prints a table and writes bench/results/realtime.json (or BENCH_OUT). The client side runs in
 * this process on the same machine as the daemon and PostgreSQL: its work is in the numbers.
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import WebSocket from "ws"
import { type Daemon, root, startDaemon } from "../test/support/daemon.js"
import { createDatabase, SERVICE_TOKEN, tempDir, unavailable, writeConfig } from "../test/support/services.js"

const env = (k: string, d: number) => (process.env[k] === undefined || process.env[k] === "" ? d : Number(process.env[k]))
const CONNECTIONS = env("BENCH_RT_CONNECTIONS", 100)
const PER_CONNECTION = env("BENCH_RT_PER_CONNECTION", 100)
const CHANGES = env("BENCH_RT_CHANGES", 20)
const RATE = env("BENCH_RT_RATE", 5)
const TP_SECONDS = env("BENCH_TP_SECONDS", 3)
const TP_CLIENTS = env("BENCH_TP_CLIENTS", 32)
const OUT = path.resolve(process.env.BENCH_OUT ?? path.join(root, "bench", "results", "realtime.json"))

type Rec = Record<string, unknown>

interface Conn {
  readonly ws: WebSocket
  readonly call: (method: string, params: ReadonlyArray<unknown>) => Promise<Rec>
  /** Receipt times of pushed frames, by subscription id; `onPush` sees every one. */
  onPush: ((at: number, frame: string) => void) | undefined
}

const open = (port: number, auth: Rec): Promise<Conn> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    const pending = new Map<string, (a: Rec) => void>()
    let n = 0
    const conn: Conn = {
      ws,
      onPush: undefined,
      call: (method, params) =>
        new Promise((ok) => {
          const id = `r${++n}`
          pending.set(id, ok)
          ws.send(JSON.stringify({ id, method, params }))
        })
    }
    ws.on("message", (data) => {
      const text = String(data)
      // Pushed frames start with {"subscription": answers with {"id":
      if (text.startsWith('{"subscription"')) return conn.onPush?.(performance.now(), text)
      const a = JSON.parse(text) as Rec
      const r = pending.get(a.id as string)
      pending.delete(a.id as string)
      r?.(a)
    })
    ws.once("error", reject)
    ws.once("open", async () => {
      const a = await conn.call("authenticate", [auth])
      if (a.error !== undefined) return reject(new Error(`authenticate: ${JSON.stringify(a.error)}`))
      resolve(conn)
    })
  })

const ok = async (c: Conn, method: string, params: ReadonlyArray<unknown>): Promise<Rec> => {
  const a = await c.call(method, params)
  if (a.error !== undefined) throw new Error(`${method}: ${JSON.stringify(a.error)}`)
  return a.result as Rec
}

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

/** Reads by id from `clients` connections for `seconds`, while `writer` changes a row `RATE` times a second. */
const throughput = async (clients: ReadonlyArray<Conn>, id: string, writer: Conn, pageId: string): Promise<number> => {
  let reads = 0
  let stop = false
  let level = 1
  const writes = (async () => {
    while (!stop) {
      const t0 = performance.now()
      await ok(writer, "update", ["PageView", pageId, { level: (level++ % 3) + 1 }])
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / RATE - (performance.now() - t0))))
    }
  })()
  const end = performance.now() + TP_SECONDS * 1000
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        await ok(c, "read", ["PageView", id])
        reads++
      }
    })
  )
  stop = true
  await writes
  return reads / TP_SECONDS
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
  const conns: Array<Conn> = []
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
      { timeoutMs: 120_000 }
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
    for (let i = 0; i < CONNECTIONS; i++) conns.push(await open(port, principals[i % principals.length]!))
    const readers: Array<Conn> = []
    for (let i = 0; i < TP_CLIENTS; i++) readers.push(await open(port, { token: SERVICE_TOKEN, user_id: "bench" }))
    const tag = `rt-${randomUUID().slice(0, 8)}`
    const target = await ok(system, "create", ["PageView", { slug: `${tag}-read`, title: "read target", level: 1, layout: {} }])
    const churn = await ok(system, "create", ["PageView", { slug: `${tag}-churn`, title: "churn", level: 1, layout: {} }])

    // Warm-up, then the run without subscriptions.
    await throughput(readers, String(target.id), system, String(churn.id))
    await settle()
    const rssBefore = rssMb(pid)
    const tpBefore = await throughput(readers, String(target.id), system, String(churn.id))

    const filters: Array<Rec | undefined> = [
      undefined,
      { filter: { title: tag } },
      { filter: { level: { lte: 3 } } },
      { filter: { AND: [{ title: { startsWith: "rt-" } }, { level: { gte: 1 } }] } }
    ]
    const t0 = performance.now()
    await Promise.all(
      conns.map(async (c, i) => {
        for (let s = 0; s < PER_CONNECTION; s++)
          await ok(c, "subscribe", [
            "PageView",
            ...(filters[(i + s) % filters.length] === undefined ? [] : [filters[(i + s) % filters.length]])
          ])
      })
    )
    const subscribeSeconds = (performance.now() - t0) / 1000
    const subscriptions = await metric(port, "dbal_realtime_subscriptions")
    await settle()
    const rssAfter = rssMb(pid)

    // Delivery: one change at a time, every subscription's event timed.
    const latencies: Array<number> = []
    const fetchesBefore = await metric(port, "dbal_realtime_fetches_total")
    let page: Rec | undefined
    for (let k = 0; k < CHANGES; k++) {
      let expected = subscriptions
      let sent = 0
      const done = new Promise<void>((resolve) => {
        for (const c of conns) {
          c.onPush = (at) => {
            latencies.push(at - sent)
            if (--expected === 0) resolve()
          }
        }
      })
      sent = performance.now()
      page =
        page === undefined || k % 2 === 0
          ? await ok(system, "create", ["PageView", { slug: `${tag}-${k}`, title: tag, level: 1 + (k % 3), layout: { k } }])
          : await ok(system, "update", ["PageView", String(page.id), { layout: { k } }])
      const timeout = new Promise<void>((_, fail) =>
        setTimeout(() => fail(new Error(`change ${k}: ${expected} events missing after 30 s`)), 30_000).unref()
      )
      await Promise.race([done, timeout])
    }
    for (const c of conns) c.onPush = undefined
    const fetches = (await metric(port, "dbal_realtime_fetches_total")) - fetchesBefore
    const deliveries = latencies.length
    latencies.sort((a, b) => a - b)

    const tpAfter = await throughput(readers, String(target.id), system, String(churn.id))
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg() },
      settings: { CONNECTIONS, PER_CONNECTION, CHANGES, RATE, TP_SECONDS, TP_CLIENTS },
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
      queries: { fetches, perChange: fetches / CHANGES, perSubscriberPerChange: fetches / CHANGES / subscriptions },
      memory: { rssBeforeMb: rssBefore, rssAfterMb: rssAfter, deltaMb: rssAfter - rssBefore },
      throughput: { readsPerSecondBefore: tpBefore, readsPerSecondAfter: tpAfter, ratio: tpAfter / tpBefore }
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
      `${tpBefore.toFixed(0)} → ${tpAfter.toFixed(0)} (${(result.throughput.ratio * 100).toFixed(0)} %)`,
      "≥ 90 %"
    )
    console.log(
      `\nwritten to ${path.relative(root, OUT)}; load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")}`
    )
  } finally {
    for (const c of conns) c.ws.terminate()
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
