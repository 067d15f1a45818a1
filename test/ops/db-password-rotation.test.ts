/**
 * The database password rotated under load, on PostgreSQL and MariaDB, without a restart.
 *
 * The real daemon process runs with `password_file` and a dedicated database user made by the test
 * (dropped after). Several WebSocket clients keep sending writes (create of a PageView with a unique
 * slug) and reads (read of an acknowledged record, count) the whole time. Two rotations run during
 * the load, each followed by the daemon's connections being killed from the database side (idle
 * ones, again and again, until none opened before the step is left), so that the pool must log in
 * again:
 *
 * 1. the runbook's order (docs/operations.md, "The database password"): the file is rewritten first
 *    (by rename, as a Kubernetes Secret update is); the pool's new logins are refused with it and
 *    fall back to the previous password, which the server still accepts (the log says so); then
 *    ALTER USER, after which the previous password is refused and the file's is used;
 * 2. the other order, done at once: ALTER USER, then the file.
 *
 * PostgreSQL runs as a private cluster (test/support/pgcluster.ts) whose pg_hba asks every role but
 * `postgres` for its password (the shared server trusts local logins, so a password would prove
 * nothing there); MariaDB is the shared server, which always checks passwords.
 *
 * Checked: every read succeeded; a write failed only as a 503 (the statement was on a connection
 * killed under it: the daemon cannot know whether it was applied, so it does not retry it) and none
 * was applied twice; every acknowledged create is stored once with its id; after each rotation the
 * old password is refused by the database and the new one accepted, the daemon's connections are
 * all new ones, and the same daemon process keeps serving; no password is in its output.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import mysql from "mysql2/promise"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { type Answer, type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createPgCluster, type PgCluster, skipPgCluster } from "../support/pgcluster.js"
import { MY, SERVICE_TOKEN, serviceAuth, skipDialect, tempDir, writeConfig } from "../support/services.js"
import { until, untilTrue } from "../support/wait.js"

const CLIENTS = 6
const POOL_SIZE = 4
const QUERY_TIMEOUT = 10_000
/** Every request is answered within this, or the test fails (nothing may hang). */
const ANSWER_BOUND = QUERY_TIMEOUT + 5000
/** Acknowledged creates to wait for before the first rotation and after each step. */
const PROGRESS = 20
const STEP_BOUND = 60_000

/** The database side of a run: the user's password, its sessions, and direct reads of the table. */
interface Target {
  readonly name: string
  /** The `database:` section for the daemon (no password: it comes from the file). */
  readonly database: Record<string, unknown>
  readonly setPassword: (password: string) => Promise<void>
  /** Whether the server accepts a login of the user with `password` (false: refused as a wrong password). */
  readonly accepts: (password: string) => Promise<boolean>
  /** The user's sessions: an increasing id (MariaDB) or start time (PostgreSQL) each, and whether it is idle. */
  readonly sessions: () => Promise<ReadonlyArray<{ readonly since: number; readonly idle: boolean; readonly id: number }>>
  /** Kills the sessions `ids` from the admin side. */
  readonly kill: (ids: ReadonlyArray<number>) => Promise<void>
  /** Every stored PageView: slug → ids. */
  readonly stored: () => Promise<Map<string, Array<string>>>
  /** The database's own notion of "now", in the unit of `since`. */
  readonly now: () => Promise<number>
  readonly destroy: () => Promise<void>
}

const secret = () => randomBytes(12).toString("hex")

const pgTarget = async (cluster: PgCluster, user: string, firstPassword: string): Promise<Target> => {
  const admin = cluster.client("postgres")
  await admin.connect()
  await admin.query(`CREATE ROLE ${user} LOGIN PASSWORD ${admin.escapeLiteral(firstPassword)}`)
  await admin.query(`CREATE DATABASE dbal OWNER ${user}`)
  return {
    name: "postgresql",
    database: { adapter: "postgresql", connection: { host: cluster.host, port: cluster.port, database: "dbal", user } },
    setPassword: async (password) => void (await admin.query(`ALTER ROLE ${user} PASSWORD ${admin.escapeLiteral(password)}`)),
    accepts: async (password) => {
      const c = new pg.Client({ host: cluster.host, port: cluster.port, user, password, database: "dbal", connectionTimeoutMillis: 5000 })
      try {
        await c.connect()
        await c.end()
        return true
      } catch (e) {
        if ((e as { code?: unknown }).code === "28P01") return false
        throw e
      }
    },
    sessions: async () =>
      (
        await admin.query<{ pid: number; since: string; idle: boolean }>(
          "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint AS since, state = 'idle' AS idle FROM pg_stat_activity WHERE usename = $1",
          [user]
        )
      ).rows.map((r) => ({ id: r.pid, since: Number(r.since), idle: r.idle })),
    kill: async (ids) => void (await admin.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [ids])),
    now: async () =>
      Number((await admin.query<{ n: string }>("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS n")).rows[0]!.n),
    stored: async () => {
      const c = cluster.client("dbal")
      await c.connect()
      try {
        const rows = (await c.query<{ slug: string; id: string }>("SELECT slug, id::text AS id FROM page_views")).rows
        const m = new Map<string, Array<string>>()
        for (const r of rows) m.set(r.slug, [...(m.get(r.slug) ?? []), r.id])
        return m
      } finally {
        await c.end()
      }
    },
    destroy: async () => {
      await admin.end()
      await cluster.destroy()
    }
  }
}

