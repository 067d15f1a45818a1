/**
 * Production transport: the wire protocol over one WebSocket — the platform's own (browsers,
 * Node >= 22) or, when there is none or `socketOptions` are given (TLS settings only `ws`
 * takes), the `ws` package, loaded on first use.
 *
 * - Each connection authenticates once with the `authenticate` method before any request goes
 *   out on it; requests wait (queued, not sent) until it has. After a reconnect the handshake is
 *   repeated. A refused authentication fails the waiting requests with the daemon's error (401 or
 *   429) and does not reconnect in a loop: the next request tries again.
 * - Requests in flight when the connection drops fail at once with kind ConnectionLost (they may
 *   or may not have run). Requests not yet sent stay queued for the next connection.
 * - Every request has a deadline (`requestTimeoutMs`, or per call): sent and unanswered → kind
 *   Timeout; never sent because no connection came → kind NotConnected.
 * - After a drop: reconnects with exponential backoff (bounded, with jitter) until `close()`
 *   (or `reconnect.maxAttempts`).
 */
import * as Effect from "effect/Effect"
import { DbalError } from "./errors.js"
import type { ReconnectOptions, SocketOptions } from "./options.js"
import {
  type CallOptions,
  type ConnectionState,
  decodeAnswer,
  encodeRequest,
  type PushWatcher,
  StateCell,
  type Transport
} from "./transport.js"

export type { ReconnectOptions, SocketOptions } from "./options.js"

export interface WsTransportOptions {
  readonly endpoint: string
  readonly auth: { readonly token: string; readonly userId?: string }
  readonly requestTimeoutMs: number
  /** Bound on opening the socket and authenticating, milliseconds (default 10 000). */
  readonly connectTimeoutMs?: number
  /** `false`: never reconnect by itself (each request that finds no connection opens one). */
  readonly reconnect?: ReconnectOptions | false
  /** Passed to `new WebSocket` of `ws` (TLS: ca, cert, key, servername, rejectUnauthorized, …). */
  readonly socketOptions?: SocketOptions
}

/** Bounds on pushed frames kept for subscriptions whose `subscribe` answer has not come yet. */
const MAX_UNCLAIMED_SUBSCRIPTIONS = 64
const MAX_UNCLAIMED_FRAMES = 1000

const CONNECTING = 0
const OPEN = 1
const CLOSED = 3

/** What the client uses of a WebSocket: the WHATWG interface, which both the platform's and `ws`'s have. */
interface Socket {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: "open", listener: () => void): void
  addEventListener(type: "message", listener: (e: { readonly data: unknown }) => void): void
  addEventListener(type: "error", listener: (e: { readonly message?: unknown }) => void): void
  addEventListener(type: "close", listener: (e: { readonly code: number; readonly reason: string }) => void): void
}
type SocketConstructor = new (url: string, options?: object) => Socket

/** `ws` has terminate() (drop at once); the platform's WebSocket only closes. */
const terminate = (s: Socket) => {
  const t = (s as { terminate?: () => void }).terminate
  if (typeof t === "function") t.call(s)
  else s.close()
}

type SocketImpl = { readonly make: SocketConstructor; readonly isWs: boolean }

const platformWebSocket = (): SocketConstructor | undefined => (globalThis as { WebSocket?: SocketConstructor }).WebSocket

let wsImpl: SocketImpl | undefined
let wsLoading: Promise<SocketImpl> | undefined
/** `ws`, imported once. A computed specifier: bundlers for the browser leave it (Node only) out. */
const loadWs = (): Promise<SocketImpl> =>
  (wsLoading ??= (async () => {
    const specifier = "ws"
    const mod = (await import(specifier)) as { default?: SocketConstructor; WebSocket?: SocketConstructor }
    const make = mod.WebSocket ?? mod.default
    if (make === undefined) throw new Error("the ws package has no WebSocket export")
    return (wsImpl = { make, isWs: true })
  })())
// Without a platform WebSocket (Node < 22) `ws` is loaded now, as a static import would, so that
// the first connection does not wait for it.
if (platformWebSocket() === undefined) loadWs().catch(() => undefined)

