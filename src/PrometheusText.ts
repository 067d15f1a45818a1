/**
 * Prometheus text exposition (format 0.0.4) of every Effect metric, for GET /metrics.
 *
 * - One `# HELP` and one `# TYPE` line per family, families sorted by name, series sorted by
 *   their labels, no duplicate series (two metric keys with the same name and labels are merged).
 * - Effect counters made with `incremental: true` are Prometheus counters; other counters can go
 *   down, so they are gauges. Histograms have cumulative `_bucket{le=...}` up to `le="+Inf"`,
 *   `_sum` and `_count`; summaries have `{quantile=...}`, `_sum` and `_count`; a frequency is a
 *   counter with a `key` label. A counter whose name lacks the `_total` suffix Prometheus
 *   requires (Effect's own `effect_fiber_*` counters) gets it appended.
 * - Label values are escaped (backslash, double quote, newline); names are reduced to the
 *   characters Prometheus allows.
 * - Process series (prom-client's `process_*` and `nodejs_*` names: memory, CPU, start time,
 *   file descriptors, event-loop lag) and the database series (`dbal_db_pool_up` and
 *   `dbal_db_ping_seconds` from a bounded ping, the pool's `dbal_db_pool_*` counts) are computed at
 *   scrape time. The database is found with `Effect.serviceOption`, so the effect needs nothing and
 *   simply leaves those series out where no database is provided.
 */
import { Effect, Metric, MetricKeyType, type MetricPair, MetricState, Option } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as fs from "node:fs"
import {
  aclRulesReloadsOf,
  auditFilesDeletedOf,
  auditRecordsOf,
  authFailures,
  authLockouts,
  connectionsTotal,
  rateLimited
} from "./Metrics.js"
import { Database, type PoolStats } from "./services/Database.js"

type Kind = "counter" | "gauge" | "histogram" | "summary"

interface Sample {
  /** Suffix appended to the family name (`_bucket`, `_sum`, `_count` or ""). */
  readonly suffix: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number
}

interface Series {
  /** Labels of the series (without `le` / `quantile`), rendered: the deduplication key. */
  readonly key: string
  samples: Array<Sample>
}

interface Family {
  readonly name: string
  readonly kind: Kind
  help: string
  readonly series: Map<string, Series>
}

const sanitizeName = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(s) ? s : `_${s}`
}

const sanitizeLabel = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[a-zA-Z_]/.test(s) ? s : `_${s}`
}

/** Label values: backslash, double quote and line feed are escaped. */
export const escapeLabelValue = (v: string): string => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** HELP text: backslash and line feed are escaped. */
const escapeHelp = (v: string): string => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** Go-style float formatting as Prometheus expects: +Inf, -Inf, NaN, otherwise the shortest decimal. */
export const formatValue = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Number.POSITIVE_INFINITY ? "+Inf" : n === Number.NEGATIVE_INFINITY ? "-Inf" : String(n)

const renderLabels = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`

const toNumber = (n: number | bigint): number => (typeof n === "bigint" ? Number(n) : n)

/** Collects families and series; later series with the same family and labels are merged. */
class Exposition {
  private readonly families = new Map<string, Family>()

  add(
    rawName: string,
    kind: Kind,
    help: string,
    rawLabels: ReadonlyArray<readonly [string, string]>,
    samples: (labels: ReadonlyArray<readonly [string, string]>) => Array<Sample>
  ): void {
    const name = sanitizeName(rawName)
    let family = this.families.get(name)
    if (family === undefined) {
      family = { name, kind, help, series: new Map() }
      this.families.set(name, family)
    } else if (family.kind !== kind) {
      // One name, two types: keep the first family rather than emit an invalid exposition.
      return
    }
    if (family.help === "" && help !== "") family.help = help
    // Labels sorted by name, duplicate names dropped (the last value wins).
    const byName = new Map<string, string>()
    for (const [k, v] of rawLabels) byName.set(sanitizeLabel(k), v)
    const labels = [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const key = renderLabels(labels)
    const fresh = samples(labels)
    const existing = family.series.get(key)
    if (existing === undefined) {
      family.series.set(key, { key, samples: fresh })
      return
    }
    // Same family and labels from two metric keys (e.g. two descriptions): counters and
    // histogram/summary counts add up sample by sample when they line up; gauges keep the first.
    if (kind === "gauge" || existing.samples.length !== fresh.length) return
    existing.samples = existing.samples.map((s, i) => {
      const f = fresh[i]!
      const sameSample = f.suffix === s.suffix && renderLabels(f.labels) === renderLabels(s.labels)
      const additive = kind === "counter" || s.suffix !== "" // _bucket, _sum, _count
      return sameSample && additive ? { ...s, value: s.value + f.value } : s
    })
  }

  render(): string {
    const out: Array<string> = []
    const names = [...this.families.keys()].sort()
    for (const name of names) {
      const family = this.families.get(name)!
      out.push(`# HELP ${name} ${escapeHelp(family.help === "" ? name : family.help)}`)
      out.push(`# TYPE ${name} ${family.kind}`)
      const keys = [...family.series.keys()].sort()
      for (const key of keys) {
        for (const s of family.series.get(key)!.samples) out.push(`${name}${s.suffix}${renderLabels(s.labels)} ${formatValue(s.value)}`)
      }
    }
    return out.length === 0 ? "" : `${out.join("\n")}\n`
  }
}

