/**
 * Tracing (tracing.enabled + tracing.otlp_endpoint): a small local HTTP server plays the OTLP
 * collector. A `create` request's spans (rpc.create with its children auth and acl) arrive there
 * with the trace id written in the audit record of that request; with tracing off nothing is
 * sent. The JSON log lines carry the trace id and span id of the span they were logged in.
 * A caller's W3C `traceparent` (in the frame, or on the WebSocket upgrade request) makes the
 * request's spans children of the caller's span, in its trace; a malformed one is ignored.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import { Effect, Layer, Logger } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { jsonWithTrace } from "../../layers/Logging.js"
import { parseTraceparent, requestTrace } from "../../src/Spans.js"
import { connect, openSocket } from "../support/daemon.js"
import { serviceAuth, SERVICE_TOKEN } from "../support/services.js"
import { type InProcessDaemon, type Rec, startInProcess } from "./support.js"

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
}

interface Collector {
  readonly url: string
  readonly requests: Array<{ path: string; body: string }>
  readonly spans: () => Array<OtlpSpan>
  /** Waits (bounded) until `pred` holds for the spans received. */
  readonly waitFor: (pred: (spans: Array<OtlpSpan>) => boolean, timeoutMs?: number) => Promise<Array<OtlpSpan>>
  readonly close: () => Promise<void>
}

/** An OTLP/HTTP (JSON) traces receiver on a free port. */
const startCollector = (): Promise<Collector> =>
  new Promise((resolve) => {
    const requests: Array<{ path: string; body: string }> = []
    const watchers = new Set<() => void>()
    const server = http.createServer((req, res) => {
      let body = ""
      req.setEncoding("utf8")
      req.on("data", (c: string) => (body += c))
      req.on("end", () => {
        requests.push({ path: req.url ?? "", body })
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{}")
        for (const w of [...watchers]) w()
      })
    })
    const spans = () =>
      requests.flatMap((r) => {
        const parsed = JSON.parse(r.body) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<OtlpSpan> }> }> }
        return (parsed.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []))
      })
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port
      resolve({
        url: `http://127.0.0.1:${port}/v1/traces`,
        requests,
        spans,
        waitFor: (pred, timeoutMs = 10_000) =>
          new Promise((ok, fail) => {
            const check = () => {
              const s = spans()
              if (!pred(s)) return false
              watchers.delete(check)
              clearTimeout(timer)
              ok(s)
              return true
            }
            const timer = setTimeout(() => {
              watchers.delete(check)
              fail(
                new Error(
                  `the collector did not receive the expected spans within ${timeoutMs} ms; got ${JSON.stringify(spans().map((s) => s.name))}`
                )
              )
            }, timeoutMs)
            if (!check()) watchers.add(check)
          }),
        close: () =>
          new Promise((r) => {
            server.closeAllConnections()
            server.close(() => r())
          })
      })
    })
  })

const tracedConfig =
  (collector: Collector, enabled: boolean) =>
  (dir: string): Rec => ({
    security: {
      audit_log: true,
      audit_log_path: path.join(dir, "audit.log"),
      rate_limit: { enabled: false },
      auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }] }
    },
    tracing: { enabled, otlp_endpoint: collector.url, service_name: "dbal-daemon-test" }
  })

/** Creates a User as the service principal and returns the audit record of that request. */
const createAndAudit = async (daemon: InProcessDaemon): Promise<{ requestId: string; traceId: string }> => {
  const client = await connect(daemon.port, serviceAuth)
  try {
    const s = randomBytes(4).toString("hex")
    const a = await client.call("create", ["User", { username: `trace_${s}`, email: `trace_${s}@example.com`, role: "user" }])
    expect(a.error, JSON.stringify(a)).toBeUndefined()
    const file = path.join(daemon.dir, "audit.log")
    const records = fs
      .readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Rec)
    const record = records.find((r) => r.requestId === a.id && r.operation === "create")
    expect(record, JSON.stringify(records)).toBeDefined()
    expect(record!.traceId).toMatch(/^[0-9a-f]{32}$/)
    return { requestId: String(a.id), traceId: String(record!.traceId) }
  } finally {
    await client.close()
  }
}