const mariaTarget = async (user: string, firstPassword: string): Promise<Target> => {
  const database = `dbal_test_${randomBytes(5).toString("hex")}`
  const admin = await mysql.createConnection({ ...MY, password: "", connectTimeout: 5000 })
  await admin.query(`CREATE DATABASE ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`)
  await admin.query("CREATE USER ?@'127.0.0.1' IDENTIFIED BY ?", [user, firstPassword])
  await admin.query(`GRANT ALL PRIVILEGES ON ${database}.* TO ?@'127.0.0.1'`, [user])
  return {
    name: "mariadb",
    database: { adapter: "mysql", connection: { host: MY.host, port: MY.port, database, user } },
    setPassword: async (password) => void (await admin.query("ALTER USER ?@'127.0.0.1' IDENTIFIED BY ?", [user, password])),
    accepts: async (password) => {
      try {
        const c = await mysql.createConnection({ ...MY, user, password, database, connectTimeout: 5000 })
        await c.end()
        return true
      } catch (e) {
        if ((e as { code?: unknown }).code === "ER_ACCESS_DENIED_ERROR") return false
        throw e
      }
    },
    // Connection ids only grow, so they order the sessions as start times would.
    sessions: async () =>
      (
        (await admin.query("SELECT ID AS id, COMMAND AS command FROM information_schema.PROCESSLIST WHERE USER = ?", [user]))[0] as Array<{
          id: number
          command: string
        }>
      ).map((r) => ({ id: Number(r.id), since: Number(r.id), idle: r.command === "Sleep" })),
    kill: async (ids) => {
      for (const id of ids) {
        try {
          await admin.query(`KILL CONNECTION ${Number(id)}`)
        } catch (e) {
          // ER_NO_SUCH_THREAD: it ended meanwhile.
          if ((e as { errno?: unknown }).errno !== 1094) throw e
        }
      }
    },
    // The largest connection id in use: every session with a larger one was opened after this call.
    now: async () =>
      Number(((await admin.query("SELECT MAX(ID) AS n FROM information_schema.PROCESSLIST"))[0] as Array<{ n: number }>)[0]!.n),
    stored: async () => {
      const rows = (await admin.query(`SELECT slug, id FROM ${database}.page_views`))[0] as Array<{ slug: string; id: string }>
      const m = new Map<string, Array<string>>()
      for (const r of rows) m.set(r.slug, [...(m.get(r.slug) ?? []), String(r.id)])
      return m
    },
    destroy: async () => {
      try {
        await admin.query("DROP USER IF EXISTS ?@'127.0.0.1'", [user])
        await admin.query(`DROP DATABASE IF EXISTS ${database}`)
      } finally {
        await admin.end()
      }
    }
  }
}

/** The password file replaced by rename, as a Secret update or `mv` replaces it: never half-written. */
const writePassword = (file: string, password: string) => {
  const tmp = `${file}.tmp-${randomBytes(3).toString("hex")}`
  fs.writeFileSync(tmp, `${password}\n`, { mode: 0o600 })
  fs.renameSync(tmp, file)
}

interface Outcome {
  readonly kind: "read" | "write"
  readonly method: string
  readonly slug?: string
  readonly code?: number
  readonly answer?: Answer
  readonly problem?: string
  /** How long the answer took. */
  readonly ms?: number
}

const bounded = (c: Client, method: string, params: ReadonlyArray<unknown>): Promise<Answer | string> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`no answer to ${method} within ${ANSWER_BOUND} ms`), ANSWER_BOUND)
    c.call(method, params).then(
      (a) => {
        clearTimeout(timer)
        resolve(a)
      },
      (e: unknown) => {
        clearTimeout(timer)
        resolve(`connection closed: ${e instanceof Error ? e.message : String(e)}`)
      }
    )
  })

/**
 * Kills the daemon's sessions opened before `since` (idle ones only, again until none is left) and
 * waits until it has opened new ones and served on them. Returns how many sessions were killed.
 */