/** The platform's WebSocket, or `ws` when there is none or its options are needed; undefined while `ws` loads. */
const socketImplNow = (needsWs: boolean): SocketImpl | undefined => {
  const platform = platformWebSocket()
  return platform !== undefined && !needsWs ? { make: platform, isWs: false } : wsImpl
}

interface Waiter {
  readonly id: number
  /** Called once the connection is authenticated. */
  readonly ready: () => void
  readonly fail: (e: DbalError) => void
}

interface InFlight {
  readonly method: string
  readonly answer: (outcome: { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: DbalError }) => void
  readonly fail: (e: DbalError) => void
}

/** Equal jitter: a delay in [d/2, d] for d = min(max, initial · factor^attempt). */
export const backoffDelay = (
  attempt: number,
  o: { initialDelayMs: number; maxDelayMs: number; factor: number },
  random = Math.random
): number => {
  const d = Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.factor, Math.min(attempt, 64)))
  return Math.round(d / 2 + (random() * d) / 2)
}

export const makeWsTransport = (options: WsTransportOptions): Transport => {
  const url = new URL(options.endpoint)
  if (url.protocol !== "ws:" && url.protocol !== "wss:")
    throw new TypeError(`endpoint must be a ws:// or wss:// URL, got ${options.endpoint}`)
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000
  const reconnect =
    options.reconnect === false
      ? undefined
      : {
          // Clamped so that a misconfiguration cannot turn into a tight reconnect loop.
          initialDelayMs: Math.max(10, options.reconnect?.initialDelayMs ?? 200),
          maxDelayMs: Math.max(10, options.reconnect?.maxDelayMs ?? 10_000),
          factor: Math.max(1, options.reconnect?.factor ?? 2),
          maxAttempts: options.reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY
        }
  const authParams = { token: options.auth.token, ...(options.auth.userId === undefined ? {} : { user_id: options.auth.userId }) }

  const state = new StateCell("idle")
  let seq = 0
  let socket: Socket | undefined
  let impl: SocketImpl | undefined
  let loading = false
  let closed = false
  let attempt = 0
  let lastProblem = "not connected yet"
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  const waiting = new Map<number, Waiter>()
  const inFlight = new Map<number, InFlight>()
  const watchers = new Map<string, PushWatcher>()
  /** Pushed frames of subscriptions nobody watches yet (their `subscribe` answer is on its way); bounded. */
  const unclaimed = new Map<string, Array<Readonly<Record<string, unknown>>>>()

  const onPushed = (text: string) => {
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      return
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return
    const frame = raw as Readonly<Record<string, unknown>>
    if (typeof frame.subscription !== "string") return
    const w = watchers.get(frame.subscription)
    if (w !== undefined) return w.frame(frame)
    let list = unclaimed.get(frame.subscription)
    if (list === undefined) {
      if (unclaimed.size >= MAX_UNCLAIMED_SUBSCRIPTIONS) unclaimed.delete(unclaimed.keys().next().value!)
      unclaimed.set(frame.subscription, (list = []))
    }
    if (list.length < MAX_UNCLAIMED_FRAMES) list.push(frame)
  }

  const loseWatchers = (reason: string, reconnecting: boolean) => {
    unclaimed.clear()
    for (const [id, w] of [...watchers]) {
      watchers.delete(id)
      w.lost(reason, reconnecting)
    }
  }

  const watch = (id: string, watcher: PushWatcher): (() => void) => {
    const early = unclaimed.get(id) ?? []
    unclaimed.delete(id)
    watchers.set(id, watcher)
    for (const f of early) watcher.frame(f)
    return () => {
      if (watchers.get(id) === watcher) watchers.delete(id)
    }
  }

  const failWaiting = (make: (method: string) => DbalError) => {
    for (const w of [...waiting.values()]) w.fail(make("connect"))
  }

  const failInFlight = (reason: string) => {
    for (const [id, r] of [...inFlight]) {
      inFlight.delete(id)
      r.fail(DbalError.connectionLost(r.method, reason))
    }
  }

  const scheduleReconnect = () => {
    if (closed) return
    if (reconnect === undefined || attempt >= reconnect.maxAttempts) {
      state.set("idle")
      failWaiting((m) => DbalError.notConnected(m, lastProblem))
      return
    }
    state.set("reconnecting")
    const delay = backoffDelay(attempt++, reconnect)
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      open()
    }, delay)
    // Reconnecting alone does not keep the process alive; a waiting request's own timer does.
    ;(retryTimer as { unref?: () => void }).unref?.()
  }

  const open = () => {
    if (closed || socket !== undefined || loading) return
    impl ??= socketImplNow(options.socketOptions !== undefined)
    if (impl === undefined) {
      loading = true
      state.set(state.get() === "reconnecting" ? "reconnecting" : "connecting")
      loadWs().then(
        (i) => {
          impl = i
          loading = false
          open()
        },
        (e: unknown) => {
          loading = false
          lastProblem = `no WebSocket implementation (${e instanceof Error ? e.message : String(e)}): install the ws package`
          state.set("idle")
          failWaiting((m) => DbalError.notConnected(m, lastProblem))
        }
      )
      return
    }
    state.set(state.get() === "reconnecting" ? "reconnecting" : "connecting")
    let ws: Socket
    try {
      ws = impl.isWs
        ? new impl.make(options.endpoint, { handshakeTimeout: connectTimeoutMs, ...options.socketOptions })
        : new impl.make(options.endpoint)
    } catch (e) {
      lastProblem = e instanceof Error ? e.message : String(e)
      scheduleReconnect()
      return
    }
    socket = ws
    const authId = ++seq
    let authenticated = false
    let refused = false
    // Opening and authenticating are bounded together.
    const guard = setTimeout(() => {
      lastProblem = `no authenticated connection within ${connectTimeoutMs} ms`
      terminate(ws)
    }, connectTimeoutMs)

    ws.addEventListener("open", () => {
      ws.send(encodeRequest(authId, "authenticate", [authParams]))
    })
    ws.addEventListener("error", (e) => {
      lastProblem = typeof e.message === "string" && e.message !== "" ? e.message : "WebSocket error"
    })
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") return
      const text = e.data
      if (!authenticated) {
        const a = decodeAnswer("authenticate", text)
        if (a === undefined || a.id !== authId) return
        clearTimeout(guard)
        if (!a.outcome.ok) {
          // The credentials were refused: tell the waiting requests, and do not retry in a loop.
          refused = true
          const err = a.outcome.error
          lastProblem = `authentication refused (${err.code} ${err.message})`
          for (const w of [...waiting.values()]) {
            w.fail(err)
          }
          ws.close(1000, "authentication refused")
          return
        }
        authenticated = true
        attempt = 0
        state.set("ready")
        for (const w of [...waiting.values()]) w.ready()
        return
      }
      const parsed = decodeAnswer("", text)
      if (parsed === undefined) return onPushed(text)
      if (typeof parsed.id !== "number") return
      const r = inFlight.get(parsed.id)
      if (r === undefined) return
      inFlight.delete(parsed.id)
      r.answer(parsed.outcome.ok ? parsed.outcome : { ok: false, error: parsed.outcome.error.withMethod(r.method) })
    })
    ws.addEventListener("close", ({ code, reason }) => {
      clearTimeout(guard)
      if (socket !== ws) return
      socket = undefined
      const why = `connection closed (${code}${reason.length > 0 ? ` ${reason}` : ""})`
      if (authenticated) lastProblem = why
      failInFlight(closed ? "the client was closed" : why)
      if (closed) return loseWatchers("the client was closed", false)
      if (refused) {
        state.set("idle")
        return loseWatchers(why, false)
      }
      scheduleReconnect()
      // After the reconnect is scheduled: a watcher that subscribes again at once waits for it.
      loseWatchers(why, retryTimer !== undefined)
    })
  }

  /** Makes sure a connection is open or on its way (a request arrived). */
  const ensureConnection = () => {
    if (closed || socket !== undefined || retryTimer !== undefined || loading) return
    attempt = 0
    open()
  }

  /** Waits for an authenticated connection, bounded by `timeoutMs`. */
  const whenReady = (method: string, timeoutMs: number, send: () => void, fail: (e: DbalError) => void): (() => void) => {
    const id = ++seq
    const timer = setTimeout(() => {
      waiting.delete(id)
      fail(DbalError.notConnected(method, `no connection within ${timeoutMs} ms (${lastProblem})`))
    }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      waiting.delete(id)
    }
    waiting.set(id, {
      id,
      ready: () => {
        done()
        send()
      },
      fail: (e) => {
        done()
        fail(e.withMethod(method))
      }
    })
    ensureConnection()
    return done
  }

  const request = (method: string, params: ReadonlyArray<unknown>, callOptions?: CallOptions): Effect.Effect<unknown, DbalError> =>
    Effect.async<unknown, DbalError>((resume) => {
      if (closed) return resume(Effect.fail(DbalError.notConnected(method, "the client is closed")))
      const timeoutMs = callOptions?.timeoutMs ?? options.requestTimeoutMs
      const started = Date.now()
      const id = ++seq
      let settled = false
      let timer: ReturnType<typeof setTimeout> | undefined
      let cancelWait: (() => void) | undefined
      const settle = (effect: Effect.Effect<unknown, DbalError>) => {
        if (settled) return
        settled = true
        if (timer !== undefined) clearTimeout(timer)
        inFlight.delete(id)
        resume(effect)
      }
      const send = () => {
        const ws = socket
        if (ws === undefined || ws.readyState !== OPEN) {
          // Dropped between "ready" and now: still unsent, so wait for the next connection.
          cancelWait = whenReady(method, Math.max(1, timeoutMs - (Date.now() - started)), send, (e) => settle(Effect.fail(e)))
          return
        }
        const remaining = Math.max(1, timeoutMs - (Date.now() - started))
        inFlight.set(id, {
          method,
          answer: (o) => settle(o.ok ? Effect.succeed(o.value) : Effect.fail(o.error)),
          fail: (e) => settle(Effect.fail(e))
        })
        timer = setTimeout(() => settle(Effect.fail(DbalError.timeout(method, timeoutMs))), remaining)
        ws.send(encodeRequest(id, method, params))
      }
      if (state.get() === "ready" && socket?.readyState === OPEN) send()
      else cancelWait = whenReady(method, timeoutMs, send, (e) => settle(Effect.fail(e)))
      return Effect.sync(() => {
        settled = true
        if (timer !== undefined) clearTimeout(timer)
        cancelWait?.()
        inFlight.delete(id)
      })
    })

  const connect: Effect.Effect<void, DbalError> = Effect.async<void, DbalError>((resume) => {
    if (closed) return resume(Effect.fail(DbalError.notConnected("connect", "the client is closed")))
    if (state.get() === "ready" && socket?.readyState === OPEN) return resume(Effect.void)
    const cancel = whenReady(
      "connect",
      connectTimeoutMs + 1000,
      () => resume(Effect.void),
      (e) => resume(Effect.fail(e))
    )
    return Effect.sync(cancel)
  })

  const close: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (closed && socket === undefined) return resume(Effect.void)
    closed = true
    state.set("closed")
    if (retryTimer !== undefined) clearTimeout(retryTimer)
    retryTimer = undefined
    failWaiting((m) => DbalError.notConnected(m, "the client was closed"))
    failInFlight("the client was closed")
    const ws = socket
    if (ws === undefined || ws.readyState === CLOSED) return resume(Effect.void)
    let done = false
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(force)
      socket = undefined
      resume(Effect.void)
    }
    // The platform's WebSocket cannot be dropped at once: after 2 s the client stops waiting.
    const force = setTimeout(() => {
      terminate(ws)
      finish()
    }, 2000)
    ws.addEventListener("close", finish)
    if (ws.readyState === CONNECTING) terminate(ws)
    else ws.close(1000, "client closed")
  })

  return {
    request,
    watch,
    connect,
    close,
    state: (): ConnectionState => state.get(),
    onStateChange: (l) => state.subscribe(l)
  }
}