describe("span export over OTLP/HTTP", () => {
  let collector: Collector | undefined

  beforeAll(async () => {
    collector = await startCollector()
  })

  afterAll(async () => {
    await collector?.close()
  })

  it("sends rpc.create with its auth and acl spans, under the audit record's trace id", async () => {
    const daemon = await startInProcess("tracing-on", tracedConfig(collector!, true))
    try {
      const { traceId } = await createAndAudit(daemon)
      const spans = await collector!.waitFor((s) =>
        ["rpc.create", "auth", "acl"].every((n) => s.some((x) => x.name === n && x.traceId === traceId))
      )
      const inTrace = spans.filter((s) => s.traceId === traceId)
      const root = inTrace.find((s) => s.name === "rpc.create")!
      expect(root.parentSpanId ?? "").toBe("")
      for (const child of ["auth", "acl"]) {
        expect(inTrace.find((s) => s.name === child)!.parentSpanId, `${child} is a child of rpc.create`).toBe(root.spanId)
      }
      expect(collector!.requests.every((r) => r.path === "/v1/traces")).toBe(true)
      // No secret in what leaves the process.
      expect(collector!.requests.map((r) => r.body).join("\n")).not.toContain(SERVICE_TOKEN)
    } finally {
      await daemon.dispose()
    }
  })

  it("joins the caller's trace: traceparent in the frame, else on the upgrade request", async () => {
    const daemon = await startInProcess("tracing-parent", tracedConfig(collector!, true))
    const hex = (n: number) => randomBytes(n).toString("hex")
    const user = () => {
      const s = hex(4)
      return { username: `tp_${s}`, email: `tp_${s}@example.com`, role: "user" }
    }
    try {
      const fromFrame = { traceId: hex(16), spanId: hex(8) }
      const fromHeader = { traceId: hex(16), spanId: hex(8) }
      const socket = await openSocket(daemon.port, { traceparent: `00-${fromHeader.traceId}-${fromHeader.spanId}-01` })
      try {
        socket.send(
          JSON.stringify({
            id: 1,
            method: "create",
            params: ["User", user()],
            auth: serviceAuth,
            traceparent: `00-${fromFrame.traceId}-${fromFrame.spanId}-01`
          })
        )
        expect((await socket.next()).error).toBeUndefined()
        socket.send(JSON.stringify({ id: 2, method: "create", params: ["User", user()], auth: serviceAuth }))
        expect((await socket.next()).error).toBeUndefined()
        // A malformed traceparent in the frame is ignored: the connection's applies.
        socket.send(
          JSON.stringify({ id: 3, method: "create", params: ["User", user()], auth: serviceAuth, traceparent: "00-not-a-trace-01" })
        )
        expect((await socket.next()).error).toBeUndefined()
      } finally {
        await socket.close()
      }
      const spans = await collector!.waitFor(
        (s) =>
          s.filter((x) => x.name === "rpc.create" && x.traceId === fromHeader.traceId).length >= 2 &&
          s.some((x) => x.name === "rpc.create" && x.traceId === fromFrame.traceId)
      )
      const framed = spans.filter((x) => x.name === "rpc.create" && x.traceId === fromFrame.traceId)
      expect(framed).toHaveLength(1)
      expect(framed[0]!.parentSpanId).toBe(fromFrame.spanId)
      const headed = spans.filter((x) => x.name === "rpc.create" && x.traceId === fromHeader.traceId)
      expect(headed).toHaveLength(2)
      for (const h of headed) expect(h.parentSpanId).toBe(fromHeader.spanId)
      // The audit records carry the caller's trace ids.
      const records = fs
        .readFileSync(path.join(daemon.dir, "audit.log"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Rec)
      expect(
        records
          .filter((r) => r.operation === "create")
          .map((r) => r.traceId)
          .sort()
      ).toEqual([fromFrame.traceId, fromHeader.traceId, fromHeader.traceId].sort())
    } finally {
      await daemon.dispose()
    }
  })

  it("sends nothing when tracing is disabled", async () => {
    const quiet = await startCollector()
    try {
      const daemon = await startInProcess("tracing-off", tracedConfig(quiet, false))
      try {
        await createAndAudit(daemon)
      } finally {
        // Disposing flushes an exporter if there were one: after it, nothing may have arrived.
        await daemon.dispose()
      }
      expect(quiet.requests).toEqual([])
    } finally {
      await quiet.close()
    }
  })
})

/** The daemon's JSON log lines, collected instead of printed. */
const captureLogs = () => {
  const lines: Array<string> = []
  const capture = Logger.replace(
    Logger.defaultLogger,
    Logger.map(jsonWithTrace, (line) => {
      lines.push(line)
    })
  )
  return { lines, capture }
}

describe("JSON log lines", () => {
  it("carry the trace id and span id of the current span, and none outside a span", async () => {
    const { lines, capture } = captureLogs()
    const span = await Effect.gen(function* () {
      yield* Effect.logInfo("outside")
      return yield* Effect.gen(function* () {
        yield* Effect.logWarning("inside", { n: 1 })
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("rpc.test"))
    }).pipe(Effect.provide(capture), Effect.runPromise)
    const [outside, inside] = lines.map((l) => JSON.parse(l) as Rec)
    expect(outside).toMatchObject({ message: "outside", logLevel: "INFO" })
    expect(outside).not.toHaveProperty("traceId")
    expect(inside).toMatchObject({ message: ["inside", { n: 1 }], logLevel: "WARN", traceId: span.traceId, spanId: span.spanId })
    expect(Object.keys(inside!)).toEqual(expect.arrayContaining(["timestamp", "annotations", "spans", "fiberId"]))
  })

  it("carry the request's own trace id when spans are not exported, also inside spans the tracer does not make", async () => {
    const { lines, capture } = captureLogs()
    const request = (n: number) =>
      requestTrace((traceId) =>
        Effect.gen(function* () {
          yield* Effect.logInfo("request", n)
          // As @effect/sql opens a span per statement: with the tracer off it is a placeholder.
          const inner = yield* Effect.logInfo("statement", n).pipe(Effect.zipRight(Effect.currentSpan), Effect.withSpan("sql.execute"))
          return { traceId, inner }
        })
      )
    const [a, b] = await Effect.all([request(1), request(2)]).pipe(
      Effect.provide(Layer.merge(capture, Layer.setTracerEnabled(false))),
      Effect.runPromise
    )
    expect(a!.inner.spanId, "no span is made with the tracer off").toBe("noop")
    expect(a!.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(b!.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(a!.traceId).not.toBe(b!.traceId)
    const parsed = lines.map((l) => JSON.parse(l) as Rec)
    expect(parsed.map((l) => [l.message, l.traceId])).toEqual([
      [["request", 1], a!.traceId],
      [["statement", 1], a!.traceId],
      [["request", 2], b!.traceId],
      [["statement", 2], b!.traceId]
    ])
    for (const l of parsed) expect(l.spanId).toMatch(/^[0-9a-f]{16}$/)
  })
})

describe("traceparent (W3C trace context)", () => {
  it("is read as version-traceid-parentid-flags; invalid values are ignored", () => {
    expect(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).toEqual({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      sampled: true
    })
    expect(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled).toBe(false)
    // A later version may add fields.
    expect(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")?.traceId).toBe(
      "4bf92f3577b34da6a3ce929d0e0e4736"
    )
    for (const bad of [
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
      "garbage",
      42
    ]) {
      expect(parseTraceparent(bad), String(bad)).toBeUndefined()
    }
  })
})
