/**
 * GET /metrics: the specification's series with their labels, counts that move by exactly what
 * was done between two scrapes, an exposition that `promtool check metrics` accepts without a
 * lint problem, and no secret in it.
 *
 * promtool comes from the Debian package `prometheus`. Without it the promtool check is skipped
 * with a line saying why, unless DBAL_REQUIRE_SERVICES=1, where it fails.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { Effect, Metric } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { escapeLabelValue, renderPrometheus } from "../../src/PrometheusText.js"
import { type Client, connect } from "../support/daemon.js"
import { requireServices, SERVICE_TOKEN, serviceAuth } from "../support/services.js"
import { get, type InProcessDaemon, parseSamples, startInProcess } from "./support.js"

const promtoolMissing = (): string | undefined => {
  const r = spawnSync("promtool", ["--version"], { encoding: "utf8", timeout: 10_000 })
  if (r.error !== undefined)
    return `promtool is not installed (${r.error.message}); install it with: apt-get install -y --no-install-recommends prometheus`
  return r.status === 0 ? undefined : `promtool --version exited with ${r.status}`
}
const missing = promtoolMissing()
if (missing !== undefined && !requireServices) console.warn(`skipping the promtool check: ${missing}`)

describe("GET /metrics (Prometheus text format 0.0.4)", () => {
  let daemon: InProcessDaemon | undefined
  let client: Client | undefined
  let before = ""
  let after = ""

  beforeAll(async () => {
    daemon = await startInProcess("metrics")
    before = (await get(daemon.port, "/metrics")).text
    client = await connect(daemon.port, serviceAuth)
    const suffix = randomBytes(4).toString("hex")
    for (let i = 0; i < 3; i++) {
      const a = await client.call("create", [
        "User",
        { username: `metrics_${suffix}_${i}`, email: `m${i}_${suffix}@example.com`, role: "user" }
      ])
      expect(a.error, JSON.stringify(a)).toBeUndefined()
    }
    const notFound = await client.call("read", ["User", "00000000-0000-4000-8000-000000000000"])
    expect(notFound.error?.code, JSON.stringify(notFound)).toBe(404)
    const badToken = await client.call("create", ["User", { username: `x_${suffix}`, email: `x_${suffix}@example.com` }], {
      token: "not-the-service-token-000000000",
      user_id: "tests"
    })
    expect(badToken.error?.code, JSON.stringify(badToken)).toBe(401)
    after = (await get(daemon.port, "/metrics")).text
  })

  afterAll(async () => {
    await client?.close()
    await daemon?.dispose()
  })

  it("is served as text/plain version 0.0.4", async () => {
    const res = await get(daemon!.port, "/metrics")
    expect(res.status).toBe(200)
    expect(res.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
  })

  it.skipIf(missing !== undefined && !requireServices)("passes `promtool check metrics` without a problem", () => {
    if (missing !== undefined) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${missing}`)
    const r = spawnSync("promtool", ["check", "metrics"], { input: after, encoding: "utf8", timeout: 30_000 })
    expect(`${r.stdout}${r.stderr}`.trim(), "promtool's lint output").toBe("")
    expect(r.status).toBe(0)
  })

  it("has one HELP and one TYPE per family, sorted families, no duplicate series", () => {
    const help = after
      .split("\n")
      .filter((l) => l.startsWith("# HELP "))
      .map((l) => l.split(" ")[2]!)
    const type = after
      .split("\n")
      .filter((l) => l.startsWith("# TYPE "))
      .map((l) => l.split(" ")[2]!)
    expect(new Set(help).size).toBe(help.length)
    expect(type).toEqual(help)
    expect([...help].sort()).toEqual(help)
    expect(() => parseSamples(after)).not.toThrow()
    expect(after).toContain("# TYPE dbal_requests_total counter")
    expect(after).toContain("# TYPE dbal_request_duration_seconds histogram")
    expect(after).toContain("# TYPE dbal_active_connections gauge")
    expect(after).toContain("# TYPE dbal_acl_checks_total counter")
  })

  it("has the specification's series with their labels", () => {
    const s = parseSamples(after)
    for (const series of [
      'dbal_requests_total{method="create",status="success"}',
      'dbal_requests_total{method="read",status="error"}',
      'dbal_request_duration_seconds_bucket{method="create",le="0.005"}',
      'dbal_request_duration_seconds_bucket{method="create",le="+Inf"}',
      'dbal_request_duration_seconds_sum{method="create"}',
      'dbal_request_duration_seconds_count{method="create"}',
      "dbal_active_connections",
      'dbal_acl_checks_total{result="allowed"}',
      "dbal_connections_total",
      "dbal_auth_failures_total",
      "dbal_rate_limited_total",
      'dbal_request_errors_total{code="404",method="read"}',
      'dbal_request_errors_total{code="401",method="create"}',
      'dbal_entity_requests_total{entity="User",method="create",status="success"}',
      'dbal_principal_rejections_total{code="404",principal="tests"}',
      "dbal_auth_lockouts_total",
      'dbal_audit_files_deleted_total{reason="max_files"}',
      'dbal_audit_files_deleted_total{reason="max_age_days"}',
      'dbal_acl_rules_reloads_total{result="failure"}',
      'dbal_audit_records_total{result="failed"}',
      "dbal_ready",
      "process_resident_memory_bytes",
      "process_cpu_user_seconds_total",
      "process_cpu_system_seconds_total",
      "process_cpu_seconds_total",
      "process_start_time_seconds",
      "process_open_fds",
      "process_max_fds",
      "nodejs_heap_size_used_bytes",
      "nodejs_heap_size_total_bytes",
      "nodejs_external_memory_bytes",
      "nodejs_eventloop_lag_p99_seconds",
      "dbal_db_pool_up"
    ]) {
      expect(s.has(series), `${series} in\n${after}`).toBe(true)
    }
    expect(s.get("dbal_db_pool_up")).toBe(1)
    expect(s.get("dbal_active_connections")).toBe(1)
    expect(s.get("dbal_ready")).toBe(1)
    // The start time is the process's, in seconds since the epoch (not an uptime).
    expect(Math.abs(s.get("process_start_time_seconds")! - (Date.now() / 1000 - process.uptime()))).toBeLessThan(5)
    expect([...s.keys()].some((k) => k.startsWith("dbal_uptime_seconds") || k.startsWith("dbal_process_"))).toBe(false)
  })

  it("moves the counts by what was done between two scrapes", () => {
    const a = parseSamples(before)
    const b = parseSamples(after)
    const delta = (series: string) => (b.get(series) ?? 0) - (a.get(series) ?? 0)
    expect(delta('dbal_requests_total{method="create",status="success"}')).toBe(3)
    expect(delta('dbal_requests_total{method="create",status="error"}')).toBe(1)
    expect(delta('dbal_requests_total{method="read",status="error"}')).toBe(1)
    expect(delta('dbal_request_duration_seconds_count{method="create"}')).toBe(4)
    expect(delta('dbal_request_duration_seconds_bucket{method="create",le="+Inf"}')).toBe(4)
    expect(delta('dbal_request_duration_seconds_count{method="read"}')).toBe(1)
    expect(delta('dbal_request_duration_seconds_sum{method="create"}')).toBeGreaterThan(0)
    // Three creates and one read decided by the access layer (the 401 never got there).
    expect(delta('dbal_acl_checks_total{result="allowed"}')).toBe(4)
    expect(delta('dbal_acl_checks_total{result="denied"}')).toBe(0)
    expect(delta("dbal_auth_failures_total")).toBe(1)
    expect(delta("dbal_rate_limited_total")).toBe(0)
    expect(delta("dbal_connections_total")).toBe(1)
    // Errors by wire code; the entity label names the registry's entity; a principal's 404.
    expect(delta('dbal_request_errors_total{code="404",method="read"}')).toBe(1)
    expect(delta('dbal_request_errors_total{code="401",method="create"}')).toBe(1)
    expect(delta('dbal_entity_requests_total{entity="User",method="create",status="success"}')).toBe(3)
    expect(delta('dbal_entity_requests_total{entity="User",method="create",status="error"}')).toBe(1)
    expect(delta('dbal_entity_requests_total{entity="User",method="read",status="error"}')).toBe(1)
    expect(delta('dbal_principal_rejections_total{code="404",principal="tests"}')).toBe(1)
    // Buckets are cumulative: each one holds at least the one below it.
    const buckets = [...b.entries()].filter(([k]) => k.startsWith('dbal_request_duration_seconds_bucket{method="create"'))
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1])
    expect(buckets.at(-1)![0]).toContain('le="+Inf"')
  })

  it("contains no secret", () => {
    expect(after).not.toContain(SERVICE_TOKEN)
    expect(after).not.toContain("not-the-service-token")
  })
})

describe("the renderer", () => {
  it("escapes label values (backslash, quote, newline) and stays valid for promtool", async () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd')
    const odd = Metric.counter("dbal_ops_test_odd_total", { description: "a test counter", incremental: true })
    await Effect.runPromise(Metric.increment(Metric.tagged(odd, "path", 'C:\\x "y"\nz')))
    const text = await Effect.runPromise(renderPrometheus)
    expect(text).toContain('dbal_ops_test_odd_total{path="C:\\\\x \\"y\\"\\nz"} 1')
    if (missing === undefined) {
      const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 30_000 })
      expect(`${r.stdout}${r.stderr}`.trim()).toBe("")
      expect(r.status).toBe(0)
    }
  })
})
