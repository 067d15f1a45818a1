/**
 * WebSocket server layer: a Node HTTP(S) server with our own `ws` server on its upgrade event (so
 * that frame limits and close codes are ours), and on the same port `GET /health`, `/livez`,
 * `/readyz` and `/metrics`.
 *
 * - TLS (`server.tls`): TLS 1.2 minimum; `ca_file` turns on client-certificate verification
 *   (mTLS). SIGHUP re-reads the certificate files without dropping open connections; a bad file
 *   keeps the current certificate and is logged.
 * - Limits: connections in total and per remote address, frame size, requests in flight per
 *   connection (further frames wait with the socket paused), idle timeout, ping/pong heartbeat
 *   that drops dead peers, and a bound on a slow reader's unsent bytes (the connection is dropped
 *   rather than buffered without limit).
 * - Client address: the peer's, or, when the peer is in `server.trusted_proxies`, the one its
 *   PROXY header (`server.proxy_protocol`) or X-Forwarded-For names (src/net/ClientAddress.ts).
 *   Connection limits, failed-auth throttling and audit records use it.
 * - Credentials at the handshake (src/net/HandshakeCredentials.ts): checked before the upgrade
 *   (refused with HTTP 401/429/503), then bound to the connection like `authenticate`.
 * - Each frame runs in its own fiber; a failing request never closes the connection.
 * - Shutdown (scope close, on SIGTERM/SIGINT): stop accepting, /readyz 503, let in-flight
 *   requests finish within `shutdown_grace`, then close sockets with 1001.
 */
import { Effect, Fiber, Layer, Metric, Runtime, Schema } from "effect"
import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type * as net from "node:net"
import type { AddressInfo } from "node:net"
import type * as tls from "node:tls"
import { WebSocketServer as WsServer, type WebSocket } from "ws"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { BadRequest, toWireError } from "../src/Errors.js"
import { activeConnections, connectionsRefused, connectionsTotal, ready, tlsCertificateExpiry } from "../src/Metrics.js"
import { makePushSocket } from "../src/realtime/PushSocket.js"
import { type Connection, RpcHandler } from "../src/rpc/Handler.js"
import { encodeError } from "../src/rpc/Protocol.js"
import { clientFromForwardedFor, makeTrustedProxies, normalizeAddress } from "../src/net/ClientAddress.js"
import { handshakeCredential, SUBPROTOCOL } from "../src/net/HandshakeCredentials.js"
import { parseProxyHeader } from "../src/net/ProxyProtocol.js"
import { requestRuntime } from "../src/query/Timeout.js"
import { parseTraceparent } from "../src/Spans.js"
import { Database } from "../src/services/Database.js"
import { ServerInfo } from "../src/services/ServerInfo.js"
import { version } from "../src/version.js"
import { renderPrometheus } from "../src/PrometheusText.js"

