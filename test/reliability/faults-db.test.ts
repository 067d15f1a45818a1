/**
 * Reliability · faults (database part).
 *
 * 1. PostgreSQL stopped and restarted under steady load. A PRIVATE cluster (test/support/pgcluster.ts;
 *    the shared server on 5432 is never touched) serves the real daemon process (audit log on, to a
 *    temp folder). N clients (16 short / 64 long), one WebSocket each, send a steady mix of creates
 *    (PageViews with client-chosen unique slugs) and reads (read of an acknowledged record, list and
 *    count of the client's own records). While the load runs the cluster is stopped
 *    (`pg_ctl stop -m fast`, and `-m immediate` in alternate cycles), kept down for a few seconds
 *    (the fault schedule), then started again: short 2 cycles (one of each mode), long 8 cycles over
 *    minutes. Checked: every request is answered within query_timeout + margin (nothing hangs); every
 *    failure is a 503 or 504 with the documented message and no SQL, driver text or stack in it, and
 *    only while the database is down or coming back; the daemon process is the same one throughout
 *    and serves again within a bound after the cluster is back (recovery time measured); reads never
 *    miss an acknowledged record; afterwards EVERY acknowledged create is in the database (queried
 *    directly) with the id it was answered with, and has a success audit record. A refused create may
 *    have been committed (docs/security.md, "Audit log": a write whose connection was lost mid-statement, or answered 504,
 *    may have committed), so only
 *    acknowledged ⊆ stored ⊆ sent is asserted; refused-but-stored rows (and how many of them have no
 *    success audit record) are counted and printed.
 *
 * 2. SIGKILL during writes, on SQLite and PostgreSQL (the shared server, a per-run database): the
 *    daemon (audit on, fsync) takes creates and updates from several clients with requests in
 *    flight; at a random moment of the burst (a random number of acknowledgements) it is SIGKILLed,
 *    then restarted on the same database and audit file, and the load continues (short 2 rounds,
 *    long 10). After every kill: every acknowledged create is in the database, every acknowledged
 *    update's value (or a later one of the same lane) is stored, and each has a success audit record
 *    (the audit file parsed; every line must be JSON, and each start's `daemon.start` record is
 *    there: the file is appended to; on PostgreSQL a record still in the audit journal counts, and
 *    one more start must then have moved every journal record into the file). Each restarted daemon must first serve every acknowledged
 *    record (count and list through it).
 *
 * Each test prints its figures (figures.ts). DBAL_FAULTS_SEED (printed as `seed`) fixes the kill
 * moments and the long run's outage lengths.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import type { AuditRecord } from "../../src/services/AuditLog.js"
import { query } from "../security/audit-helpers.js"
import { type Answer, type Client, connect, type Daemon, health, startDaemon } from "../support/daemon.js"
import { createPgCluster, type PgCluster, skipPgCluster, type StopMode } from "../support/pgcluster.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  SERVICE_TOKEN,
  serviceAuth,
  skipDialect,
  tempDir,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { until } from "../support/wait.js"
import { LONG, report, scale } from "./figures.js"

// ---------------------------------------------------------------------------------------------
// Shared helpers

const SEED = Number(process.env.DBAL_FAULTS_SEED ?? Math.floor(Math.random() * 2 ** 31))

/** mulberry32: a small seeded generator, so that a failing schedule can be replayed. */
const rng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Outcome =
  { readonly kind: "answer"; readonly answer: Answer } | { readonly kind: "hang" } | { readonly kind: "closed"; readonly error: string }

/** One call with a bound: an answer, "hang" past `boundMs`, or "closed" when the connection dropped. */
const boundedCall = (c: Client, method: string, params: ReadonlyArray<unknown>, boundMs: number): Promise<Outcome> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: "hang" }), boundMs)
    c.call(method, params).then(
      (answer) => {
        clearTimeout(timer)
        resolve({ kind: "answer", answer })
      },
      (e: unknown) => {
        clearTimeout(timer)
        resolve({ kind: "closed", error: e instanceof Error ? e.message : String(e) })
      }
    )
  })

