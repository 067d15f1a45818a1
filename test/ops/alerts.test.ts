/**
 * deploy/prometheus: `promtool check rules` accepts rules.yaml, `promtool test rules` passes its
 * unit tests (rules.test.yaml), every alert has a test in which it fires and one in which it
 * stays quiet, the alerts are all there, and the PrometheusRule of deploy/k8s/monitoring
 * carries exactly the same groups.
 *
 * promtool comes from the Debian package `prometheus`. Without it the promtool checks are skipped
 * with a line saying why, unless DBAL_REQUIRE_SERVICES=1, where they fail.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { root } from "../support/daemon.js"
import { requireServices } from "../support/services.js"

const dir = path.join(root, "deploy", "prometheus")
const rulesFile = path.join(dir, "rules.yaml")
const testsFile = path.join(dir, "rules.test.yaml")

interface Rule {
  readonly alert?: string
  readonly record?: string
  readonly expr: string
  readonly labels?: Record<string, string>
  readonly annotations?: Record<string, string>
}
interface Groups {
  readonly groups: ReadonlyArray<{ readonly name: string; readonly rules: ReadonlyArray<Rule> }>
}
interface AlertTest {
  readonly eval_time: string
  readonly alertname: string
  readonly exp_alerts?: ReadonlyArray<unknown> | null
}
interface UnitTests {
  readonly rule_files: ReadonlyArray<string>
  readonly tests: ReadonlyArray<{ readonly name: string; readonly alert_rule_test?: ReadonlyArray<AlertTest> }>
}

const rules = YAML.parse(fs.readFileSync(rulesFile, "utf8")) as Groups
const alerts = rules.groups.flatMap((g) => g.rules).filter((r): r is Rule & { alert: string } => r.alert !== undefined)

const promtoolMissing = (): string | undefined => {
  const r = spawnSync("promtool", ["--version"], { encoding: "utf8", timeout: 10_000 })
  if (r.error !== undefined)
    return `promtool is not installed (${r.error.message}); install it with: apt-get install -y --no-install-recommends prometheus`
  return r.status === 0 ? undefined : `promtool --version exited with ${r.status}`
}
const missing = promtoolMissing()
if (missing !== undefined && !requireServices) console.warn(`skipping the promtool rule checks: ${missing}`)

const promtool = (args: ReadonlyArray<string>) => {
  if (missing !== undefined) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${missing}`)
  return spawnSync("promtool", args, { cwd: dir, encoding: "utf8", timeout: 60_000 })
}

describe("deploy/prometheus/rules.yaml", () => {
  it.skipIf(missing !== undefined && !requireServices)("passes `promtool check rules`", () => {
    const r = promtool(["check", "rules", "rules.yaml"])
    expect(`${r.stdout}${r.stderr}`).toContain(`SUCCESS: ${alerts.length} rules found`)
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0)
  })

  it.skipIf(missing !== undefined && !requireServices)("passes its unit tests (`promtool test rules rules.test.yaml`)", () => {
    const r = promtool(["test", "rules", "rules.test.yaml"])
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0)
    expect(r.stdout).toContain("SUCCESS")
  })

  it.skipIf(missing !== undefined && !requireServices)("the unit tests can fail: a rule that never fires is caught", () => {
    // The same tests against a copy of the rules in which one alert's threshold cannot be met.
    const tmp = fs.mkdtempSync(path.join(dir, ".mutant-"))
    try {
      const text = fs.readFileSync(rulesFile, "utf8").replace("expr: dbal_db_pool_up == 0", "expr: dbal_db_pool_up == 2")
      expect(text).toContain("dbal_db_pool_up == 2")
      fs.writeFileSync(path.join(tmp, "rules.yaml"), text)
      fs.copyFileSync(testsFile, path.join(tmp, "rules.test.yaml"))
      const r = spawnSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: tmp, encoding: "utf8", timeout: 60_000 })
      expect(r.status).not.toBe(0)
      expect(`${r.stdout}${r.stderr}`).toContain("DbalDatabaseUnreachable")
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true })
    }
  })

  it("every alert has a test where it fires and one where it stays quiet", () => {
    const tests = YAML.parse(fs.readFileSync(testsFile, "utf8")) as UnitTests
    expect(tests.rule_files).toEqual(["rules.yaml"])
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? [])
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert)
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${a.alert} fires in some test`
      ).toBe(true)
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${a.alert} stays quiet in some test`
      ).toBe(true)
    }
    // No test names an alert that does not exist.
    for (const c of cases)
      expect(
        alerts.map((a) => a.alert),
        c.alertname
      ).toContain(c.alertname)
  })

  it("has the issue's alerts, each with a severity, a summary and a description", () => {
    const exprs = alerts.map((a) => a.expr).join("\n")
    for (const needed of [
      /up\{job="dbal-daemon"\} == 0/, // down
      /dbal_ready == 0/, // unready
      /dbal_request_errors_total\{code=~"5\.\."\}/, // 5xx
      /dbal_request_errors_total\{code="503"\}/, // 503
      /histogram_quantile\(0\.99, .*dbal_request_duration_seconds_bucket/, // p99
      /dbal_auth_failures_total/, // auth-failure spike
      /dbal_auth_lockouts_total/, // lockouts
      /dbal_principal_rejections_total\{code="429"\}/, // a principal rate-limited again and again
      /dbal_audit_records_total\{result="failed"\}/, // failed audit write
      /dbal_db_pool_up == 0/, // database unreachable
      /dbal_db_pool_waiting_requests/, // pool exhausted
      /dbal_acl_rules_reloads_total\{result="failure"\}/, // rules reload failure
      /dbal_tls_certificate_expiry_timestamp_seconds - time\(\)/, // TLS expiry
      /dbal_principal_rejections_total\{code=~"403\|404"\}/ // suspicious activity
    ]) {
      expect(exprs).toMatch(needed)
    }
    expect(alerts.length).toBeGreaterThanOrEqual(8)
    for (const a of alerts) {
      expect(["warning", "critical"], a.alert).toContain(a.labels?.severity)
      expect(a.annotations?.summary, a.alert).toBeTruthy()
      expect(a.annotations?.description, a.alert).toBeTruthy()
    }
  })

  it("deploy/k8s/monitoring/prometheusrule.yaml holds the same groups (node deploy/prometheus/prometheusrule.mjs writes it)", () => {
    const object = YAML.parse(fs.readFileSync(path.join(root, "deploy", "k8s", "monitoring", "prometheusrule.yaml"), "utf8")) as {
      apiVersion: string
      kind: string
      spec: Groups
    }
    expect(object.apiVersion).toBe("monitoring.coreos.com/v1")
    expect(object.kind).toBe("PrometheusRule")
    expect(object.spec.groups).toEqual(rules.groups)
  })
})
