/**
 * The daemon's metrics, defined once. Counters are `incremental` so that they export as
 * Prometheus counters; src/PrometheusText.ts renders every Effect metric in the text format.
 */
import { Metric, MetricBoundaries, MetricKey, MetricLabel } from "effect"

/**
 * Metrics with fixed labels that are updated on every request are made from their labelled key,
 * so that each finds its registry entry once: `Metric.tagged` joins its labels with the update's
 * and looks the entry up by a newly built key (hashed and compared) on every update, which showed
 * in the request path's profile. The series are the same.
 */
const labelled = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => MetricLabel.make(k, v))
const labelledCounter = (key: MetricKey.MetricKey.Counter<number>, labels: Record<string, string>) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labelled(labels)))

const requestsTotalKey = MetricKey.counter("dbal_requests_total", {
  description: "Requests answered, by method and status (success or error)",
  incremental: true
})
export const requestsOf = (method: string, status: "success" | "error") => labelledCounter(requestsTotalKey, { method, status })

const requestDurationKey = MetricKey.histogram(
  "dbal_request_duration_seconds",
  MetricBoundaries.fromIterable([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]),
  "Request duration in seconds, by method"
)
export const durationOf = (method: string) => Metric.fromMetricKey(MetricKey.taggedWithLabels(requestDurationKey, labelled({ method })))

export const activeConnections = Metric.gauge("dbal_active_connections", {
  description: "Open WebSocket client connections"
})

export const connectionsTotal = Metric.counter("dbal_connections_total", {
  description: "WebSocket connections accepted since start",
  incremental: true
})

export const connectionsRefused = Metric.counter("dbal_connections_refused_total", {
  description: "WebSocket connections refused by the connection limits, by reason",
  incremental: true
})

const aclChecksKey = MetricKey.counter("dbal_acl_checks_total", {
  description: "Access decisions taken, by result (allowed or denied)",
  incremental: true
})
export const aclChecks = Metric.fromMetricKey(aclChecksKey)
export const aclChecksOf = (result: string) => labelledCounter(aclChecksKey, { result })

export const rateLimited = Metric.counter("dbal_rate_limited_total", {
  description: "Requests refused by the rate limiter (429)",
  incremental: true
})

export const authFailures = Metric.counter("dbal_auth_failures_total", {
  description: "Failed authentications (401)",
  incremental: true
})

export const authLockouts = Metric.counter("dbal_auth_lockouts_total", {
  description: "Remote addresses locked out by the failed-authentication throttle (each lockout counted once)",
  incremental: true
})

const auditRecordsKey = MetricKey.counter("dbal_audit_records_total", {
  description:
    "Audit records: ok (a write's record on disk), journaled (a write's record committed with the write, appended to the file without waiting), queued (a read's record, written with the next batch), failed",
  incremental: true
})
export const auditRecordsOf = (result: string) => labelledCounter(auditRecordsKey, { result })

const auditFilesDeletedKey = MetricKey.counter("dbal_audit_files_deleted_total", {
  description: "Rotated audit files removed by retention, by reason (max_files or max_age_days)",
  incremental: true
})
export const auditFilesDeletedOf = (reason: string) => labelledCounter(auditFilesDeletedKey, { reason })

const cacheLookupsKey = MetricKey.counter("dbal_cache_lookups_total", {
  description: "Result cache lookups, by result (hit or miss)",
  incremental: true
})
export const cacheLookups = Metric.fromMetricKey(cacheLookupsKey)
export const cacheLookupsOf = (result: string) => labelledCounter(cacheLookupsKey, { result })

const requestErrorsKey = MetricKey.counter("dbal_request_errors_total", {
  description: "Requests answered with an error, by method and wire error code (400, 401, 403, 404, 409, 422, 429, 500, 501, 503, 504)",
  incremental: true
})
export const requestErrorsOf = (method: string, code: number) => labelledCounter(requestErrorsKey, { method, code: String(code) })

const entityRequestsKey = MetricKey.counter("dbal_entity_requests_total", {
  description:
    'Requests that named an entity, by entity (a name of the entity registry, or "unknown"), method and status (success or error)',
  incremental: true
})
export const entityRequestsOf = (entity: string, method: string, status: "success" | "error") =>
  labelledCounter(entityRequestsKey, { entity, method, status })

const principalRejectionsKey = MetricKey.counter("dbal_principal_rejections_total", {
  description:
    'Requests of an authenticated principal refused with 403 (forbidden), 404 (not found) or 429 (rate limited), by principal and code; at most 100 principals are named, the rest count as "_other"',
  incremental: true
})
export const principalRejectionsOf = (principal: string, code: number) =>
  labelledCounter(principalRejectionsKey, { principal, code: String(code) })

const aclRulesReloadsKey = MetricKey.counter("dbal_acl_rules_reloads_total", {
  description: "Reloads of the access rules file, by result (success, or failure: the previous rules stay in force)",
  incremental: true
})
export const aclRulesReloadsOf = (result: "success" | "failure") => labelledCounter(aclRulesReloadsKey, { result })

export const tlsCertificateExpiry = Metric.gauge("dbal_tls_certificate_expiry_timestamp_seconds", {
  description: "Expiry (notAfter) of the server's TLS certificate in use, seconds since the Unix epoch"
})

export const ready = Metric.gauge("dbal_ready", {
  description: "1 while the daemon accepts connections (started, not draining), else 0; /readyz also needs the database"
})

export const realtimeSubscriptions = Metric.gauge("dbal_realtime_subscriptions", {
  description: "Live subscriptions held on this replica"
})

export const realtimeSubscribers = Metric.gauge("dbal_realtime_subscribed_connections", {
  description: "Connections holding at least one subscription"
})

export const realtimeEvents = Metric.counter("dbal_realtime_events_total", {
  description: "Events pushed to subscribers (one per subscription that received one)",
  incremental: true
})

export const realtimeFetches = Metric.counter("dbal_realtime_fetches_total", {
  description: "Queries made to read changed rows for subscribers (at most one per change per replica, whatever the number of subscribers)",
  incremental: true
})

const realtimeEndedKey = MetricKey.counter("dbal_realtime_subscriptions_ended_total", {
  description:
    "Subscriptions ended by the daemon, by reason: slow (the connection left more than realtime.max_buffered_bytes unread), " +
    "revoked (credentials expired or deleted, or read access withdrawn)",
  incremental: true
})
export const realtimeEndedOf = (reason: "slow" | "revoked") => labelledCounter(realtimeEndedKey, { reason })

export const realtimeDelivery = Metric.histogram(
  "dbal_realtime_delivery_seconds",
  MetricBoundaries.fromIterable([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
  "Seconds from a change being heard on this replica (written here, or announced by another) to its last event being pushed"
)