const addMetric = (exp: Exposition, pair: MetricPair.MetricPair.Untyped): void => {
  const key = pair.metricKey
  const state: unknown = pair.metricState
  const help = Option.getOrElse(key.description, () => "")
  const labels = key.tags.map((t) => [t.key, t.value] as const)
  const one = (value: number) => (l: ReadonlyArray<readonly [string, string]>) => [{ suffix: "", labels: l, value }]
  if (MetricState.isCounterState(state)) {
    const incremental = MetricKeyType.isCounterKey(key.keyType) && key.keyType.incremental
    // Prometheus counters end in _total (ours do; Effect's own fiber counters do not).
    const name = incremental && !key.name.endsWith("_total") ? `${key.name}_total` : key.name
    exp.add(name, incremental ? "counter" : "gauge", help, labels, one(toNumber(state.count)))
  } else if (MetricState.isGaugeState(state)) {
    exp.add(key.name, "gauge", help, labels, one(toNumber(state.value)))
  } else if (MetricState.isHistogramState(state)) {
    exp.add(key.name, "histogram", help, labels, (l) => {
      const samples: Array<Sample> = []
      let sawInf = false
      const buckets = [...state.buckets].sort(([a], [b]) => a - b)
      for (const [bound, count] of buckets) {
        if (bound === Number.POSITIVE_INFINITY) sawInf = true
        samples.push({ suffix: "_bucket", labels: [...l, ["le", formatValue(bound)]], value: count })
      }
      if (!sawInf) samples.push({ suffix: "_bucket", labels: [...l, ["le", "+Inf"]], value: state.count })
      samples.push({ suffix: "_sum", labels: l, value: state.sum }, { suffix: "_count", labels: l, value: state.count })
      return samples
    })
  } else if (MetricState.isSummaryState(state)) {
    exp.add(key.name, "summary", help, labels, (l) => [
      ...state.quantiles.map(([q, v]) => ({
        suffix: "",
        labels: [...l, ["quantile", formatValue(q)] as const],
        value: Option.getOrElse(v, () => Number.NaN)
      })),
      { suffix: "_sum", labels: l, value: state.sum },
      { suffix: "_count", labels: l, value: state.count }
    ])
  } else if (MetricState.isFrequencyState(state)) {
    const name = key.name.endsWith("_total") ? key.name : `${key.name}_total`
    for (const [k, n] of state.occurrences) exp.add(name, "counter", help, [...labels, ["key", k]], one(n))
  }
}

// Event-loop delay, sampled every 10 ms by Node (its timer does not keep the process alive), as
// prom-client samples it.
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()

const startTimeSeconds = Math.round((Date.now() / 1000 - process.uptime()) * 1000) / 1000

/** A value of /proc/self/status (kB → bytes), or undefined off Linux. */
const procStatusBytes = (field: string): number | undefined => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync("/proc/self/status", "utf8"))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

const openFds = (): number | undefined => {
  try {
    return fs.readdirSync("/proc/self/fd").length
  } catch {
    return undefined
  }
}

