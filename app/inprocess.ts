/**
 * Development transport: the daemon's own layers in this process. The configuration is built in
 * memory (no file), a service token is generated for this client alone, and every request is a
 * wire frame answered by the same RpcHandler the WebSocket server calls — so answers are
 * byte-for-byte those the daemon would send. Loaded with a dynamic import by the client, so that
 * production users never load the database drivers.
 */
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { Effect, Exit, Fiber, ManagedRuntime, ParseResult, Schema } from "effect"
import * as ConfigLayer from "../layers/Config.js"
import * as Application from "./Application.js"
import { ConfigFile, type DaemonConfig } from "../src/Config.js"
import { type Connection, RpcHandler, type RpcHandlerShape } from "../src/rpc/Handler.js"
import type { ConnectionSettings, InProcessOptions } from "../src/client/core.js"
import { DbalError } from "../src/client/errors.js"
import {
  type CallOptions,
  type ConnectionState,
  decodeAnswer,
  encodeRequest,
  StateCell,
  type Transport,
  withTimeout
} from "../src/client/transport.js"

export type Adapter = InProcessOptions["adapter"]
export type { ConnectionSettings, InProcessOptions }

const SERVICE_NAME = "dbal-client"

const isPlainObject = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

const merge = (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    out[k] = isPlainObject(b) && isPlainObject(v) ? merge(b, v) : v
  }
  return out
}

const connectionSection = (adapter: Adapter, database: string | ConnectionSettings): Record<string, unknown> => {
  const c: ConnectionSettings = typeof database === "string" ? (adapter === "sqlite" ? { filename: database } : { database }) : database
  const filename = c.filename === undefined || c.filename === ":memory:" ? c.filename : path.resolve(c.filename)
  const entries: Array<[string, unknown]> = [
    ["filename", filename],
    ["host", c.host],
    ["port", c.port],
    ["database", c.database],
    ["user", c.user],
    ["password", c.password],
    ["ssl_mode", c.sslMode],
    ["busy_timeout", c.busyTimeout]
  ]
  return Object.fromEntries(entries.filter(([, v]) => v !== undefined))
}

/** The DaemonConfig for these options, with `token` as the client's own service token. */
export const buildConfig = (o: InProcessOptions, token: string): DaemonConfig | string => {
  const user = (o.settings ?? {}) as Record<string, unknown>
  const defaults = { security: { audit_log: false, rate_limit: { enabled: false } } }
  const userTokens = (((user.security as Record<string, unknown> | undefined)?.auth as Record<string, unknown> | undefined)
    ?.service_tokens ?? []) as ReadonlyArray<unknown>
  const doc = merge(merge(defaults, user), {
    database: {
      adapter: o.adapter,
      connection: connectionSection(o.adapter, o.database),
      auto_migrate: o.autoMigrate ?? true,
      ...(o.poolSize === undefined ? {} : { pool_size: o.poolSize })
    },
    security: { auth: { service_tokens: [...userTokens, { name: SERVICE_NAME, token }] } },
    ...(o.entitiesDir === undefined ? {} : { entities: { dir: path.resolve(o.entitiesDir) } })
  })
  const decoded = Schema.decodeUnknownEither(ConfigFile)(doc, { errors: "all", onExcessProperty: "error" })
  if (decoded._tag === "Left") {
    return ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      .map((i) => `${i.path.join(".")}: ${i.message}`)
      .join("; ")
  }
  const cfg = decoded.right
  const dir = cfg.entities.dir === undefined ? ConfigLayer.defaultEntitiesDir : path.resolve(cfg.entities.dir)
  return { ...cfg, sourcePath: path.join(process.cwd(), "<dbal-client>"), entitiesDir: dir }
}

/** The daemon's `core` layers (app/Application.ts) with the configuration given as a value instead of read from a file. */
export const coreLayer = (config: DaemonConfig) => Application.coreWith(ConfigLayer.layerValue(config))

