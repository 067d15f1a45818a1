/**
 * deploy/grafana/dbal-daemon.json and deploy/prometheus/rules.yaml name only metrics the daemon
 * exports: the real daemon process (PostgreSQL, so that the pool's gauges exist; TLS, so that the
 * certificate's expiry exists), exercised until its labelled series exist (successes, errors by
 * code, a principal's 404, a refused connection, cache lookups), then every metric named in a
 * panel's expression or a rule's expression must be a sample of its GET /metrics. `up` is the one
 * series Prometheus makes itself. The dashboard also has the panels the operations docs promise.
 *
 * Without openssl (for the certificate) the test is skipped with a line saying why, unless
 * DBAL_REQUIRE_SERVICES=1, where it fails.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { type Client, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { checkOpenssl, openssl } from "../support/openssl.js"

const missing = checkOpenssl("the dashboard/rules metric check")

interface Panel {
  readonly type: string
  readonly title: string
  readonly targets?: ReadonlyArray<{ readonly expr: string }>
  readonly panels?: ReadonlyArray<Panel>
}
const dashboard = JSON.parse(fs.readFileSync(path.join(root, "deploy", "grafana", "dbal-daemon.json"), "utf8")) as {
  readonly uid: string
  readonly title: string
  readonly panels: ReadonlyArray<Panel>
  readonly templating: { readonly list: ReadonlyArray<{ readonly name: string; readonly query?: unknown }> }
}
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== "row")
const rules = YAML.parse(fs.readFileSync(path.join(root, "deploy", "prometheus", "rules.yaml"), "utf8")) as {
  groups: ReadonlyArray<{ rules: ReadonlyArray<{ alert?: string; record?: string; expr: string }> }>
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "inf",
  "nan"
])

/**
 * The metric names of a PromQL expression: label matchers, strings, ranges, grouping label lists
 * and Grafana variables removed; what is left that is an identifier not called like a function.
 */
export const metricNames = (expr: string): Array<string> => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\w+/g, " ")
  const names = new Set<string>()
  for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?/g)) {
    if (m[1] !== undefined) continue // a function
    if (KEYWORDS.has(m[0].toLowerCase())) continue
    names.add(m[0])
  }
  return [...names]
}

const getHttps = (port: number, p: string, ca: Buffer): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, path: p, ca, servername: "localhost", timeout: 10_000 }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (text += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on("timeout", () => req.destroy(new Error("GET timed out")))
    req.on("error", reject)
  })

const sampleNames = (text: string): Set<string> =>
  new Set(
    text
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"))
      .map((l) => /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(l)![0])
  )

describe("metric names", () => {
  it("are read from PromQL expressions (functions, labels, keywords and variables are not names)", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (job, le) (rate(dbal_request_duration_seconds_bucket{job=~"$job", code=~"5.."}[$__rate_interval]))) > 1'
      )
    ).toEqual(["dbal_request_duration_seconds_bucket"])
    expect(metricNames("dbal_db_pool_waiting_requests > 0 and dbal_db_pool_idle_connections == 0")).toEqual([
      "dbal_db_pool_waiting_requests",
      "dbal_db_pool_idle_connections"
    ])
    expect(metricNames('time() - process_start_time_seconds{instance=~"$instance"}')).toEqual(["process_start_time_seconds"])
  })
})

describe("the dashboard", () => {
  it("has the panels of the issue, each with a query", () => {
    const titles = panels.map((p) => p.title.toLowerCase())
    for (const wanted of [
      "requests by method and status",
      "latency quantiles",
      "errors by code",
      "auth failures",
      "audit records and failures",
      "database latency",
      "database pool",
      "connections",
      "event-loop lag",
      "memory"
    ]) {
      expect(
        titles.some((t) => t.includes(wanted)),
        wanted
      ).toBe(true)
    }
    for (const p of panels) expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0)
    expect(dashboard.uid).toBe("dbal-daemon")
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(["datasource", "job", "instance"])
  })
})

describe.skipIf(missing !== undefined)("every metric of a panel or a rule is exported by the daemon", () => {
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  const clients: Array<Client> = []
  let exposition = ""
  const dir = tempDir("dashboard")

  beforeAll(async () => {
    openssl(dir, [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.crt",
      "-days",
      "30",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost"
    ])
    const ca = fs.readFileSync(path.join(dir, "server.crt"))
    db = await createDatabase("postgresql")
    const cfg = daemonConfig(db)
    const file = writeConfig(
      {
        ...cfg,
        server: {
          ...(cfg.server as object),
          max_connections_per_address: 2,
          tls: { enabled: true, cert_file: path.join(dir, "server.crt"), key_file: path.join(dir, "server.key") }
        },
        performance: { cache_enabled: true }
      },
      dir
    )
    daemon = await startDaemon([`--config=${file}`])
    const client = await connect(daemon.port, serviceAuth, { tls: { ca } })
    clients.push(client)
    const s = randomBytes(4).toString("hex")
    const created = await client.call("create", ["User", { username: `dash_${s}`, email: `dash_${s}@example.com`, role: "user" }])
    expect(created.error, JSON.stringify(created)).toBeUndefined()
    const id = (created.result as { id: string }).id
    expect((await client.call("read", ["User", id])).error).toBeUndefined()
    expect((await client.call("read", ["User", id])).error).toBeUndefined()
    expect((await client.call("read", ["User", "00000000-0000-4000-8000-000000000000"])).error?.code).toBe(404)
    expect((await client.call("list", ["User", {}], { token: "not-the-service-token-000000000", user_id: "x" })).error?.code).toBe(401)
    // A third connection from this address is refused (max_connections_per_address: 2).
    clients.push(await connect(daemon.port, serviceAuth, { tls: { ca } }))
    await expect(connect(daemon.port, serviceAuth, { tls: { ca } })).rejects.toThrow()
    const res = await getHttps(daemon.port, "/metrics", ca)
    expect(res.status).toBe(200)
    exposition = res.text
  })

  afterAll(async () => {
    for (const c of clients) await c.close()
    await daemon?.stop()
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("the dashboard's panels", () => {
    const exported = sampleNames(exposition)
    const named = [...new Set(panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))))]
    expect(named.length).toBeGreaterThan(20)
    const absent = named.filter((n) => !exported.has(n))
    expect(absent, `named by a panel but not exported:\n${exposition}`).toEqual([])
  })

  it("the alerting rules (up aside: Prometheus makes it)", () => {
    const exported = sampleNames(exposition)
    const named = [...new Set(rules.groups.flatMap((g) => g.rules.flatMap((r) => metricNames(r.expr))))].filter((n) => n !== "up")
    expect(named.length).toBeGreaterThan(12)
    const absent = named.filter((n) => !exported.has(n))
    expect(absent, `named by a rule but not exported:\n${exposition}`).toEqual([])
  })
})
