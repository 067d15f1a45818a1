/**
 * Span export (`tracing`): with `tracing.enabled` and `tracing.otlp_endpoint`, every span the
 * daemon makes (`rpc.<method>` with its children `auth`, `rate_limit`, `acl`, the SQL spans…) is
 * sent to an OpenTelemetry collector over OTLP/HTTP (JSON body, POST to the endpoint as given,
 * e.g. http://otel-collector:4318/v1/traces), in batches every second and when the daemon stops.
 *
 * Off by default: the exporter modules are imported only when tracing is on, so a daemon without
 * tracing loads and sends nothing, and its tracer is off: no span is made, since nobody would see
 * it. Each request still has a trace id of its own (src/Spans.ts, `requestTrace`), which its
 * audit record and log lines carry.
 */
import { Effect, Layer } from "effect"
import { AppConfig } from "../src/Config.js"
import { version } from "../src/version.js"

export const layer: Layer.Layer<never, never, AppConfig> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const { tracing } = yield* AppConfig
    if (!tracing.enabled) return Layer.setTracerEnabled(false)
    if (tracing.otlp_endpoint === undefined) {
      yield* Effect.logWarning("tracing.enabled is true but tracing.otlp_endpoint is not set: spans are not exported")
      return Layer.setTracerEnabled(false)
    }
    const url = tracing.otlp_endpoint
    const [{ layer: otlpTracer }, { layerJson }, { layer: fetchClient }] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/opentelemetry/OtlpTracer"),
        import("@effect/opentelemetry/OtlpSerialization"),
        import("@effect/platform/FetchHttpClient")
      ])
    )
    yield* Effect.logInfo(`tracing: exporting spans to ${url} as ${tracing.service_name}`)
    return otlpTracer({
      url,
      resource: { serviceName: tracing.service_name, serviceVersion: version },
      exportInterval: "1 second",
      shutdownTimeout: "3 seconds"
    }).pipe(Layer.provide(layerJson), Layer.provide(fetchClient))
  })
)