interface Running {
  readonly runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  readonly handler: RpcHandlerShape
  readonly conn: Connection
}

const describe = (e: unknown): string => {
  const m = e instanceof Error ? e.message : String(e)
  return m.split("\n")[0]?.slice(0, 500) ?? "error"
}

export const makeInProcessTransport = (options: InProcessOptions): Transport => {
  const state = new StateCell("idle")
  const token = randomBytes(32).toString("base64url")
  let seq = 0
  let closed = false
  let starting: Promise<Running> | undefined
  const fibers = new Set<Fiber.RuntimeFiber<string, unknown>>()

  const start = async (): Promise<Running> => {
    state.set("connecting")
    const config = buildConfig(options, token)
    if (typeof config === "string") throw new Error(`invalid configuration: ${config}`)
    const runtime = ManagedRuntime.make(coreLayer(config)) as unknown as ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
    try {
      const handler = await runtime.runPromise(RpcHandler)
      const conn: Connection = { remoteAddress: "in-process", auth: undefined }
      // The same handshake as over the wire: the connection authenticates once.
      const answer = decodeAnswer(
        "authenticate",
        await runtime.runPromise(handler.handle(conn, encodeRequest(++seq, "authenticate", [{ token, user_id: SERVICE_NAME }])))
      )
      if (answer === undefined || !answer.outcome.ok) throw new Error(`the in-process daemon refused its service token`)
      if (closed) throw new Error("the client was closed")
      state.set("ready")
      return { runtime, handler, conn }
    } catch (e) {
      await runtime.dispose().catch(() => undefined)
      throw e
    }
  }

  const running = (method: string): Effect.Effect<Running, DbalError> =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(DbalError.notConnected(method, "the client is closed"))
      if (starting === undefined) {
        const p = start()
        starting = p
        // A start that failed is tried again by the next request.
        p.catch(() => {
          if (starting === p) starting = undefined
          if (!closed) state.set("idle")
        })
      }
      const p = starting
      return Effect.tryPromise({
        try: () => p,
        catch: (e) => DbalError.notConnected(method, `the in-process daemon could not start: ${describe(e)}`)
      })
    })

  const request = (method: string, params: ReadonlyArray<unknown>, callOptions?: CallOptions): Effect.Effect<unknown, DbalError> =>
    withTimeout(
      method,
      callOptions?.timeoutMs ?? options.requestTimeoutMs,
      Effect.flatMap(running(method), ({ runtime, handler, conn }) => {
        const id = ++seq
        return Effect.async<string, DbalError>((resume) => {
          const fiber = runtime.runFork(handler.handle(conn, encodeRequest(id, method, params)))
          fibers.add(fiber)
          fiber.addObserver((exit) => {
            fibers.delete(fiber)
            if (Exit.isSuccess(exit)) resume(Effect.succeed(exit.value))
            else resume(Effect.fail(DbalError.connectionLost(method, closed ? "the client was closed" : "the request was interrupted")))
          })
          return Effect.asVoid(Fiber.interrupt(fiber))
        }).pipe(
          Effect.flatMap((text) => {
            const a = decodeAnswer(method, text)
            if (a === undefined || a.id !== id)
              return Effect.fail(DbalError.protocol(method, "the handler's answer does not match the request"))
            return a.outcome.ok ? Effect.succeed(a.outcome.value) : Effect.fail(a.outcome.error)
          })
        )
      })
    )

  const connect = Effect.asVoid(running("connect"))

  const close = Effect.promise(async () => {
    if (closed) return
    closed = true
    state.set("closed")
    const p = starting
    starting = undefined
    if (p === undefined) return
    const r = await p.catch(() => undefined)
    if (r === undefined) return
    await Promise.all([...fibers].map((f) => r.runtime.runPromise(Fiber.interrupt(f))))
    await r.runtime.dispose()
  })

  return {
    request,
    connect,
    close,
    state: (): ConnectionState => state.get(),
    onStateChange: (l) => state.subscribe(l)
  }
}
