/**
 * Load and soak against the real daemon process on PostgreSQL (auth, memory rate limits and a
 * durable audit log on), with the daemon's resident memory read from /proc/<pid>/status:
 *
 * - soak: 1,000 concurrent WebSocket connections, each doing a mix of create / read / update /
 *   delete / list (filter + sort) / count / list with include at a modest rate, from a load
 *   generator in its own process (load-client.ts). A few "greedy" principals send far more than
 *   their rate limit allows: 429 is the only error allowed, and only they get it. No connection
 *   may drop; resident memory after the warm-up must stay bounded (and, in the long run, flat in
 *   the second half).
 * - slow readers: clients that pipeline large `list` requests and never read their socket are
 *   dropped by the daemon's `max_buffered_bytes` bound (1006: the connection is cut without a
 *   close frame); memory stays bounded and a normal client keeps getting prompt answers.
 * - half-open peers: raw sockets that complete the WebSocket handshake and then go silent (no
 *   reads, no pongs, some with a request or half a frame sent) are dropped by the heartbeat;
 *   the connection count (/metrics) returns to its baseline, and memory does not keep what they
 *   left behind (the long run waits for RSS to come back to its level before the rounds).
 *
 * Short version (inside `npm test`) ~20 s of soak; DBAL_RELIABILITY=long: 5 minutes.
 * DBAL_LOAD_SAMPLES=<file> also writes the soak's RSS samples (1/s, with the daemon's CPU time)
 * and the answers per second with the slowest of each second, for a closer look.
 */