const replaceSessions = async (target: Target, since: number, acked: () => number): Promise<number> => {
  let killed = 0
  await untilTrue(
    `${target.name}: every session opened before the step replaced`,
    async () => {
      const old = (await target.sessions()).filter((s) => s.since <= since)
      if (old.length === 0) return true
      const idle = old.filter((s) => s.idle).map((s) => s.id)
      if (idle.length > 0) {
        await target.kill(idle)
        killed += idle.length
      }
      return false
    },
    STEP_BOUND,
    20
  )
  const served = acked()
  await untilTrue(
    `${target.name}: new sessions serving`,
    async () => (await target.sessions()).some((s) => s.since > since) && acked() >= served + PROGRESS,
    STEP_BOUND
  )
  return killed
}

const rotationUnderLoad = async (target: Target, dir: string, passwords: readonly [string, string, string]) => {
  const [first, second, third] = passwords
  const passwordFile = path.join(dir, "db-password")
  writePassword(passwordFile, first)
  const config = {
    server: { host: "127.0.0.1", port: 0 },
    database: {
      ...target.database,
      connection: { ...(target.database.connection as Record<string, unknown>), password_file: "db-password" },
      pool_size: POOL_SIZE,
      auto_migrate: true
    },
    performance: { query_timeout: QUERY_TIMEOUT },
    security: { audit_log: false, rate_limit: { enabled: false }, auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] } }
  }
  const daemon: Daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { timeoutMs: 120_000 })
  const clients: Array<Client> = []
  try {
    const pid = daemon.process.pid
    for (let i = 0; i < CLIENTS; i++) clients.push(await connect(daemon.port, serviceAuth))
    const run = randomBytes(3).toString("hex")
    const outcomes: Array<Outcome> = []
    const acked = new Map<string, string>()
    let stopping = false

    const loop = async (ci: number) => {
      const c = clients[ci]!
      const mine: Array<string> = []
      for (let n = 0; !stopping; n++) {
        const step = n % 3
        const slug = `r-${run}-${ci}-${n}`
        const [kind, method, params]: readonly ["read" | "write", string, ReadonlyArray<unknown>] =
          step === 0 || mine.length === 0
            ? ["write", "create", ["PageView", { slug, title: "rotation", level: 1 + (n % 5), layout: { ci, n } }]]
            : step === 1
              ? ["read", "read", ["PageView", mine[n % mine.length]!]]
              : ["read", "count", ["PageView", { slug: { startsWith: `r-${run}-${ci}-` } }]]
        const sent = performance.now()
        const a = await bounded(c, method, params)
        const ms = performance.now() - sent
        if (typeof a === "string") {
          outcomes.push({ kind, method, problem: a, ...(kind === "write" ? { slug } : {}) })
          return
        }
        if (a.error !== undefined) {
          outcomes.push({ kind, method, code: a.error.code, answer: a, ms, ...(kind === "write" ? { slug } : {}) })
          continue
        }
        if (method === "create") {
          const id = (a.result as { id?: unknown } | undefined)?.id
          if (typeof id !== "string") outcomes.push({ kind, method, slug, problem: `create answered without an id: ${JSON.stringify(a)}` })
          else {
            acked.set(slug, id)
            mine.push(id)
            outcomes.push({ kind, method, slug, ms })
          }
        } else if (method === "read") {
          const id = (a.result as { id?: unknown } | null | undefined)?.id
          outcomes.push({
            kind,
            method,
            ms,
            ...(id === mine[n % mine.length] ? {} : { problem: `read answered ${JSON.stringify(a.result)}` })
          })
        } else {
          const count = typeof a.result === "number" ? a.result : (a.result as { count?: unknown } | undefined)?.count
          outcomes.push({
            kind,
            method,
            ms,
            ...(typeof count === "number" && count >= mine.length
              ? {}
              : { problem: `count answered ${JSON.stringify(a.result)} for ${mine.length} acknowledged` })
          })
        }
      }
    }

    const started = performance.now()
    const loops = clients.map((_, ci) => loop(ci))
    const steps: Record<string, number> = {}
    let killed = 0
    try {
      await until("warm-up acknowledgements", () => (acked.size >= PROGRESS ? true : undefined), STEP_BOUND)

      // 1. The runbook's order: the file first. New logins are refused with it and use the previous password.
      let t = performance.now()
      writePassword(passwordFile, second)
      killed += await replaceSessions(target, await target.now(), () => acked.size)
      await daemon.waitForOutput(/refused the password in password_file; new connections log in with the previous password/, STEP_BOUND)
      expect(await target.accepts(first)).toBe(true)
      steps.fileFirstMs = Math.round(performance.now() - t)

      t = performance.now()
      await target.setPassword(second)
      killed += await replaceSessions(target, await target.now(), () => acked.size)
      await daemon.waitForOutput(/new database connections log in with the password in password_file/, STEP_BOUND)
      expect(await target.accepts(first)).toBe(false)
      expect(await target.accepts(second)).toBe(true)
      steps.alterSecondMs = Math.round(performance.now() - t)

      // 2. The other order, at once: ALTER USER, then the file.
      t = performance.now()
      await target.setPassword(third)
      writePassword(passwordFile, third)
      killed += await replaceSessions(target, await target.now(), () => acked.size)
      expect(await target.accepts(second)).toBe(false)
      expect(await target.accepts(third)).toBe(true)
      steps.alterThenFileMs = Math.round(performance.now() - t)
    } finally {
      stopping = true
      await Promise.all(loops)
    }
    const loadMs = Math.round(performance.now() - started)

    const problems = outcomes.filter((o) => o.problem !== undefined)
    const readFailures = outcomes.filter((o) => o.kind === "read" && o.code !== undefined)
    const writeFailures = outcomes.filter((o) => o.kind === "write" && o.code !== undefined)
    const stored = await target.stored()
    const times = outcomes.flatMap((o) => (o.ms === undefined ? [] : [o.ms])).sort((x, y) => x - y)
    const at = (q: number) => Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0)
    const figures = {
      dialect: target.name,
      loadMs,
      requests: outcomes.length,
      reads: outcomes.filter((o) => o.kind === "read").length,
      writes: outcomes.filter((o) => o.kind === "write").length,
      readFailures: readFailures.length,
      writeFailures: writeFailures.length,
      failedWritesStored: writeFailures.filter((o) => stored.has(o.slug!)).length,
      sessionsKilled: killed,
      answerMs: { p50: at(0.5), p99: at(0.99), max: at(1) },
      ...steps
    }
    console.log(`password rotation under load: ${JSON.stringify(figures)}`)

    expect(problems.map((o) => o.problem)).toEqual([])
    expect(readFailures.map((o) => JSON.stringify(o.answer))).toEqual([])
    // A write on a connection killed under it: 503, not retried; at most one per killed session.
    for (const o of writeFailures)
      expect(o.answer?.error, JSON.stringify(o.answer)).toMatchObject({ code: 503, message: "Database unavailable" })
    expect(writeFailures.length).toBeLessThanOrEqual(killed)
    // Nothing applied twice, every acknowledged create stored with its id.
    expect([...stored.values()].filter((ids) => ids.length > 1)).toEqual([])
    for (const [slug, id] of acked) expect(stored.get(slug), slug).toEqual([id])
    expect(acked.size).toBeGreaterThanOrEqual(PROGRESS * 4)

    // The same process, still serving, on the last password only.
    expect(daemon.process.pid).toBe(pid)
    expect(daemon.alive()).toBe(true)
    const after = await clients[0]!.call("count", ["PageView", {}])
    expect(after.error, JSON.stringify(after)).toBeUndefined()
    for (const p of passwords) expect(daemon.output()).not.toContain(p)
  } finally {
    for (const c of clients) await c.close().catch(() => undefined)
    await daemon.stop("SIGTERM", 15_000)
  }
}