/** Deliberate pauses of the fault schedule (how long the database stays down or up), not synchronization. */
const hold = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Runs every cleanup step even when an earlier one throws. */
const cleanup = async (...steps: Array<() => Promise<unknown> | unknown>) => {
  for (const step of steps) {
    try {
      await step()
    } catch (e) {
      console.warn(`cleanup step failed: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
}

/** The audit file parsed; lines that are not JSON are returned apart (they must not exist). */
const readAuditFile = (file: string): { records: Array<AuditRecord>; bad: Array<string> } => {
  const records: Array<AuditRecord> = []
  const bad: Array<string> = []
  if (!fs.existsSync(file)) return { records, bad }
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (line === "") continue
    try {
      records.push(JSON.parse(line) as AuditRecord)
    } catch {
      bad.push(line.slice(0, 200))
    }
  }
  return { records, bad }
}

/** The audit journal's rows (PostgreSQL) as the success records they stand for. */
const journalRecords = async (db: TestDatabase): Promise<Array<AuditRecord>> =>
  (await query(db, "SELECT record_id, record FROM dbal_audit_journal")).map(
    (r) => ({ ...(JSON.parse(String(r.record)) as AuditRecord), recordIds: [String(r.record_id)], success: true }) as AuditRecord
  )

/** Success audit records of `operation` on PageView, counted per record id. */
const auditedIds = (records: ReadonlyArray<AuditRecord>, operation: string): Map<string, number> => {
  const m = new Map<string, number>()
  for (const r of records) {
    if (!r.success || r.operation !== operation || r.entity !== "PageView") continue
    for (const id of r.recordIds ?? []) m.set(id, (m.get(id) ?? 0) + 1)
  }
  return m
}

const idOf = (a: Answer): string | undefined => {
  const id = (a.result as { id?: unknown } | undefined)?.id
  return typeof id === "string" ? id : undefined
}

const countOf = (result: unknown): number | undefined => {
  if (typeof result === "number") return result
  if (typeof result === "object" && result !== null) {
    const r = result as { count?: unknown; total?: unknown }
    if (typeof r.count === "number") return r.count
    if (typeof r.total === "number") return r.total
  }
  return undefined
}

/**
 * The short run's three tests run side by side (their daemons start in parallel, and most of the
 * outage test is its fault schedule); the long run keeps them apart so the figures are their own.
 */
const CONCURRENT = !LONG

/** Text that must never reach a client: SQL, driver codes and messages, stack frames. */
const LEAK =
  /\b(select|insert|update|delete|from|where|returning)\b|\n|\bat\s+\S+\s*\(|\.ts:\d+|\.js:\d+|ECONN|SQLSTATE|\b5[37]P0\d\b|terminating|shutting down|pg_|postgres/i
const DOCUMENTED: Record<number, string> = { 503: "Database unavailable", 504: "Operation timeout" }

// ---------------------------------------------------------------------------------------------
// 1. PostgreSQL stopped and restarted under steady load

const QUERY_TIMEOUT = 5000
/** Every request must be answered within this (query_timeout plus a margin for a loaded 2-core machine). */
const ANSWER_BOUND = QUERY_TIMEOUT + 3000
/** After the cluster is back (pg_ctl start returned), the daemon must serve within this. */
const RECOVERY_BOUND = 15_000
const CLIENTS = scale(16, 64)
/** Each client sends at most one request every PACE_MS (a steady load, not a flood). */
const PACE_MS = scale(10, 20)
const MODES: ReadonlyArray<StopMode> = scale(
  ["fast", "immediate"],
  ["fast", "immediate", "fast", "immediate", "fast", "immediate", "fast", "immediate"]
)
const WARMUP_MS = scale(1000, 5000)
const UP_MS = scale(1500, 15_000)
/** Daemon start bound: generous, the machine may be busy with other suites. */
const START_TIMEOUT = 60_000

const skipCluster = skipPgCluster("PostgreSQL stop/restart under load")

interface Req {
  readonly client: number
  readonly method: string
  readonly sent: number
  readonly answered: number
  readonly outcome: "ok" | "error" | "hang" | "closed"
  readonly code?: number
  /** details.reason of a 503 */
  readonly reason?: string
  readonly problem?: string
}

interface Cycle {
  readonly mode: StopMode
  readonly downMs: number
  stopBegin: number
  started: number
  recovered: number
}

describe.skipIf(skipCluster)("PostgreSQL stopped and restarted under steady load", { concurrent: CONCURRENT }, () => {
  let cluster: PgCluster | undefined
  let daemon: Daemon | undefined
  let dir = ""
  const clients: Array<Client> = []

  afterAll(async () => {
    await cleanup(
      ...clients.map((c) => () => c.close()),
      () => daemon?.stop("SIGTERM", 10_000),
      () => cluster?.destroy(),
      () => (dir === "" ? undefined : fs.rmSync(dir, { recursive: true, force: true }))
    )
  })

  it(
    "answers 503/504 fast, never hangs, resumes without a restart and loses no acknowledged write",
    { timeout: scale(150_000, 20 * 60_000) },
    async () => {
      const t0 = performance.now()
      const pick = rng(SEED) // which acknowledged record a read asks for
      const schedule = rng(SEED + 3) // how long each outage lasts (long run)
      cluster = await createPgCluster({ prefix: "faults-db", maxConnections: 40 })
      await cluster.query("postgres", "CREATE DATABASE dbal")
      dir = tempDir("faults-db")
      const auditFile = path.join(dir, "audit", "audit.log")
      const config = {
        server: { host: "127.0.0.1", port: 0 },
        database: {
          adapter: "postgresql",
          connection: { host: cluster.host, port: cluster.port, database: "dbal", user: "postgres" },
          pool_size: 8,
          timeout: 2000,
          auto_migrate: true
        },
        performance: { query_timeout: QUERY_TIMEOUT },
        security: {
          audit_log: true,
          audit_log_path: auditFile,
          audit: { fsync: true },
          rate_limit: { enabled: false },
          auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] }
        }
      }
      daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { timeoutMs: START_TIMEOUT })
      const pid = daemon.process.pid
      for (let i = 0; i < CLIENTS; i++) clients.push(await connect(daemon.port, serviceAuth))

      const run = randomBytes(3).toString("hex")
      const log: Array<Req> = []
      const sentCreates = new Map<string, number>() // slug → client
      const acked = new Map<string, string>() // slug → id
      const refused = new Set<string>() // slugs of creates answered with an error
      const unanswered = new Set<string>() // slugs of creates without an answer (hang / closed)
      let stopping = false

      const loop = async (ci: number) => {
        const c = clients[ci]!
        const prefix = `f-${run}-${ci}-`
        const mine: Array<{ slug: string; id: string }> = []
        for (let n = 0; !stopping; n++) {
          const sent = performance.now()
          const step = n % 6
          let method: string
          let params: ReadonlyArray<unknown>
          let slug = ""
          let expectId: { slug: string; id: string } | undefined
          const ackedBefore = mine.length
          if (step % 2 === 0) {
            slug = `${prefix}${n}`
            method = "create"
            params = ["PageView", { slug, title: "fault", level: 1 + (n % 5), layout: { ci, n } }]
            sentCreates.set(slug, ci)
          } else if (step === 1 && mine.length > 0) {
            expectId = mine[Math.floor(pick() * mine.length)]!
            method = "read"
            params = ["PageView", expectId.id]
          } else if (step === 3) {
            method = "list"
            params = ["PageView", { filter: { slug: { startsWith: prefix } }, limit: 5 }]
          } else {
            method = "count"
            params = ["PageView", { slug: { startsWith: prefix } }]
          }
          const o = await boundedCall(c, method, params, ANSWER_BOUND + 5000)
          const answered = performance.now()
          if (o.kind !== "answer") {
            log.push({ client: ci, method, sent, answered, outcome: o.kind, problem: o.kind === "closed" ? o.error : "no answer" })
            if (slug !== "") unanswered.add(slug)
            if (o.kind === "closed") return
          } else if (o.answer.error !== undefined) {
            const e = o.answer.error
            let problem: string | undefined
            if (e.code !== 503 && e.code !== 504) problem = `code ${e.code}`
            else if (e.message !== DOCUMENTED[e.code]) problem = `message ${JSON.stringify(e.message)}`
            else if (LEAK.test(JSON.stringify(e.details ?? {}))) problem = `details leak ${JSON.stringify(e.details)}`
            const reason = typeof e.details?.reason === "string" ? { reason: e.details.reason } : {}
            log.push({
              client: ci,
              method,
              sent,
              answered,
              outcome: "error",
              code: e.code,
              ...reason,
              ...(problem === undefined ? {} : { problem: `${problem}: ${JSON.stringify(e)}` })
            })
            if (slug !== "") refused.add(slug)
          } else {
            let problem: string | undefined
            const r = o.answer.result
            if (method === "create") {
              const id = idOf(o.answer)
              if (id === undefined) problem = "create answered without an id"
              else {
                acked.set(slug, id)
                mine.push({ slug, id })
              }
            } else if (method === "read") {
              const got = r as { id?: unknown; slug?: unknown } | null
              if (got?.id !== expectId?.id || got?.slug !== expectId?.slug)
                problem = `read of ${JSON.stringify(expectId)} answered ${JSON.stringify(r)}`
            } else if (method === "list") {
              const total = countOf(r)
              if (total === undefined || total < ackedBefore) problem = `list saw ${total} of ${ackedBefore} acknowledged records`
            } else {
              const count = countOf(r)
              if (count === undefined || count < ackedBefore) problem = `count saw ${count} of ${ackedBefore} acknowledged records`
            }
            log.push({ client: ci, method, sent, answered, outcome: "ok", ...(problem === undefined ? {} : { problem }) })
          }
          const rest = PACE_MS - (performance.now() - sent)
          if (rest > 0) await hold(rest)
        }
      }

      const loadStart = performance.now()
      const loops = clients.map((_, ci) => loop(ci))
      const cycles: Array<Cycle> = []
      try {
        await until("warm-up acknowledgements", () => (acked.size >= CLIENTS * 3 ? true : undefined), 30_000)
        await hold(WARMUP_MS)
        for (const mode of MODES) {
          const downMs = LONG ? 3000 + Math.floor(schedule() * 7000) : 2000
          const cycle: Cycle = { mode, downMs, stopBegin: performance.now(), started: 0, recovered: 0 }
          cycles.push(cycle)
          await cluster.stop(mode)
          await hold(downMs)
          await cluster.start()
          cycle.started = performance.now()
          const first = await until(
            `service resumes after the ${mode} stop`,
            () => log.find((r) => r.outcome === "ok" && r.sent >= cycle.started),
            RECOVERY_BOUND
          )
          cycle.recovered = first.answered
          await hold(UP_MS)
        }
      } finally {
        stopping = true
        await Promise.all(loops)
      }
      const loadEnd = performance.now()

      // -- what the clients saw
      const inOutage = (r: Req) => cycles.some((c) => r.answered >= c.stopBegin && r.sent <= c.started + RECOVERY_BOUND)
      const duringDown = (r: Req) => cycles.some((c) => r.answered >= c.stopBegin && r.sent <= c.started)
      const problems = log.filter((r) => r.problem !== undefined).map((r) => `${r.method} (client ${r.client}): ${r.problem}`)
      const failures = log.filter((r) => r.outcome !== "ok")
      const failedOutside = failures.filter((r) => !inOutage(r))
      const slow = log.filter((r) => r.answered - r.sent > ANSWER_BOUND)
      const maxAnswer = (rs: ReadonlyArray<Req>) => Math.round(rs.reduce((m, r) => Math.max(m, r.answered - r.sent), 0))
      const recoveryMs = cycles.map((c) => Math.round(c.recovered - c.started))
      // A cycle's "up" part: from the cluster's start to the next stop (or the end of the load);
      // a failure answered before the next stop began cannot be caused by it.
      const nextStop = (i: number) => cycles[i + 1]?.stopBegin ?? loadEnd
      // until the last failure of a request sent after the cluster was back
      const fullRecoveryMs = cycles.map((c, i) =>
        Math.round(
          Math.max(c.recovered, ...failures.filter((r) => r.sent >= c.started && r.answered < nextStop(i)).map((r) => r.answered)) -
            c.started
        )
      )
      const reasons = new Map<string, number>()
      for (const r of failures) {
        const key = `${r.code ?? r.outcome}${r.reason === undefined ? "" : ` (${r.reason})`}`
        reasons.set(key, (reasons.get(key) ?? 0) + 1)
      }
      // failures of requests sent after the service had resumed (stale pool connections, …)
      const afterResume = failures.filter((r) => cycles.some((c, i) => r.sent >= c.recovered && r.answered < nextStop(i)))
      // throughput while the database was up and served: before the first stop and from each recovery to the next stop
      const upWindows = [
        [loadStart, cycles[0]?.stopBegin ?? loadEnd] as const,
        ...cycles.map((c, i) => [c.recovered, nextStop(i)] as const)
      ]
      const upMs = upWindows.reduce((t, [a, b]) => t + (b - a), 0)
      const upRequests = log.filter((r) => upWindows.some(([a, b]) => r.sent >= a && r.answered < b)).length
      const perCycleFailures = cycles.map((c) => failures.filter((r) => r.answered >= c.stopBegin && r.sent <= c.started).length)

      // -- what the database and the audit log hold
      const rows = await cluster.query<{ id: string; slug: string }>(
        "dbal",
        "SELECT id::text AS id, slug FROM page_views WHERE slug LIKE $1",
        [`f-${run}-%`]
      )
      const stored = new Map(rows.map((r) => [r.slug, r.id] as const))
      const lost = [...acked].filter(([slug, id]) => stored.get(slug) !== id)
      const neverSent = [...stored.keys()].filter((slug) => !sentCreates.has(slug))
      const refusedStored = [...refused].filter((slug) => stored.has(slug)).length
      const unansweredStored = [...unanswered].filter((slug) => stored.has(slug)).length
      const audit = readAuditFile(auditFile)
      const auditedCreates = auditedIds(audit.records, "create")
      const notAudited = [...acked.values()].filter((id) => !auditedCreates.has(id))

      const finalHealth = await health(daemon.port)
      // One process, listening once: neither restarted nor re-initialized in place.
      const listening = daemon.output().match(/listening on wss?:\/\//g)?.length ?? 0
      const figures = {
        clients: CLIENTS,
        cycles: cycles.map((c) => `${c.mode}/${Math.round(c.downMs / 1000)}s`).join(" "),
        requests: log.length,
        req_per_s_db_up: Math.round(upRequests / Math.max(0.001, upMs / 1000)),
        acknowledged: acked.size,
        reads_ok: log.filter((r) => r.outcome === "ok" && r.method !== "create").length,
        failed_503: failures.filter((r) => r.code === 503).length,
        failed_504: failures.filter((r) => r.code === 504).length,
        failed_other: failures.filter((r) => r.code !== 503 && r.code !== 504).length,
        failures_after_resume: afterResume.length,
        hangs: log.filter((r) => r.outcome === "hang").length,
        max_answer_ms_outage: maxAnswer(log.filter(duringDown)),
        max_answer_ms: maxAnswer(log),
        recovery_ms: Math.max(...recoveryMs),
        recovery_ms_each: recoveryMs.join(" "),
        full_recovery_ms: Math.max(...fullRecoveryMs),
        failure_reasons: [...reasons].map(([k, n]) => `${n}× ${k}`).join(", "),
        refused_writes: refused.size,
        refused_but_stored: refusedStored,
        unanswered_but_stored: unansweredStored,
        // committed rows whose request was refused: the audit log has no success record for them
        stored_without_success_audit: [...stored.values()].filter((id) => !auditedCreates.has(id)).length,
        in_db: acked.size - lost.length,
        in_audit: acked.size - notAudited.length,
        lost: lost.length,
        daemon_restarts: listening - 1 + (daemon.alive() && daemon.process.pid === pid ? 0 : 1),
        seed: SEED,
        seconds: Math.round((performance.now() - t0) / 100) / 10
      }
      report("faults", "PostgreSQL stop/restart under load", figures)

      expect(problems.slice(0, 10), `${problems.length} wrong answers`).toEqual([])
      expect(log.filter((r) => r.outcome === "hang" || r.outcome === "closed").length, "requests without an answer").toBe(0)
      expect(
        slow.map((r) => `${r.method} ${Math.round(r.answered - r.sent)} ms`).slice(0, 10),
        `answers slower than ${ANSWER_BOUND} ms`
      ).toEqual([])
      expect(failedOutside.map((r) => `${r.method} code ${r.code}`).slice(0, 10), "failures while the database was up").toEqual([])
      // Each outage really was seen by the clients (the test is not vacuous).
      for (const n of perCycleFailures) expect(n).toBeGreaterThan(0)
      expect(Math.max(...recoveryMs)).toBeLessThan(RECOVERY_BOUND)
      expect(Math.max(...fullRecoveryMs)).toBeLessThan(RECOVERY_BOUND)
      expect(daemon.alive(), "the daemon process died").toBe(true)
      expect(daemon.process.pid).toBe(pid)
      expect(listening).toBe(1)
      expect(finalHealth.status).toBe(200)
      expect(lost.slice(0, 10), `${lost.length} acknowledged creates missing from the database`).toEqual([])
      expect(neverSent).toEqual([])
      expect(audit.bad).toEqual([])
      expect(notAudited.slice(0, 10), `${notAudited.length} acknowledged creates without an audit record`).toEqual([])
      expect(acked.size).toBeGreaterThan(CLIENTS * 3)
    }
  )
})

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL during writes

const KILL_ROUNDS = scale(2, 10)
const KILL_CLIENTS = 6
const LANES_PER_CLIENT = 3
/** The kill comes after a random number of acknowledgements in [MIN, MIN + SPREAD) within the round. */
const KILL_MIN_ACKS = 30
const KILL_SPREAD_ACKS = scale(150, 400)

const dialects: Array<{ dialect: DialectName; skip: boolean }> = [
  { dialect: "sqlite", skip: false },
  { dialect: "postgresql", skip: await skipDialect("postgresql") }
]

interface Stored {
  readonly id: string
  readonly slug: string
  readonly title: string
}

describe.each(dialects)("SIGKILL during writes on $dialect", { concurrent: CONCURRENT }, ({ dialect, skip }) => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  let dir = ""
  let clients: Array<Client> = []

  afterAll(async () => {
    await cleanup(
      ...clients.map((c) => () => c.close()),
      () => daemon?.stop("SIGKILL"),
      () => db?.drop(),
      () => (dir === "" ? undefined : fs.rmSync(dir, { recursive: true, force: true }))
    )
  })

  it.skipIf(skip)(
    "every acknowledged write is in the database and in the audit log after each kill",
    { timeout: scale(150_000, 10 * 60_000) },
    async () => {
      const t0 = performance.now()
      const killAt = rng(SEED + (dialect === "sqlite" ? 1 : 2)) // the kill moments
      const mix = rng(SEED + (dialect === "sqlite" ? 4 : 5)) // create or update
      db = await createDatabase(dialect)
      dir = tempDir(`faults-kill-${dialect}`)
      const auditFile = path.join(dir, "audit", "audit.log")
      const base = daemonConfig(db)
      const configFile = writeConfig(
        {
          ...base,
          security: { ...(base.security as Record<string, unknown>), audit_log: true, audit_log_path: auditFile, audit: { fsync: true } }
        },
        dir
      )
      const run = randomBytes(3).toString("hex")

      // What was acknowledged, over all rounds.
      const ackedCreates = new Map<string, string>() // id → slug
      const ackedVersion = new Map<string, number>() // id → highest acknowledged update version
      const ackedUpdates = new Map<string, number>() // id → number of acknowledged updates
      let acknowledged = 0
      let sentCreates = 0
      const refused: Array<string> = []
      let inFlightAtKills = 0
      const killAfter: Array<number> = []
      let starts = 0

      const versionOf = (title: string): number => (title.startsWith("v") ? Number(title.slice(1)) : 0)

      const check = async (label: string, fileOnly = false) => {
        const rows = (await query(db!, "SELECT id, slug, title FROM page_views")).map((r): Stored => ({
          id: String(r.id),
          slug: String(r.slug),
          title: String(r.title)
        }))
        const byId = new Map(rows.map((r) => [r.id, r] as const))
        const audit = readAuditFile(auditFile)
        // On PostgreSQL a single-row write's record commits with the write into the audit journal
        // (docs/security.md): until the next start appends it to the file, that row is its record.
        const journaled = dialect === "postgresql" && !fileOnly ? await journalRecords(db!) : []
        const created = auditedIds([...audit.records, ...journaled], "create")
        const updated = auditedIds([...audit.records, ...journaled], "update")
        const missingCreates = [...ackedCreates].filter(([id, slug]) => byId.get(id)?.slug !== slug).map(([id]) => id)
        const staleUpdates = [...ackedVersion]
          .filter(([id, v]) => versionOf(byId.get(id)?.title ?? "") < v)
          .map(([id, v]) => `${id}: v${v} acknowledged, ${byId.get(id)?.title} stored`)
        const createsNotAudited = [...ackedCreates.keys()].filter((id) => !created.has(id))
        const updatesNotAudited = [...ackedUpdates]
          .filter(([id, n]) => (updated.get(id) ?? 0) < n)
          .map(([id, n]) => `${id}: ${n} acknowledged, ${updated.get(id) ?? 0} audited`)
        const daemonStarts = audit.records.filter((r) => r.operation === "daemon.start").length
        const ourRows = rows.filter((r) => r.slug.startsWith(`k-${run}-`))
        return {
          label,
          rows: ourRows.length,
          unackedStored: ourRows.filter((r) => !ackedCreates.has(r.id)).length,
          missingCreates,
          staleUpdates,
          createsNotAudited,
          updatesNotAudited,
          badAuditLines: audit.bad,
          daemonStarts,
          inDb:
            ackedCreates.size -
            missingCreates.length +
            [...ackedUpdates]
              .filter(([id]) => versionOf(byId.get(id)?.title ?? "") >= (ackedVersion.get(id) ?? 0))
              .reduce((s, [, n]) => s + n, 0),
          inAudit:
            ackedCreates.size -
            createsNotAudited.length +
            [...ackedUpdates].reduce((s, [id, n]) => s + Math.min(n, updated.get(id) ?? 0), 0)
        }
      }
      const intact = (c: Awaited<ReturnType<typeof check>>) =>
        c.missingCreates.length +
          c.staleUpdates.length +
          c.createsNotAudited.length +
          c.updatesNotAudited.length +
          c.badAuditLines.length ===
          0 && c.daemonStarts === starts
      const expectIntact = (c: Awaited<ReturnType<typeof check>>) => {
        expect(c.missingCreates.slice(0, 10), `${c.label}: ${c.missingCreates.length} acknowledged creates not in the database`).toEqual([])
        expect(c.staleUpdates.slice(0, 10), `${c.label}: acknowledged updates not in the database`).toEqual([])
        expect(
          c.createsNotAudited.slice(0, 10),
          `${c.label}: ${c.createsNotAudited.length} acknowledged creates without an audit record`
        ).toEqual([])
        expect(c.updatesNotAudited.slice(0, 10), `${c.label}: acknowledged updates without an audit record`).toEqual([])
        expect(c.badAuditLines, `${c.label}: audit lines that are not JSON`).toEqual([])
        expect(c.daemonStarts, `${c.label}: daemon.start records (the file is appended to, not replaced)`).toBe(starts)
      }

      const servesAll = async (c: Client, rows: number) => {
        const counted = await c.call("count", ["PageView", { slug: { startsWith: `k-${run}-` } }])
        expect(counted.error, JSON.stringify(counted.error)).toBeUndefined()
        expect(countOf(counted.result)).toBe(rows)
        const ids = [...ackedCreates.keys()]
        for (let i = 0; i < ids.length; i += 100) {
          const batch = ids.slice(i, i + 100)
          const listed = await c.call("list", ["PageView", { filter: { id: { in: batch } }, limit: 100 }])
          expect(listed.error, JSON.stringify(listed.error)).toBeUndefined()
          expect((listed.result as { data: Array<unknown> }).data.length).toBe(batch.length)
        }
      }

      let last: Awaited<ReturnType<typeof check>> | undefined
      for (let round = 0; round < KILL_ROUNDS; round++) {
        daemon = await startDaemon([`--config=${configFile}`], { timeoutMs: START_TIMEOUT })
        starts++
        clients = []
        for (let i = 0; i < KILL_CLIENTS; i++) clients.push(await connect(daemon.port, serviceAuth))
        // Restarted after a kill on the same database: it serves every acknowledged record.
        if (last !== undefined) await servesAll(clients[0]!, last.rows)
        const threshold = KILL_MIN_ACKS + Math.floor(killAt() * KILL_SPREAD_ACKS)
        killAfter.push(threshold)
        let roundAcks = 0
        let sent = 0
        let answered = 0
        let killed: Promise<number | null> | undefined
        const victim = daemon

        const lane = async (c: Client, name: string) => {
          let own: { id: string; version: number } | undefined
          for (let n = 0; killed === undefined; n++) {
            const update = own !== undefined && mix() < 0.3
            const slug = `k-${run}-${round}-${name}-${n}`
            const version = own === undefined ? 0 : own.version + 1
            const call: [string, ReadonlyArray<unknown>] =
              update && own !== undefined
                ? ["update", ["PageView", own.id, { title: `v${version}` }]]
                : ["create", ["PageView", { slug, title: "v0", level: 1, layout: { round, n } }]]
            if (!update) sentCreates++
            else if (own !== undefined) own.version = version // sent: a later stored value may be this one
            sent++
            const o = await boundedCall(c, call[0], call[1], 30_000)
            if (o.kind === "closed") return // the connection died with the daemon
            if (o.kind === "hang") {
              refused.push(`${call[0]}: no answer within 30 s`)
              return
            }
            answered++
            if (o.answer.error !== undefined) {
              refused.push(`${call[0]}: ${JSON.stringify(o.answer.error)}`)
              continue
            }
            if (update && own !== undefined) {
              ackedVersion.set(own.id, Math.max(ackedVersion.get(own.id) ?? 0, version))
              ackedUpdates.set(own.id, (ackedUpdates.get(own.id) ?? 0) + 1)
            } else {
              const id = idOf(o.answer)
              if (id === undefined) {
                refused.push(`create answered without an id: ${JSON.stringify(o.answer)}`)
                continue
              }
              ackedCreates.set(id, slug)
              own = { id, version: 0 }
            }
            acknowledged++
            roundAcks++
            if (roundAcks >= threshold && killed === undefined) {
              inFlightAtKills += sent - answered
              killed = victim.stop("SIGKILL")
            }
          }
        }
        await Promise.all(clients.flatMap((c, ci) => Array.from({ length: LANES_PER_CLIENT }, (_, li) => lane(c, `${ci}${li}`))))
        expect(killed, `round ${round}: the burst ended before the kill`).toBeDefined()
        expect(await killed).toBeNull()
        expect(victim.process.signalCode).toBe("SIGKILL")
        for (const c of clients) await c.close()
        clients = []
        last = await check(`after kill ${round + 1}`)
        if (!intact(last)) break // reported below, then asserted
      }
      let final = last!
      const rounds = killAfter.length
      if (intact(final) && dialect === "postgresql") {
        // One more start appends the journal's records to the file: then the file alone holds them all.
        daemon = await startDaemon([`--config=${configFile}`], { timeoutMs: START_TIMEOUT })
        starts++
        expect(await daemon.stop()).toBe(0)
        final = await check("after the last start, the file alone", true)
        expect((await query(db!, "SELECT count(*)::int AS n FROM dbal_audit_journal"))[0]!.n, "journal rows left").toBe(0)
      }

      report("faults", `SIGKILL during writes (${dialect})`, {
        rounds,
        kill_after_acks: killAfter.join(" "),
        in_flight_at_kills: inFlightAtKills,
        acknowledged,
        acked_creates: ackedCreates.size,
        acked_updates: [...ackedUpdates.values()].reduce((s, n) => s + n, 0),
        in_db: final.inDb,
        in_audit: final.inAudit,
        lost: acknowledged - Math.min(final.inDb, final.inAudit),
        stored_unacknowledged_creates: final.unackedStored,
        sent_creates: sentCreates,
        refused: refused.length,
        seed: SEED,
        seconds: Math.round((performance.now() - t0) / 100) / 10
      })
      expectIntact(final)
      expect(rounds).toBe(KILL_ROUNDS)
      expect(refused.slice(0, 10), "writes refused before the kill").toEqual([])
      expect(inFlightAtKills).toBeGreaterThan(0)
      expect(final.inDb).toBe(acknowledged)
      expect(final.inAudit).toBe(acknowledged)
    }
  )
})
