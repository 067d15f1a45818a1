/**
 * The database goes away and comes back. On a PRIVATE PostgreSQL instance (initdb into a temp
 * folder, its own port and socket folder; the shared server on 5432 is never touched): the real
 * daemon process serves requests; the instance is stopped (pg_ctl stop -m fast): requests answer
 * 503 quickly (well before query_timeout), /health and /readyz answer 503, the daemon stays up;
 * the instance is started again: requests succeed again without restarting the daemon.
 * Requires PostgreSQL 15's server binaries and the `postgres` system user (tests run as root).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client, connect, type Daemon, health, startDaemon } from "../support/daemon.js"
import { createPgCluster, type PgCluster, skipPgCluster } from "../support/pgcluster.js"
import { SERVICE_TOKEN, serviceAuth, writeConfig } from "../support/services.js"

const QUERY_TIMEOUT = 10_000

const skip = skipPgCluster("database-down tests")

const timed = async <A>(f: () => Promise<A>): Promise<{ value: A; ms: number }> => {
  const t0 = performance.now()
  const value = await f()
  return { value, ms: performance.now() - t0 }
}

const readyz = async (port: number): Promise<number> =>
  (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(10_000) })).status

describe.skipIf(skip)("database down and back (private PostgreSQL instance)", () => {
  let cluster: PgCluster | undefined
  let daemon: Daemon | undefined
  let client: Client | undefined
  let userId = ""

  beforeAll(async () => {
    cluster = await createPgCluster({ prefix: "pgdown" })
    await cluster.query("postgres", "CREATE DATABASE dbal")
    const config = {
      server: { host: "127.0.0.1", port: 0 },
      database: {
        adapter: "postgresql",
        connection: { host: cluster.host, port: cluster.port, database: "dbal", user: "postgres" },
        pool_size: 4,
        timeout: 2000,
        auto_migrate: true
      },
      performance: { query_timeout: QUERY_TIMEOUT },
      security: { audit_log: false, rate_limit: { enabled: false }, auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] } }
    }
    daemon = await startDaemon([`--config=${writeConfig(config)}`], { timeoutMs: 60_000 })
    client = await connect(daemon.port, serviceAuth)
  })

  afterAll(async () => {
    await client?.close()
    await daemon?.stop()
    await cluster?.destroy()
  })

  it("serves requests while the database is up", async () => {
    const created = await client!.call("create", ["User", { username: "before_outage", email: "before@example.com" }])
    expect(created.error, JSON.stringify(created.error)).toBeUndefined()
    userId = String((created.result as { id: string }).id)
    const listed = await client!.call("list", ["User", {}])
    expect((listed.result as { total: number }).total).toBe(1)
    expect((await health(daemon!.port)).status).toBe(200)
  })

  it("answers 503 quickly while the database is down, and stays up", async () => {
    await cluster!.stop("fast")
    const calls: Array<[string, ReadonlyArray<unknown>]> = [
      ["list", ["User", {}]],
      ["read", ["User", userId]],
      ["count", ["User"]],
      ["create", ["User", { username: "during_outage", email: "during@example.com" }]],
      ["update", ["User", userId, { email: "changed@example.com" }]]
    ]
    for (const [method, params] of calls) {
      const { value, ms } = await timed(() => client!.call(method, params))
      expect(value.error?.code, `${method}: ${JSON.stringify(value)}`).toBe(503)
      expect(ms, `${method} took ${Math.round(ms)} ms`).toBeLessThan(3000)
    }
    const h = await timed(() => health(daemon!.port))
    expect(h.value.status).toBe(503)
    expect(h.value.body.status).toBe("unhealthy")
    expect(h.ms).toBeLessThan(3000)
    expect(await readyz(daemon!.port)).toBe(503)
    expect(daemon!.alive()).toBe(true)
  })

  it("recovers by itself when the database is back", async () => {
    await cluster!.start()
    const deadline = Date.now() + 20_000
    let last: unknown
    let recovered = false
    while (!recovered && Date.now() < deadline) {
      const a = await client!.call("read", ["User", userId])
      last = a
      if (a.error === undefined) recovered = true
      else await new Promise((r) => setTimeout(r, 100))
    }
    expect(recovered, `still failing: ${JSON.stringify(last)}`).toBe(true)
    const listed = await client!.call("list", ["User", {}])
    // The write attempted during the outage was not applied (it never reached the database).
    expect((listed.result as { data: Array<{ username: string }> }).data.map((u) => u.username)).toEqual(["before_outage"])
    const created = await client!.call("create", ["User", { username: "after_outage", email: "after@example.com" }])
    expect(created.error, JSON.stringify(created.error)).toBeUndefined()
    expect((await health(daemon!.port)).status).toBe(200)
    expect(await readyz(daemon!.port)).toBe(200)
    expect(daemon!.alive()).toBe(true)
  })
})