const maxFds = (): number | undefined => {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"))
    return m === null ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

const [nodeMajor, nodeMinor, nodePatch] = process.versions.node.split(".")

/**
 * The process and runtime series under the names of prom-client's default collectors
 * (`process_*`, `nodejs_*`), so that the usual dashboards and alerts work unchanged.
 */
const addProcessSeries = (exp: Exposition): void => {
  const mem = process.memoryUsage()
  const cpu = process.cpuUsage()
  const g = (name: string, help: string, value: number | undefined, kind: Kind = "gauge") => {
    if (value !== undefined) exp.add(name, kind, help, [], (l) => [{ suffix: "", labels: l, value }])
  }
  g("process_cpu_user_seconds_total", "Total user CPU time spent in seconds", cpu.user / 1e6, "counter")
  g("process_cpu_system_seconds_total", "Total system CPU time spent in seconds", cpu.system / 1e6, "counter")
  g("process_cpu_seconds_total", "Total user and system CPU time spent in seconds", (cpu.user + cpu.system) / 1e6, "counter")
  g("process_start_time_seconds", "Start time of the process since unix epoch in seconds", startTimeSeconds)
  g("process_resident_memory_bytes", "Resident memory size in bytes", mem.rss)
  g("process_virtual_memory_bytes", "Virtual memory size in bytes", procStatusBytes("VmSize"))
  g("process_heap_bytes", "Process heap size in bytes", procStatusBytes("VmData"))
  g("process_open_fds", "Number of open file descriptors", openFds())
  g("process_max_fds", "Maximum number of open file descriptors", maxFds())
  g("nodejs_heap_size_total_bytes", "Process heap size from Node.js in bytes", mem.heapTotal)
  g("nodejs_heap_size_used_bytes", "Process heap size used from Node.js in bytes", mem.heapUsed)
  g("nodejs_external_memory_bytes", "Node.js external memory size in bytes", mem.external)
  // The delays seen since the previous scrape (then the window starts again), as prom-client does.
  const has = loopDelay.count > 0
  const seconds = (ns: number) => (has && Number.isFinite(ns) ? ns / 1e9 : 0)
  g("nodejs_eventloop_lag_min_seconds", "The minimum recorded event loop delay", seconds(loopDelay.min))
  g("nodejs_eventloop_lag_max_seconds", "The maximum recorded event loop delay", seconds(loopDelay.max))
  g("nodejs_eventloop_lag_mean_seconds", "The mean of the recorded event loop delays", seconds(loopDelay.mean))
  g("nodejs_eventloop_lag_stddev_seconds", "The standard deviation of the recorded event loop delays", seconds(loopDelay.stddev))
  g("nodejs_eventloop_lag_p50_seconds", "The 50th percentile of the recorded event loop delays", seconds(loopDelay.percentile(50)))
  g("nodejs_eventloop_lag_p90_seconds", "The 90th percentile of the recorded event loop delays", seconds(loopDelay.percentile(90)))
  g("nodejs_eventloop_lag_p99_seconds", "The 99th percentile of the recorded event loop delays", seconds(loopDelay.percentile(99)))
  loopDelay.reset()
  exp.add(
    "nodejs_version_info",
    "gauge",
    "Node.js version info",
    [
      ["version", process.version],
      ["major", nodeMajor ?? ""],
      ["minor", nodeMinor ?? ""],
      ["patch", nodePatch ?? ""]
    ],
    (l) => [{ suffix: "", labels: l, value: 1 }]
  )
}

interface DatabaseSample {
  readonly up: boolean
  readonly seconds: number
  readonly pool: PoolStats | undefined
}

/** `dbal_db_pool_up` 1/0, the round-trip time of a `SELECT 1` (bounded to 2 s) and the pool's counts. */
const databaseSeries = Effect.flatMap(Effect.serviceOption(Database), (db) =>
  Option.isNone(db)
    ? Effect.succeed(Option.none<DatabaseSample>())
    : db.value.ping.pipe(
        Effect.timeout("2 seconds"),
        Effect.map((ms): DatabaseSample => ({ up: true, seconds: ms / 1000, pool: db.value.poolStats?.() })),
        Effect.orElseSucceed((): DatabaseSample => ({ up: false, seconds: Number.NaN, pool: db.value.poolStats?.() })),
        Effect.map(Option.some),
        // A scrape every few seconds must not export a trace each time.
        Effect.withTracerEnabled(false)
      )
)

/** Unlabelled counters exist from the start (at 0), not only after their first increment. */
const registerUnlabelled = Effect.all(
  [
    Metric.value(connectionsTotal),
    Metric.value(rateLimited),
    Metric.value(authFailures),
    Metric.value(authLockouts),
    Metric.value(auditFilesDeletedOf("max_files")),
    Metric.value(auditFilesDeletedOf("max_age_days")),
    Metric.value(aclRulesReloadsOf("success")),
    Metric.value(aclRulesReloadsOf("failure")),
    Metric.value(auditRecordsOf("failed"))
  ],
  { discard: true }
)

export const renderPrometheus: Effect.Effect<string> = Effect.gen(function* () {
  yield* registerUnlabelled
  const db = yield* databaseSeries
  const snapshot = yield* Metric.snapshot
  const exp = new Exposition()
  for (const pair of snapshot) addMetric(exp, pair)
  addProcessSeries(exp)
  if (Option.isSome(db)) {
    exp.add("dbal_db_pool_up", "gauge", "Whether the database answered a ping (SELECT 1) within 2 s", [], (l) => [
      { suffix: "", labels: l, value: db.value.up ? 1 : 0 }
    ])
    if (db.value.up) {
      exp.add("dbal_db_ping_seconds", "gauge", "Round trip of the last ping (SELECT 1) to the database in seconds", [], (l) => [
        { suffix: "", labels: l, value: db.value.seconds }
      ])
    }
    const pool = db.value.pool
    if (pool !== undefined) {
      const p = (name: string, help: string, value: number) => exp.add(name, "gauge", help, [], (l) => [{ suffix: "", labels: l, value }])
      p("dbal_db_pool_connections", "Connections of the database pool, open in total (up to database.pool_size)", pool.total)
      p("dbal_db_pool_idle_connections", "Connections of the database pool open and idle", pool.idle)
      p("dbal_db_pool_waiting_requests", "Statements waiting for a connection of the database pool (all connections busy)", pool.waiting)
    }
  }
  return exp.render()
})