export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot listen on ${this.address}: ${this.reason}`
  }
}

/** Frames up to this multiple of `max_payload` are read and refused with 400; larger ones close the connection (1009). */
export const HARD_LIMIT_FACTOR = 4

/** The close code of a subscriber dropped for leaving more than `realtime.max_buffered_bytes` of events unread. */
export const SLOW_SUBSCRIBER_CLOSE = 4008
/** How long a dropped slow subscriber gets to read what was queued before its close frame. */
const SLOW_SUBSCRIBER_GRACE_MS = 10_000

type State = "starting" | "ready" | "draining"

const tlsOptions = (cfg: DaemonConfig["server"]["tls"]): tls.SecureContextOptions & tls.TlsOptions => ({
  cert: fs.readFileSync(cfg.cert_file!),
  key: fs.readFileSync(cfg.key_file!),
  ...(cfg.ca_file === undefined ? {} : { ca: fs.readFileSync(cfg.ca_file), requestCert: true, rejectUnauthorized: true }),
  minVersion: cfg.min_version
})

/** notAfter of the first certificate of a PEM chain, in seconds since the Unix epoch. */
const expirySeconds = (cert: string | Buffer | Array<string | Buffer> | undefined): number | undefined => {
  const first = Array.isArray(cert) ? cert[0] : cert
  if (first === undefined) return undefined
  try {
    return Math.floor(Date.parse(new X509Certificate(first).validTo) / 1000)
  } catch {
    return undefined
  }
}

interface Client {
  readonly ws: WebSocket
  readonly address: string
  alive: boolean
  lastFrameAt: number
}

export const layer = Layer.scoped(
  ServerInfo,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    const handler = yield* RpcHandler
    const db = yield* Database
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const runRequest = Runtime.runFork(requestRuntime(runtime))
    const runSync = Runtime.runSync(runtime)
    const s = cfg.server
    const startedAt = Date.now()
    const maxPayload = s.max_payload
    let state: State = "starting"
    let total = 0
    const clients = new Set<Client>()
    const perAddress = new Map<string, number>()
    const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
    /** Called when the last client has gone (shutdown waits on it). */
    let onEmpty: (() => void) | undefined

    const probe = () =>
      Runtime.runPromise(runtime)(
        db.ping.pipe(
          Effect.timeout("2 seconds"),
          Effect.map((latency) => ({ connected: true, latency_ms: latency })),
          Effect.orElseSucceed(() => ({ connected: false, latency_ms: null as number | null }))
        )
      )

    const json = (res: http.ServerResponse, status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
      res.end(JSON.stringify(body))
    }

    const route = async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = (req.url ?? "/").split("?")[0]
      if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "method not allowed" })
      switch (url) {
        case "/health": {
          const database = await probe()
          return json(res, database.connected ? 200 : 503, {
            status: database.connected ? "healthy" : "unhealthy",
            version,
            uptime: Math.floor((Date.now() - startedAt) / 1000),
            connections: { active: clients.size, total },
            database
          })
        }
        case "/livez":
          return json(res, 200, { status: "alive" })
        case "/readyz": {
          if (state !== "ready") return json(res, 503, { status: state })
          const database = await probe()
          return json(res, database.connected ? 200 : 503, { status: database.connected ? "ready" : "no database" })
        }
        case "/metrics": {
          const text = await Runtime.runPromise(runtime)(renderPrometheus)
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" })
          return res.end(text)
        }
        default:
          return json(res, 404, { error: "not found" })
      }
    }

    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      route(req, res).catch(() => {
        if (!res.headersSent) json(res, 500, { error: "internal error" })
        else res.destroy()
      })
    }

    /** The certificate now in use: its expiry goes to the metrics. */
    const inUse = <A>(options: tls.SecureContextOptions, value: A): A => {
      const expiry = expirySeconds(options.cert)
      if (expiry !== undefined) runSync(Metric.set(tlsCertificateExpiry, expiry))
      return value
    }
    const server: http.Server | https.Server = yield* Effect.try({
      try: () => {
        if (!s.tls.enabled) return http.createServer(onRequest)
        const options = tlsOptions(s.tls)
        return inUse(options, https.createServer(options, onRequest))
      },
      catch: (e) => new ListenError({ address: `${s.host}:${s.port}`, reason: `server.tls: ${e instanceof Error ? e.message : String(e)}` })
    })
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000

    const reloadTls = Effect.try({
      try: () => {
        if (!(server instanceof https.Server)) return
        const options = tlsOptions(s.tls)
        server.setSecureContext(options)
        inUse(options, undefined)
      },
      catch: (e) => (e instanceof Error ? e : new Error(String(e)))
    })
    const onHup = () =>
      runFork(
        reloadTls.pipe(
          Effect.tap(() => Effect.logInfo("TLS certificates reloaded")),
          Effect.catchAll((e) => Effect.logError(`TLS certificates not reloaded, keeping the current ones: ${e.message}`))
        )
      )
    if (s.tls.enabled) process.on("SIGHUP", onHup)

    const wss = new WsServer({
      noServer: true,
      maxPayload: maxPayload * HARD_LIMIT_FACTOR,
      perMessageDeflate: false,
      // A browser sends its credential as the subprotocol dbal.bearer.<token> and offers `dbal`
      // beside it; the answer names `dbal`, never the credential (answers get logged too).
      handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false)
    })

    const refuse = (socket: import("node:stream").Duplex, status: number, reason: string, headers: Record<string, string> = {}) => {
      runSync(Metric.increment(Metric.tagged(connectionsRefused, "reason", reason)))
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("")
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n${extra}Content-Length: 0\r\n\r\n`)
      socket.destroy()
    }

    const trusted = makeTrustedProxies(s.trusted_proxies)
    /** Client addresses read from PROXY headers, by the socket that carried them. */
    const proxiedFrom = new WeakMap<object, string>()
    const peerOf = (socket: net.Socket): string => {
      // Under TLS the request's socket wraps the one the PROXY header came on.
      const raw = (socket as net.Socket & { readonly _parent?: object })._parent
      return (
        proxiedFrom.get(socket) ??
        (raw === undefined ? undefined : proxiedFrom.get(raw)) ??
        normalizeAddress(socket.remoteAddress ?? "unknown")
      )
    }
    const clientAddress = (req: http.IncomingMessage): string => {
      const peer = peerOf(req.socket)
      const forwarded = req.headersDistinct["x-forwarded-for"]
      return forwarded === undefined || !trusted.trusts(peer) ? peer : clientFromForwardedFor(peer, forwarded, trusted)
    }

    /**
     * PROXY protocol (`server.proxy_protocol`): before the HTTP (or TLS) server sees a socket, its
     * first bytes are read. A trusted proxy must start with a PROXY header, whose client address
     * then stands for the peer's; any other peer that starts with one is refused (it could name
     * any address), and its other bytes go through untouched.
     */
    if (s.proxy_protocol) {
      const serve = server.listeners("connection") as Array<(socket: net.Socket) => void>
      server.removeAllListeners("connection")
      server.on("connection", (socket: net.Socket) => {
        const peer = normalizeAddress(socket.remoteAddress ?? "unknown")
        const mustSend = trusted.trusts(peer)
        let received: Buffer = Buffer.alloc(0)
        const stop = () => {
          clearTimeout(timer)
          socket.off("data", onData)
        }
        const drop = (reason: string) => {
          stop()
          runSync(Metric.increment(Metric.tagged(connectionsRefused, "reason", reason)))
          if (s.tls.enabled) return socket.destroy()
          socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
          setTimeout(() => socket.destroy(), 2000).unref()
        }
        const handOver = (rest: Buffer, client: string | undefined) => {
          stop()
          socket.pause()
          if (client !== undefined) proxiedFrom.set(socket, normalizeAddress(client))
          if (rest.length > 0) socket.unshift(rest)
          for (const listener of serve) listener.call(server, socket)
          socket.resume()
        }
        const onData = (chunk: Buffer) => {
          received = received.length === 0 ? chunk : Buffer.concat([received, chunk])
          const header = parseProxyHeader(received)
          switch (header.kind) {
            case "incomplete":
              return
            case "invalid":
              return drop("proxy_header_invalid")
            case "absent":
              return mustSend ? drop("proxy_header_missing") : handOver(received, undefined)
            case "local":
            case "proxied":
              if (!mustSend) return drop("proxy_header_untrusted")
              return handOver(received.subarray(header.length), header.kind === "proxied" ? header.source : undefined)
          }
        }
        const timer = setTimeout(() => drop("proxy_header_timeout"), 10_000)
        timer.unref()
        socket.on("error", () => socket.destroy())
        socket.once("close", () => clearTimeout(timer))
        socket.on("data", onData)
      })
    }

    const release = (address: string) => {
      const n = (perAddress.get(address) ?? 1) - 1
      if (n <= 0) perAddress.delete(address)
      else perAddress.set(address, n)
    }

    server.on("upgrade", (req, socket, head) => {
      socket.on("error", () => socket.destroy())
      const address = clientAddress(req)
      if (state !== "ready") return refuse(socket, 503, "draining")
      if (clients.size >= s.max_connections) return refuse(socket, 503, "max_connections")
      if ((perAddress.get(address) ?? 0) >= s.max_connections_per_address) return refuse(socket, 429, "max_connections_per_address")
      if (socket.destroyed) return
      // Counted from here to the socket's end, so that handshakes waiting on their credential
      // check count too, and a handshake `ws` refuses gives its place back.
      perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
      socket.once("close", () => release(address))
      const traceparent = parseTraceparent(req.headers.traceparent)
      const pushed = makeChannel()
      const conn: Connection = {
        remoteAddress: address,
        auth: undefined,
        channel: pushed.channel,
        ...(traceparent === undefined ? {} : { traceparent })
      }
      const upgrade = () => {
        if (socket.destroyed) return pushed.ended()
        wss.handleUpgrade(req, socket, head, (ws) => {
          pushed.attach(ws)
          onConnection(ws, conn)
        })
      }
      socket.once("close", () => pushed.ended())
      // The request's URL may carry a token: it is read here and nowhere logged.
      const credential = handshakeCredential(req.headers, req.url, cfg.security.auth.query_token)
      if (credential.kind === "none") return upgrade()
      if (credential.kind === "unusable") return refuse(socket, 401, "unauthorized", { "WWW-Authenticate": 'Bearer realm="dbal"' })
      runFork(
        handler.authenticateConnection(conn, { token: credential.token }).pipe(
          Effect.matchEffect({
            onSuccess: () => Effect.sync(upgrade),
            onFailure: (e) =>
              Effect.sync(() => {
                if (e._tag === "RateLimited") return refuse(socket, 429, "failed_auth", { "Retry-After": String(e.retryAfter) })
                if (e._tag === "Unauthorized") return refuse(socket, 401, "unauthorized", { "WWW-Authenticate": 'Bearer realm="dbal"' })
                return refuse(socket, 503, "unavailable")
              })
          })
        )
      )
    })

    /**
     * The connection's push side (subscriptions' events). Events are held to
     * `realtime.max_buffered_bytes` unread: past it the connection is closed with 4008 (what was
     * queued before the close frame still goes out) and cut after a grace; nothing waits on a slow
     * reader, so the others are not slowed down. The frames of one fan-out leave in one write
     * (src/realtime/PushSocket.ts).
     */
    const makeChannel = () =>
      makePushSocket({
        maxBufferedBytes: cfg.realtime.max_buffered_bytes,
        slowCloseCode: SLOW_SUBSCRIBER_CLOSE,
        slowGraceMs: SLOW_SUBSCRIBER_GRACE_MS
      })

    const onConnection = (ws: WebSocket, conn: Connection) => {
      const address = conn.remoteAddress
      total++
      const client: Client = { ws, address, alive: true, lastFrameAt: Date.now() }
      clients.add(client)
      runSync(Metric.increment(connectionsTotal))
      runSync(Metric.set(activeConnections, clients.size))
      let inFlight = 0
      const waiting: Array<string> = []
      // Writing to a closed socket can wait forever: only write while open. A reader that lets
      // answers pile up past the bound is dropped.
      const send = (text: string) => {
        if (ws.readyState !== ws.OPEN) return
        ws.send(text)
        if (ws.bufferedAmount > s.max_buffered_bytes) ws.terminate()
      }
      const run = (frame: string) => {
        inFlight++
        const fiber = runRequest(handler.serve(conn, frame, send))
        fibers.add(fiber)
        fiber.addObserver(() => {
          fibers.delete(fiber)
          inFlight--
          const next = waiting.shift()
          if (next !== undefined) run(next)
          else if (ws.isPaused) ws.resume()
        })
      }
      ws.on("message", (data, isBinary) => {
        client.lastFrameAt = Date.now()
        const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength
        if (bytes > maxPayload) {
          send(encodeError(null, toWireError(new BadRequest({ reason: `the frame is larger than ${maxPayload} bytes` }))))
          return
        }
        if (isBinary) {
          send(encodeError(null, toWireError(new BadRequest({ reason: "frames must be text (UTF-8 JSON)" }))))
          return
        }
        // Decoded straight from the received buffer (no intermediate copy); an ArrayBuffer is wrapped, not copied.
        const text = Array.isArray(data)
          ? Buffer.concat(data).toString("utf8")
          : Buffer.isBuffer(data)
            ? data.toString("utf8")
            : Buffer.from(data).toString("utf8")
        if (inFlight >= s.max_in_flight) {
          waiting.push(text)
          ws.pause()
          return
        }
        run(text)
      })
      ws.on("pong", () => {
        client.alive = true
      })
      // A frame error (too large, invalid UTF-8, protocol) makes `ws` send its close frame and
      // then emit "error": cutting the socket at once would reset a peer that is still sending,
      // and its close code would be lost. The peer gets 2 s to finish the close handshake.
      ws.on("error", () => {
        setTimeout(() => ws.terminate(), 2000).unref()
      })
      ws.on("close", () => {
        clients.delete(client)
        runSync(Metric.set(activeConnections, clients.size))
        waiting.length = 0
        if (clients.size === 0) onEmpty?.()
      })
    }

    // Heartbeat: a peer that did not answer the previous ping is dropped. Idle clients are closed.
    const tickMs = s.heartbeat_interval > 0 ? s.heartbeat_interval * 1000 : s.idle_timeout > 0 ? Math.min(30_000, s.idle_timeout * 1000) : 0
    const timer =
      tickMs > 0
        ? setInterval(() => {
            const now = Date.now()
            for (const c of clients) {
              if (s.idle_timeout > 0 && now - c.lastFrameAt >= s.idle_timeout * 1000) {
                c.ws.close(1000, "idle timeout")
                continue
              }
              if (s.heartbeat_interval === 0) continue
              if (!c.alive) {
                c.ws.terminate()
                continue
              }
              c.alive = false
              c.ws.ping()
            }
          }, tickMs)
        : undefined
    timer?.unref()

    yield* Effect.async<void, ListenError>((resume) => {
      const onError = (e: NodeJS.ErrnoException) =>
        resume(Effect.fail(new ListenError({ address: `${s.host}:${s.port}`, reason: e.code ?? e.message })))
      server.once("error", onError)
      server.listen(s.port, s.host, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // Still listening while draining, so that /readyz answers 503 and new WebSocket
        // connections are refused with 503 rather than with a reset.
        state = "draining"
        runSync(Metric.set(ready, 0))
        if (timer !== undefined) clearInterval(timer)
        process.off("SIGHUP", onHup)
        yield* Effect.logInfo(`draining: ${fibers.size} requests in flight, ${clients.size} connections`)
        yield* Fiber.awaitAll([...fibers]).pipe(Effect.timeout(s.shutdown_grace * 1000), Effect.ignore)
        server.close()
        for (const c of clients) c.ws.close(1001, "server shutting down")
        // Peers get 2 s to answer the close handshake; the rest are cut.
        yield* Effect.async<void>((resume) => {
          if (clients.size === 0) return resume(Effect.void)
          const t = setTimeout(() => {
            for (const c of clients) c.ws.terminate()
            resume(Effect.void)
          }, 2000)
          onEmpty = () => {
            clearTimeout(t)
            resume(Effect.void)
          }
        })
        wss.close()
        server.closeAllConnections()
      })
    )

    state = "ready"
    runSync(Metric.set(ready, 1))
    const address = server.address() as AddressInfo
    yield* Effect.logInfo(
      `dbal-daemon listening on ${s.tls.enabled ? "wss" : "ws"}://${s.host}:${address.port} (adapter ${cfg.database.adapter})`
    )
    return {
      port: address.port,
      host: s.host,
      tls: s.tls.enabled,
      connections: () => ({ active: clients.size, total }),
      reloadTls
    }
  })
)
