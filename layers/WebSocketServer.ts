/**
 * WebSocket server layer: a Node HTTP server with our own `ws` server on its upgrade event (so
 * that frame limits and close codes are ours), `GET /health` on the same port. Each frame runs
 * in its own fiber; at most `server.max_in_flight` per connection run at once, further frames
 * wait with the socket paused. A failing request never closes the connection.
 */
import { Context, Effect, Fiber, Layer, Runtime, Schema } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { WebSocketServer as WsServer, type WebSocket } from "ws"
import { AppConfig } from "../src/Config.js"
import { BadRequest, toWireError } from "../src/Errors.js"
import { type Connection, RpcHandler } from "../src/rpc/Handler.js"
import { encodeError } from "../src/rpc/Protocol.js"
import { Database } from "../src/services/Database.js"
import { version } from "../src/version.js"

export interface ServerInfoShape {
  readonly port: number
  readonly host: string
  readonly connections: () => { readonly active: number; readonly total: number }
}

export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot listen on ${this.address}: ${this.reason}`
  }
}

export class ServerInfo extends Context.Tag("dbal/ServerInfo")<ServerInfo, ServerInfoShape>() {}

/** Frames up to this multiple of `max_payload` are read and refused with 400; larger ones close the connection (1009). */
export const HARD_LIMIT_FACTOR = 4

export const layer = Layer.scoped(
  ServerInfo,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    const handler = yield* RpcHandler
    const db = yield* Database
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const startedAt = Date.now()
    const maxPayload = cfg.server.max_payload
    const maxInFlight = cfg.server.max_in_flight
    let active = 0
    let total = 0
    const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()

    const health = async (res: http.ServerResponse) => {
      const probe = await Runtime.runPromise(runtime)(
        db.ping.pipe(
          Effect.timeout("2 seconds"),
          Effect.map((latency) => ({ connected: true, latency_ms: latency })),
          Effect.orElseSucceed(() => ({ connected: false, latency_ms: null as number | null }))
        )
      )
      const body = {
        status: probe.connected ? "healthy" : "unhealthy",
        version,
        uptime: Math.floor((Date.now() - startedAt) / 1000),
        connections: { active, total },
        database: probe
      }
      res.writeHead(probe.connected ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" })
      res.end(JSON.stringify(body))
    }

    const server = http.createServer((req, res) => {
      const url = (req.url ?? "/").split("?")[0]
      if (req.method === "GET" && url === "/health") {
        health(res).catch(() => {
          res.writeHead(500)
          res.end()
        })
        return
      }
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: "not found" }))
    })
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000

    const wss = new WsServer({ noServer: true, maxPayload: maxPayload * HARD_LIMIT_FACTOR, perMessageDeflate: false })

    server.on("upgrade", (req, socket, head) => {
      socket.on("error", () => socket.destroy())
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req))
    })

    const onConnection = (ws: WebSocket, req: http.IncomingMessage) => {
      active++
      total++
      const conn: Connection = { remoteAddress: req.socket.remoteAddress ?? "unknown", auth: undefined }
      let inFlight = 0
      const waiting: Array<string> = []
      // Writing to a closed socket can wait forever: only write while open.
      const send = (text: string) => {
        if (ws.readyState === ws.OPEN) ws.send(text)
      }
      const run = (frame: string) => {
        inFlight++
        const fiber = runFork(handler.handle(conn, frame))
        fibers.add(fiber)
        fiber.addObserver((exit) => {
          fibers.delete(fiber)
          inFlight--
          if (exit._tag === "Success") send(exit.value)
          const next = waiting.shift()
          if (next !== undefined) run(next)
          else if (ws.isPaused) ws.resume()
        })
      }
      ws.on("message", (data, isBinary) => {
        const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength
        if (bytes > maxPayload) {
          send(encodeError(null, toWireError(new BadRequest({ reason: `the frame is larger than ${maxPayload} bytes` }))))
          return
        }
        if (isBinary) {
          send(encodeError(null, toWireError(new BadRequest({ reason: "frames must be text (UTF-8 JSON)" }))))
          return
        }
        const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as Buffer).toString("utf8")
        if (inFlight >= maxInFlight) {
          waiting.push(text)
          ws.pause()
          return
        }
        run(text)
      })
      ws.on("error", () => ws.terminate())
      ws.on("close", () => {
        active--
        waiting.length = 0
      })
    }

    yield* Effect.async<void, ListenError>((resume) => {
      const onError = (e: NodeJS.ErrnoException) =>
        resume(Effect.fail(new ListenError({ address: `${cfg.server.host}:${cfg.server.port}`, reason: e.code ?? e.message })))
      server.once("error", onError)
      server.listen(cfg.server.port, cfg.server.host, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        server.close()
        yield* Fiber.awaitAll([...fibers]).pipe(Effect.timeout("10 seconds"), Effect.ignore)
        for (const ws of wss.clients) ws.close(1001, "server shutting down")
        wss.close()
        server.closeAllConnections()
      })
    )

    const address = server.address() as AddressInfo
    yield* Effect.logInfo(`dbal-daemon listening on ws://${cfg.server.host}:${address.port} (adapter ${cfg.database.adapter})`)
    return {
      port: address.port,
      host: cfg.server.host,
      connections: () => ({ active, total })
    }
  })
)