describe("database password rotation under load (PostgreSQL, password logins)", () => {
  const skip = skipPgCluster("PostgreSQL password rotation under load")
  let target: Target | undefined
  afterAll(async () => {
    await target?.destroy()
  })

  it.skipIf(skip)(
    "file first then ALTER ROLE, and ALTER ROLE then file: no read fails, no write twice, no restart",
    async () => {
      const passwords = [secret(), secret(), secret()] as const
      const cluster = await createPgCluster({ prefix: "pwrot", maxConnections: 40, passwordLogins: true })
      target = await pgTarget(cluster, `dbal_rot_${randomBytes(4).toString("hex")}`, passwords[0])
      await rotationUnderLoad(target, tempDir("pwrot-pg"), passwords)
    },
    300_000
  )
})

describe("database password rotation under load (MariaDB)", async () => {
  const skip = await skipDialect("mysql")
  let target: Target | undefined
  afterAll(async () => {
    await target?.destroy()
  })

  it.skipIf(skip)(
    "file first then ALTER USER, and ALTER USER then file: no read fails, no write twice, no restart",
    async () => {
      const passwords = [secret(), secret(), secret()] as const
      target = await mariaTarget(`dbal_rot_${randomBytes(4).toString("hex")}`, passwords[0])
      await rotationUnderLoad(target, tempDir("pwrot-my"), passwords)
    },
    300_000
  )
})