import { type ChildProcess, fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { setTimeout as delay } from "node:timers/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, SERVICE_TOKEN, serviceAuth, skipDialect, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { until, untilTrue } from "../support/wait.js"
import { LONG, report, scale } from "./figures.js"
import type { FromChild, Group, Plan, Stats, ToChild } from "./load-client.js"

const here = path.dirname(fileURLToPath(import.meta.url))

// ---------------------------------------------------------------------------------------------
// Measuring the daemon

/** Resident memory of a process in MB (VmRSS of /proc/<pid>/status). */
const rssMb = (pid: number): number => {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  if (m === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) / 1024
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (100 ticks a second). */
const cpuSeconds = (pid: number): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100
}

interface Sample {
  readonly t: number
  readonly mb: number
  /** CPU seconds used so far. */
  readonly cpu: number
}

/** Samples the RSS of `pid` every second until stopped. */
const sampleRss = (pid: number) => {
  const samples: Array<Sample> = []
  const t0 = Date.now()
  const take = () => {
    try {
      samples.push({ t: (Date.now() - t0) / 1000, mb: rssMb(pid), cpu: cpuSeconds(pid) })
    } catch {
      // the process is gone: the test notices otherwise
    }
  }
  take()
  const timer = setInterval(take, 1000)
  return {
    samples,
    now: () => {
      take()
      return samples[samples.length - 1]!.mb
    },
    stop: () => clearInterval(timer)
  }
}

/**
 * How busy the machine is: the share of the last minute in which some runnable task waited for
 * a CPU (/proc/pressure/cpu), with the 1-minute load average. Context for the latencies.
 */
const machineLoad = (): string => {
  let pressure = "n/a"
  try {
    pressure = `${/avg60=([\d.]+)/.exec(fs.readFileSync("/proc/pressure/cpu", "utf8"))?.[1] ?? "n/a"}%`
  } catch {
    // no PSI on this kernel
  }
  return `load ${os.loadavg()[0]!.toFixed(1)} / ${os.cpus().length} cpus, cpu pressure ${pressure}`
}

/** Least-squares slope in MB per minute. */
const slopePerMin = (xs: ReadonlyArray<Sample>): number => {
  const n = xs.length
  if (n < 2) return 0
  const mt = xs.reduce((s, x) => s + x.t, 0) / n
  const mm = xs.reduce((s, x) => s + x.mb, 0) / n
  const num = xs.reduce((s, x) => s + (x.t - mt) * (x.mb - mm), 0)
  const den = xs.reduce((s, x) => s + (x.t - mt) ** 2, 0)
  return den === 0 ? 0 : (num / den) * 60
}

const mb1 = (x: number) => Math.round(x * 10) / 10

/** One unlabelled series of the daemon's GET /metrics (0 when it is not there yet). */
const metric = async (port: number, name: string): Promise<number> => {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(await res.text())
  return m === null ? 0 : Number(m[1])
}

/** The daemon's `dbal_active_connections` gauge. */
const activeConnections = (port: number): Promise<number> => metric(port, "dbal_active_connections")

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const s = [...values].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

const codes = (bag: Record<string, number>): string =>
  Object.keys(bag).length === 0
    ? "none"
    : Object.entries(bag)
        .map(([k, v]) => `${k}×${v}`)
        .join(" ")

// ---------------------------------------------------------------------------------------------
// The load generator process

interface Generator {
  readonly child: ChildProcess
  readonly send: (m: ToChild) => void
  /** The next message of this type (bounded). */
  readonly next: <T extends FromChild["type"]>(type: T, timeoutMs: number) => Promise<Extract<FromChild, { type: T }>>
  readonly exited: Promise<number | null>
}

const startGenerator = (plan: Plan): Generator => {
  const child = fork(path.join(here, "load-client.ts"), [], {
    cwd: path.resolve(here, "..", ".."),
    execArgv: ["--import", "tsx"],
    env: { ...process.env, DBAL_LOAD_CLIENT: "1" },
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const queue: Array<FromChild> = []
  const waiters: Array<() => void> = []
  child.on("message", (m: FromChild) => {
    if (m.type === "progress") {
      if (LONG) console.log(`[load] requests=${m.requests} errors=${m.errors} open=${m.open}`)
      return
    }
    queue.push(m)
    for (const w of waiters.splice(0)) w()
  })
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  const next = <T extends FromChild["type"]>(type: T, timeoutMs: number) =>
    new Promise<Extract<FromChild, { type: T }>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load generator: no "${type}" within ${timeoutMs} ms`)), timeoutMs)
      const check = () => {
        const failed = queue.find((m) => m.type === "failed")
        if (failed !== undefined && failed.type === "failed") {
          clearTimeout(timer)
          return reject(new Error(`load generator failed: ${failed.message}`))
        }
        const i = queue.findIndex((m) => m.type === type)
        if (i < 0) return waiters.push(check)
        clearTimeout(timer)
        resolve(queue.splice(i, 1)[0] as Extract<FromChild, { type: T }>)
      }
      check()
      void exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`load generator exited while waiting for "${type}"`))
      })
    })
  child.send({ type: "start", plan } satisfies ToChild)
  return { child, send: (m) => child.send(m), next, exited }
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket peers (half-open)

/** A client frame (masked, as RFC 6455 requires of clients) carrying `text`. */
const maskedFrame = (text: string): Buffer => {
  const payload = Buffer.from(text, "utf8")
  const mask = randomBytes(4)
  const len = payload.length
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff])
  const body = Buffer.alloc(len)
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i % 4]!
  return Buffer.concat([head, mask, body])
}

interface RawPeer {
  readonly socket: net.Socket
  /** Resolves when the socket has closed (seen from the start: a write to a dropped peer closes it early). */
  readonly closed: Promise<void>
}

/** Opens a TCP socket, completes the WebSocket handshake, then stops reading it. */
const rawHandshake = (port: number): Promise<RawPeer> =>
  new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1")
    const closed = new Promise<void>((r) => s.once("close", () => r()))
    s.on("error", () => undefined)
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error("handshake not answered within 10 s"))
    }, 10_000)
    let head = ""
    const onData = (d: Buffer) => {
      head += d.toString("latin1")
      const end = head.indexOf("\r\n\r\n")
      if (end < 0) return
      clearTimeout(timer)
      s.off("data", onData)
      s.pause()
      if (!head.startsWith("HTTP/1.1 101")) {
        s.destroy()
        return reject(new Error(`upgrade refused: ${head.split("\r\n")[0]}`))
      }
      resolve({ socket: s, closed })
    }
    s.on("data", onData)
    s.once("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    s.once("connect", () =>
      s.write(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
    )
  })

// ---------------------------------------------------------------------------------------------

describe.skipIf(await skipDialect("postgresql"))("load and soak (real daemon, PostgreSQL)", () => {
  let db: TestDatabase
  const dir = tempDir("load")
  const daemons: Array<Daemon> = []
  const generators: Array<Generator> = []

  /** Starts a daemon on the test database with auth, a memory rate limit and the audit log on. */
  const start = async (
    name: string,
    server: Record<string, unknown>,
    opts: { tokens?: ReadonlyArray<{ name: string; token: string }>; rateLimit?: Record<string, unknown>; migrate?: boolean } = {}
  ) => {
    const config = {
      server: { host: "127.0.0.1", port: 0, max_connections: 10_000, max_connections_per_address: 5000, ...server },
      // The PostgreSQL server is shared (max_connections 100) with the other suites: three
      // daemons × 8 at most.
      database: { ...db.databaseConfig, pool_size: 8, auto_migrate: opts.migrate ?? false },
      security: {
        audit_log: true,
        audit_log_path: path.join(dir, `${name}-audit.log`),
        rate_limit: opts.rateLimit ?? { enabled: false },
        auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }, ...(opts.tokens ?? [])] }
      }
    }
    const d = await startDaemon([`--config=${writeConfig(config, fs.mkdtempSync(path.join(dir, `${name}-`)))}`])
    daemons.push(d)
    return d
  }

  // The soak's principals: 45 normal ones × 22 connections, each connection sending a request
  // ~12 s after its previous answer (≤ 1.8 req/s per principal: 37 % of the limit of 300/min =
  // 5/s, burst 25), and 2 greedy ones × 5 connections, each sending a read every ~0.5 s without
  // waiting for the answers (10 req/s per principal: twice the limit). ≈ 100 req/s in all:
  // modest, for a 2-core machine shared with other suites.
  const normalPrincipals = 45
  const perPrincipal = 22
  const greedyPrincipals = 2
  const greedyConnections = 5
  const groups: Array<Group> = []
  const tokens: Array<{ name: string; token: string }> = []
  for (let i = 0; i < normalPrincipals + greedyPrincipals; i++) {
    const greedy = i >= normalPrincipals
    const name = greedy ? `greedy-${i - normalPrincipals}` : `svc-${i}`
    const token = `load-token-${name}-${randomBytes(8).toString("hex")}`
    tokens.push({ name, token })
    groups.push({
      principal: name,
      token,
      greedy,
      connections: greedy ? greedyConnections : perPrincipal,
      meanPeriodMs: greedy ? 500 : 12_000
    })
  }
  const total = groups.reduce((n, g) => n + g.connections, 0)
  const rateLimit = { enabled: true, store: "memory", requests_per_minute: 300, burst: 25 }
  // Slow readers' daemon: no heartbeat, no idle timeout (only the unsent-bytes bound can drop a
  // reader), 1 MiB of unsent answers at most, 4 requests in flight per connection.
  const maxBuffered = 1 << 20
  const maxInFlight = 4
  const heartbeat = 1

  let soakDaemon: Daemon
  let slowDaemon: Daemon
  let halfOpenDaemon: Daemon

  beforeAll(async () => {
    db = await createDatabase("postgresql")
    // Started together (each start compiles the sources: seconds on a busy machine). The soak's
    // daemon creates the tables before it listens; the other two do not migrate (their tests
    // come later) and stay idle until their test.
    ;[soakDaemon, slowDaemon, halfOpenDaemon] = await Promise.all([
      // Heartbeats every 10 s (answered by the generator's sockets); the idle timeout well above
      // the longest think time (3 × 12 s).
      start("soak", { heartbeat_interval: 10, idle_timeout: 120 }, { tokens, rateLimit, migrate: true }),
      start("slow", { heartbeat_interval: 0, idle_timeout: 0, max_buffered_bytes: maxBuffered, max_in_flight: maxInFlight }),
      start("halfopen", { heartbeat_interval: heartbeat, idle_timeout: 5 })
    ])
  }, 120_000)
  afterAll(async () => {
    for (const g of generators) g.child.kill("SIGKILL")
    await Promise.all(daemons.map((d) => d.stop()))
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it(
    "soak: 1,000 concurrent connections with a mix of operations: only 429s (greedy principals), no drops, memory bounded",
    async () => {
      expect(total).toBe(1000)
      const daemon = soakDaemon
      const pid = daemon.process.pid!

      // Rows for `list` with `include`: scripts referencing their creator.
      const seed = await connect(daemon.port, serviceAuth)
      const tag = `l${randomBytes(3).toString("hex")}`
      const owner = await seed.call("create", ["User", { username: `${tag}owner`, email: `${tag}owner@example.com` }])
      expect(owner.error, JSON.stringify(owner)).toBeUndefined()
      for (let i = 0; i < 10; i++) {
        const s = await seed.call("create", [
          "LuaScript",
          { name: `small-${tag}-${i}`, code: `return ${i}`, createdBy: (owner.result as { id: string }).id }
        ])
        expect(s.error, JSON.stringify(s)).toBeUndefined()
      }
      await seed.close()

      const rss = sampleRss(pid)
      const rssBeforeConnections = rss.now()
      const gen = startGenerator({
        port: daemon.port,
        groups,
        tag,
        openConcurrency: 100,
        requestTimeoutMs: 30_000,
        seedUserId: (owner.result as { id: string }).id,
        startSpreadMs: 4000
      })
      generators.push(gen)
      const opened = await gen.next("opened", 120_000)
      expect(opened.refused, "connections refused").toEqual({})
      expect(opened.open).toBe(total)
      await untilTrue("the daemon to count every connection", async () => (await activeConnections(daemon.port)) === total, 10_000)
      const rssConnected = rss.now()

      // Warm-up (every connection's first request within 4 s of the opening, pools, JIT, the
      // rate limiter's buckets, the tables at their steady size), then the measured run. Both
      // are fixed durations: this is a soak.
      const warmupMs = scale(5000, 30_000)
      const runMs = scale(20_000, 5 * 60_000)
      await delay(warmupMs)
      gen.send({ type: "mark" })
      const mark = rss.samples.length
      const rssStart = rss.now()
      const loadStart = machineLoad()
      const cpu0 = { daemon: cpuSeconds(pid), generator: cpuSeconds(gen.child.pid!), at: Date.now() }
      await delay(runMs / 2)
      const midConnections = await activeConnections(daemon.port)
      await delay(runMs / 2)
      const endConnections = await activeConnections(daemon.port)
      const cpu = {
        daemon: ((cpuSeconds(pid) - cpu0.daemon) / ((Date.now() - cpu0.at) / 1000)) * 100,
        generator: ((cpuSeconds(gen.child.pid!) - cpu0.generator) / ((Date.now() - cpu0.at) / 1000)) * 100
      }
      gen.send({ type: "stop" })
      const stats: Stats = (await gen.next("stats", 60_000)).stats
      const rssEnd = rss.now()
      rss.stop()
      const run = rss.samples.slice(mark)
      const mbs = run.map((x) => x.mb)
      const rssMax = Math.max(...mbs)
      const half = Math.floor(run.length / 2)
      const secondHalf = run.slice(half)
      const slope = slopePerMin(secondHalf)
      const medianFirst = percentile(mbs.slice(0, half), 50)
      const medianSecond = percentile(mbs.slice(half), 50)
      // The floor of the last minute (or quarter): the sawtooth's low point, after a major GC.
      const floorLast = Math.min(...mbs.slice(-Math.max(1, Math.min(60, Math.floor(run.length / 4)))))

      gen.send({ type: "close" })
      const closed = await gen.next("closed", 60_000)
      await gen.exited
      await untilTrue("the daemon to see every connection closed", async () => (await activeConnections(daemon.port)) === 0, 20_000)
      const rssAfterClose = rssMb(pid)

      const growth = rssEnd - rssStart
      const figures = {
        connections: total,
        open_ms: opened.ms,
        connect_p50_ms: opened.connect.p50,
        connect_max_ms: opened.connect.max,
        duration_s: Math.round(stats.elapsedMs / 1000),
        requests: stats.requests,
        req_per_s: Math.round(stats.requests / (stats.elapsedMs / 1000)),
        ok_normal: stats.ok.normal,
        ok_greedy: stats.ok.greedy,
        errors_normal: codes(stats.errors.normal),
        errors_greedy: codes(stats.errors.greedy),
        dropped: codes(stats.dropped),
        open_at_end: stats.open,
        daemon_connections_mid: midConnections,
        daemon_connections_end: endConnections,
        p50_ms: stats.overall.p50,
        p99_ms: stats.overall.p99,
        max_ms: stats.overall.max,
        ...Object.fromEntries(Object.entries(stats.latency).map(([op, l]) => [`${op}_p50/p99_ms`, `${l.p50}/${l.p99}`])),
        machine_at_start: loadStart,
        machine_at_end: machineLoad(),
        daemon_cpu_pct: Math.round(cpu.daemon),
        generator_cpu_pct: Math.round(cpu.generator),
        rss_before_connections_mb: mb1(rssBeforeConnections),
        rss_connected_mb: mb1(rssConnected),
        rss_start_mb: mb1(rssStart),
        rss_end_mb: mb1(rssEnd),
        rss_max_mb: mb1(rssMax),
        rss_growth_mb: mb1(growth),
        rss_growth_pct: mb1((growth / rssStart) * 100),
        rss_floor_last_minute_mb: mb1(floorLast),
        rss_median_first_half_mb: mb1(medianFirst),
        rss_median_second_half_mb: mb1(medianSecond),
        rss_slope_second_half_mb_per_min: mb1(slope),
        rss_after_close_mb: mb1(rssAfterClose),
        closed_cleanly: closed.closedCleanly
      }
      report("load", "soak 1000 connections", figures)
      if (process.env.DBAL_LOAD_SAMPLES !== undefined)
        fs.writeFileSync(process.env.DBAL_LOAD_SAMPLES, JSON.stringify({ mark, samples: rss.samples, timeline: stats.timeline }))

      // Only 429, and only for the principals over their limit.
      expect(stats.errors.normal, "errors of principals within their limits").toEqual({})
      expect(
        Object.keys(stats.errors.greedy).filter((c) => c !== "429"),
        "errors other than 429"
      ).toEqual([])
      expect(stats.errors.greedy["429"] ?? 0, "the greedy principals were limited").toBeGreaterThan(0)
      expect(stats.ok.greedy, "…but still served within their rate").toBeGreaterThan(0)
      // Every connection stayed open, on both sides.
      expect(stats.dropped, "connections dropped by the daemon").toEqual({})
      expect(stats.open).toBe(total)
      expect(midConnections).toBe(total)
      expect(endConnections).toBe(total)
      expect(closed.closedCleanly).toBe(total)
      // The load really ran (≈ 80 req/s planned from the normal principals alone; the bound
      // leaves room for a busy machine, where the latency slows every connection's loop).
      expect(stats.requests).toBeGreaterThan((runMs / 1000) * 40)
      // Answers: every request is answered (30 s without an answer counts as an error above).
      // The latency bounds are generous for a 2-core machine that other suites keep busy (with
      // the CPU pressure at 98 %, the daemon gets a quarter of a core and p50 reaches seconds;
      // on a quiet machine it is ≈ 50 ms); `machine_at_*` in the figures says which it was.
      expect(stats.overall.p50, "p50 latency (ms)").toBeLessThan(5000)
      expect(stats.overall.p99, "p99 latency (ms)").toBeLessThan(20_000)
      // Memory. A V8 process under steady load is a sawtooth: the old generation fills with
      // what survived young-generation collections (requests in flight) until a major GC. In a
      // 5-minute run here it spans ≈ 330–440 MB (the peak ≤ 1.35 × the floor) with floors that
      // move ±25 MB, so single samples and least-squares slopes over 2.5 minutes are noisy
      // (±15 MB/min on a flat process). The bounds:
      // - always: the peak stays under 1.6 × the start (the sawtooth has a ceiling);
      // - short run: the end as well — 20 s cannot tell the heap's ramp-up from a leak;
      // - long run: the floor of the last minute ≤ start + 25 %, the second half's median ≤ the
      //   first half's + 10 % of the start (a leak of ≥ 13 MB/min fails it), and the second
      //   half's slope within ±20 MB/min.
      expect(rssMax, "RSS peak after warm-up (MB)").toBeLessThan(rssStart * 1.6)
      expect(rssEnd, "RSS at the end (MB)").toBeLessThan(rssStart * 1.6)
      if (LONG) {
        expect(floorLast, "RSS floor of the last minute (MB)").toBeLessThan(rssStart * 1.25)
        expect(medianSecond - medianFirst, "RSS median, second half − first half (MB)").toBeLessThan(rssStart * 0.1)
        expect(Math.abs(slope), "RSS slope in the second half (MB/min)").toBeLessThan(20)
      }
      expect(daemon.alive()).toBe(true)
      expect(fs.statSync(path.join(dir, "soak-audit.log")).size).toBeGreaterThan(0)
    },
    scale(120_000, 20 * 60_000)
  )

  it(
    "slow readers are dropped at max_buffered_bytes; memory stays bounded and a normal client is answered promptly",
    async () => {
      const daemon = slowDaemon
      const pid = daemon.process.pid!
      const setup = await connect(daemon.port, serviceAuth)
      const tag = `s${randomBytes(3).toString("hex")}`
      const owner = (await setup.call("create", ["User", { username: `${tag}owner`, email: `${tag}owner@example.com` }])).result as {
        id: string
      }
      // 25 scripts of 10 KB: each `list` answer is ≈ 250 KB.
      const rows = 25
      const created = await setup.call("createMany", [
        "LuaScript",
        Array.from({ length: rows }, (_, i) => ({ name: `big-${tag}-${i}`, code: `-- ${i}\n${"x".repeat(10_000)}`, createdBy: owner.id }))
      ])
      expect(created.error, JSON.stringify(created)).toBeUndefined()
      const bigList = ["LuaScript", { filter: { name: { startsWith: `big-${tag}` } }, limit: rows }]
      const sample = await setup.call("list", bigList)
      const answerBytes = JSON.stringify(sample).length
      await setup.close()

      const readers = scale(15, 50)
      // Far more than they will ever be answered: frames left when a reader is dropped cost the
      // daemon nothing, and a daemon that buffered every answer would need all of them.
      const requestsEach = 1000
      const sysctl = (name: string, i: number) => Number(fs.readFileSync(`/proc/sys/net/ipv4/${name}`, "utf8").trim().split(/\s+/)[i])
      const kernelBytes = sysctl("tcp_wmem", 2) + sysctl("tcp_rmem", 1)
      const rss = sampleRss(pid)
      const rssBefore = rss.now()
      const normal = await connect(daemon.port, serviceAuth)
      const latencies: Array<number> = []
      let normalErrors = 0
      let normalRunning = true
      const normalLoop = (async () => {
        while (normalRunning) {
          const t0 = performance.now()
          const a = await normal.call("read", ["User", owner.id])
          latencies.push(performance.now() - t0)
          if (a.error !== undefined) normalErrors++
          await delay(50)
        }
      })()

      // The slow readers: connected, then their TCP socket is paused (nothing is read any more),
      // and they pipeline large lists.
      const slow = await Promise.all(Array.from({ length: readers }, () => connect(daemon.port, serviceAuth)))
      const t0 = Date.now()
      for (const c of slow) {
        ;(c.ws as unknown as { _socket: net.Socket })._socket.pause()
        for (let i = 0; i < requestsEach; i++)
          c.ws.send(JSON.stringify({ id: `big${i}`, method: "list", params: bigList, auth: serviceAuth }))
      }
      await untilTrue(
        "every slow reader to be dropped",
        async () => (await activeConnections(daemon.port)) === 1,
        scale(45_000, 120_000),
        100
      )
      const dropMs = Date.now() - t0

      // Each reader sees its connection cut (no close frame: 1006) once it reads again. (With
      // its unread requests still in the daemon's receive buffer, the cut is a TCP reset: the
      // answers the kernel held for the reader are lost, so it usually reads none.)
      const received: Array<number> = []
      const closeCodes = await Promise.all(
        slow.map(
          (c) =>
            new Promise<number>((resolve, reject) => {
              let n = 0
              c.ws.on("message", () => n++)
              const timer = setTimeout(() => reject(new Error("slow reader not closed within 20 s")), 20_000)
              c.ws.once("close", (code) => {
                clearTimeout(timer)
                received.push(n)
                resolve(code)
              })
              ;(c.ws as unknown as { _socket: net.Socket })._socket.resume()
            })
        )
      )
      normalRunning = false
      await normalLoop
      const rssAfter = rss.now()
      rss.stop()
      const rssDuring = Math.max(...rss.samples.map((s) => s.mb))
      const stillOpen = normal.ws.readyState === WebSocket.OPEN
      await normal.close()

      const growthMax = rssDuring - rssBefore
      const receivedAvg = received.reduce((a, b) => a + b, 0) / received.length
      // What the daemon would hold if it buffered every answer: readers × requests × answer.
      const unboundedMb = (readers * requestsEach * answerBytes) / 1048576
      // What the daemon produces for a reader before dropping it: the answers the kernel takes
      // (the daemon's send buffer, which grows up to tcp_wmem's maximum, and the reader's
      // receive buffer, which stays at tcp_rmem's default when nothing is read), up to
      // max_buffered_bytes more, and the ones in flight. All of it is garbage after the drop, but it is collected at V8's pace, and
      // each answer passes through ≈ 4 copies (the driver's buffers, the decoded rows, the JSON
      // text, the socket's buffer), so RSS can grow by 4 × that: allowed, plus 64 MB.
      const perReaderAnswers = Math.ceil(kernelBytes / answerBytes) + Math.ceil(maxBuffered / answerBytes) + 1 + maxInFlight
      const allowedMb = 64 + (4 * readers * perReaderAnswers * answerBytes) / 1048576
      report("load", "slow readers", {
        readers,
        requests_each: requestsEach,
        answer_kb: Math.round(answerBytes / 1024),
        max_buffered_kb: maxBuffered / 1024,
        all_dropped_ms: dropMs,
        close_codes: [...new Set(closeCodes)].join(","),
        kernel_buffer_kb: Math.round(kernelBytes / 1024),
        answers_read_after_drop_avg: Math.round(receivedAvg),
        unbounded_would_be_mb: Math.round(unboundedMb),
        rss_before_mb: mb1(rssBefore),
        rss_max_mb: mb1(rssDuring),
        rss_after_mb: mb1(rssAfter),
        rss_growth_max_mb: mb1(growthMax),
        rss_allowed_mb: Math.round(allowedMb),
        normal_requests: latencies.length,
        normal_errors: normalErrors,
        normal_p50_ms: mb1(percentile(latencies, 50)),
        normal_p99_ms: mb1(percentile(latencies, 99)),
        normal_max_ms: mb1(Math.max(...latencies))
      })
      expect(
        closeCodes.every((c) => c === 1006),
        `close codes ${closeCodes.join(",")}`
      ).toBe(true)
      expect(growthMax, "RSS growth while slow readers were connected (MB)").toBeLessThan(allowedMb)
      expect(growthMax, "RSS growth vs what unbounded buffering would take (MB)").toBeLessThan(unboundedMb / 10)
      expect(Math.max(...received), "answers a reader got before the drop").toBeLessThan(requestsEach / 10)
      expect(stillOpen, "the normal client stays connected").toBe(true)
      expect(normalErrors).toBe(0)
      expect(latencies.length).toBeGreaterThanOrEqual(3)
      // Its reads queue for the database pool behind the readers' lists (readers × max_in_flight
      // of them): generous, but an answer within seconds, not after the flood.
      expect(percentile(latencies, 50), "normal client p50 (ms)").toBeLessThan(2000)
      expect(percentile(latencies, 99), "normal client p99 (ms)").toBeLessThan(5000)
      expect(daemon.alive()).toBe(true)
    },
    scale(120_000, 20 * 60_000)
  )

  it(
    "half-open peers are dropped by the heartbeat; the connection count returns to its baseline and memory does not grow",
    async () => {
      const daemon = halfOpenDaemon
      const pid = daemon.process.pid!
      // A normal client that keeps working (and answers pings) all along.
      const normal = await connect(daemon.port, serviceAuth)
      let normalErrors = 0
      let normalRequests = 0
      let normalRunning = true
      const normalLoop = (async () => {
        while (normalRunning) {
          const a = await normal.call("count", ["User", {}])
          normalRequests++
          if (a.error !== undefined) normalErrors++
          await delay(200)
        }
      })()
      await untilTrue("baseline of one connection", async () => (await activeConnections(daemon.port)) === 1, 10_000)

      const rounds = scale(4, 10)
      /** Rounds before the memory baseline (the heap of a fresh daemon grows at first). */
      const warmupRounds = 2
      const peers = scale(300, 500)
      const request = JSON.stringify({ id: "h1", method: "list", params: ["User", { limit: 5 }], auth: serviceAuth })
      const detectMs: Array<number> = []
      const rssAfterRound: Array<number> = []
      const rssBefore = rssMb(pid)
      const acceptedBefore = await metric(daemon.port, "dbal_connections_total")
      let maxSeen = 0
      for (let r = 0; r < rounds; r++) {
        const sockets: Array<RawPeer> = []
        for (let i = 0; i < peers; i += 50) {
          sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, peers - i) }, () => rawHandshake(daemon.port)))))
        }
        // A third stay silent after the handshake, a third send a request and never read the
        // answer, a third send half a frame: then none of them reads, writes or answers a ping.
        sockets.forEach((p, i) => {
          if (p.socket.destroyed) return
          if (i % 3 === 1) p.socket.write(maskedFrame(request))
          else if (i % 3 === 2) p.socket.write(maskedFrame(request).subarray(0, 20))
        })
        const t0 = Date.now()
        maxSeen = Math.max(maxSeen, await activeConnections(daemon.port))
        await untilTrue(
          "the half-open peers to be dropped",
          async () => (await activeConnections(daemon.port)) === 1,
          10 * heartbeat * 1000 + 10_000,
          100
        )
        detectMs.push(Date.now() - t0)
        // Every peer's socket is closed by the daemon (seen once it reads again).
        await Promise.all(
          sockets.map((p) => {
            p.socket.on("data", () => undefined)
            p.socket.resume()
            let timer: NodeJS.Timeout | undefined
            const late = new Promise<void>((_, reject) => {
              timer = setTimeout(() => reject(new Error("half-open peer's socket not closed by the daemon within 10 s")), 10_000)
            })
            return Promise.race([p.closed, late]).finally(() => clearTimeout(timer))
          })
        )
        rssAfterRound.push(rssMb(pid))
      }
      const accepted = (await metric(daemon.port, "dbal_connections_total")) - acceptedBefore
      normalRunning = false
      await normalLoop
      const stillOpen = normal.ws.readyState === WebSocket.OPEN
      await normal.close()
      // Memory, without forcing a GC in the daemon: what the peers leave behind (sockets, their
      // native handles, parser state) is freed when V8 collects it, at its own pace — RSS right
      // after the rounds climbs ≈ 11 MB per 500 peers until a major GC or the memory reducer
      // (after up to ~80 s of quiet). (Run with --inspect and a forced GC after each round, the
      // daemon's live heap stayed at 45 MB ± 1 MB over 12 rounds × 500 peers.) What a leak
      // cannot do is come back: the long run waits (bounded) until RSS is within 20 MB of its
      // level before the measured rounds.
      const reference = Math.max(rssBefore, rssAfterRound[warmupRounds - 1]!)
      const growth = rssAfterRound[rssAfterRound.length - 1]! - rssAfterRound[warmupRounds - 1]!
      let settled = Number.NaN
      let settleMs = Number.NaN
      if (LONG) {
        const settleStart = Date.now()
        settled = await until(
          "the daemon's RSS to come back within 20 MB of its level before the measured rounds",
          () => {
            const v = rssMb(pid)
            return v <= reference + 20 ? v : undefined
          },
          180_000,
          500
        )
        settleMs = Date.now() - settleStart
      }
      report("load", "half-open peers", {
        rounds,
        peers_per_round: peers,
        accepted,
        max_connections_seen: maxSeen,
        heartbeat_s: heartbeat,
        detect_ms_max: Math.max(...detectMs),
        detect_ms: detectMs.join("/"),
        rss_before_mb: mb1(rssBefore),
        rss_after_rounds_mb: rssAfterRound.map(mb1).join("/"),
        rss_growth_after_warmup_rounds_mb: mb1(growth),
        rss_reference_mb: mb1(reference),
        ...(LONG ? { rss_settled_mb: mb1(settled), rss_settle_ms: settleMs } : {}),
        normal_requests: normalRequests,
        normal_errors: normalErrors
      })
      // Every peer was accepted as a WebSocket connection (and, above, dropped and closed).
      expect(accepted).toBe(rounds * peers)
      // Dropped by the heartbeat: at the second tick after going silent (≤ 2 s), before the
      // idle timeout (5 s) would have done it.
      expect(Math.max(...detectMs)).toBeLessThan(5000)
      // The first two rounds are the warm-up (a fresh daemon's heap and malloc arenas grow over
      // them). After them: short run (600 peers) at most 40 MB right after the rounds (a leak
      // of ≥ 70 KB per peer fails it; the garbage alone is ≈ 22 KB per peer); long run (4,000
      // peers) at most 150 MB right after them, and back to the reference level above (a leak
      // of ≥ 5 KB per peer would stay above it).
      expect(growth, "RSS growth over the rounds after the warm-up rounds (MB)").toBeLessThan(LONG ? 150 : 40)
      expect(stillOpen).toBe(true)
      expect(normalErrors).toBe(0)
      expect(daemon.alive()).toBe(true)
    },
    scale(90_000, 20 * 60_000)
  )
})
