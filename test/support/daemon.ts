/**
 * Starts the real daemon process (bin/dbal-daemon.mjs, as `npm start` does) and talks to it over
 * a real WebSocket. Waits on conditions with bounds, never on sleeps.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import WebSocket from "ws"
import type { Answer } from "./types.js"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export interface Daemon {
  readonly port: number
  readonly process: ChildProcess
  readonly output: () => string
  /**
   * Sends `signal` (default SIGTERM; to the whole process group with `processGroup`) and resolves
   * with the exit code of the spawned process; SIGKILLs after `killAfterMs` (default 15 s).
   */
  readonly stop: (signal?: NodeJS.Signals, killAfterMs?: number) => Promise<number | null>
  /** Whether the process (with `processGroup`: any process of its group) is still running. */
  readonly alive: () => boolean
  /** Waits (bounded) until the output matches `re`. */
  readonly waitForOutput: (re: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>
}

const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Runs `command` (default: node bin/dbal-daemon.mjs args) until it prints its listening line.
 * `processGroup`: the command runs in its own process group and signals go to the whole group,
 * as a terminal's Ctrl-C does — needed for wrappers like `npm start`, which do not pass SIGTERM
 * on to the daemon (npm signals its `sh -c`, which dies and leaves the daemon running).
 */
export const startDaemon = (
  args: ReadonlyArray<string>,
  opts: { env?: Record<string, string>; timeoutMs?: number; command?: ReadonlyArray<string>; processGroup?: boolean } = {}
): Promise<Daemon> =>
  new Promise((resolve, reject) => {
    const [cmd, ...rest] = opts.command ?? [process.execPath, path.join(root, "bin", "dbal-daemon.mjs")]
    const group = opts.processGroup === true
    const child = spawn(cmd!, [...rest, ...args], {
      cwd: root,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: group
    })
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (group && child.pid !== undefined) process.kill(-child.pid, sig)
        else child.kill(sig)
      } catch {
        // already gone
      }
    }
    const childAlive = () => child.exitCode === null && child.signalCode === null
    const alive = () => (group && child.pid !== undefined ? groupAlive(child.pid) : childAlive())
    let out = ""
    const watchers = new Set<() => void>()
    const append = (b: Buffer) => {
      out += b.toString()
      for (const w of [...watchers]) w()
    }
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
    const waitForOutput = (re: RegExp, timeoutMs = 10_000) =>
      new Promise<RegExpExecArray>((ok, fail) => {
        const check = () => {
          const m = re.exec(out)
          if (m === null) return false
          watchers.delete(check)
          clearTimeout(timer)
          ok(m)
          return true
        }
        const timer = setTimeout(() => {
          watchers.delete(check)
          fail(new Error(`no output matching ${re} within ${timeoutMs} ms:\n${out}`))
        }, timeoutMs)
        if (!check()) watchers.add(check)
      })
    const startTimeout = opts.timeoutMs ?? 30000
    const timer = setTimeout(() => {
      signal("SIGKILL")
      reject(new Error(`daemon did not start within ${startTimeout} ms:\n${out}`))
    }, startTimeout)
    child.stdout.on("data", append)
    child.stderr.on("data", append)
    waitForOutput(/listening on wss?:\/\/[^:\s]+:(\d+)/, startTimeout + 1000).then(
      (m) => {
        clearTimeout(timer)
        resolve({
          port: Number(m[1]),
          process: child,
          output: () => out,
          alive,
          waitForOutput,
          stop: async (sig = "SIGTERM", killAfterMs = 15_000) => {
            const deadline = Date.now() + killAfterMs
            if (alive()) signal(sig)
            const killer = setTimeout(() => signal("SIGKILL"), killAfterMs)
            try {
              const code = await exited
              // The rest of the group (the daemon under a wrapper) may still be shutting down.
              while (group && alive() && Date.now() < deadline + 5000) {
                await new Promise((r) => setTimeout(r, 50))
                if (Date.now() >= deadline) signal("SIGKILL")
              }
              return code
            } finally {
              clearTimeout(killer)
            }
          }
        })
      },
      () => undefined
    )
    child.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`daemon exited with ${code} before listening:\n${out}`))
    })
  })

export type { Answer }

export interface Client {
  readonly ws: WebSocket
  /** Sends a request and waits for the answer with the same id. */
  readonly call: (method: string, params?: ReadonlyArray<unknown>, auth?: Record<string, unknown> | null) => Promise<Answer>
  /** Sends a raw frame and waits for the next answer with id null (or any answer if `anyId`). */
  readonly raw: (frame: string | Buffer, opts?: { binary?: boolean }) => Promise<Answer>
  readonly close: () => Promise<void>
}

/**
 * Opens a client. With `opts.tls` it connects over wss:// with those TLS options (ca, cert, key,
 * servername, minVersion/maxVersion, …) instead of ws://.
 */
export const connect = (
  port: number,
  defaultAuth?: Record<string, unknown>,
  opts: { tls?: WebSocket.ClientOptions } = {}
): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws =
      opts.tls === undefined
        ? new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024 })
        : new WebSocket(`wss://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024, ...opts.tls })
    const pending = new Map<unknown, { ok: (a: Answer) => void; fail: (e: Error) => void }>()
    const nullWaiters: Array<{ ok: (a: Answer) => void; fail: (e: Error) => void }> = []
    let closed: Error | undefined
    let next = 0
    ws.on("message", (data) => {
      let a: Answer
      try {
        a = JSON.parse(String(data)) as Answer
      } catch {
        a = { id: null, error: { code: -1, message: `the daemon sent a frame that is not JSON: ${String(data).slice(0, 200)}` } }
      }
      if (a.id === null) nullWaiters.shift()?.ok(a)
      else {
        const r = pending.get(a.id)
        pending.delete(a.id)
        r?.ok(a)
      }
    })
    // A closed connection fails every waiting call instead of leaving it pending forever.
    ws.on("close", (code, reason) => {
      closed = new Error(`connection closed (${code} ${String(reason)}) before the answer came`)
      for (const w of pending.values()) w.fail(closed)
      pending.clear()
      for (const w of nullWaiters.splice(0)) w.fail(closed)
    })
    ws.once("error", reject)
    ws.once("open", () =>
      resolve({
        ws,
        call: (method, params = [], auth = defaultAuth) =>
          new Promise((ok, fail) => {
            if (closed !== undefined) return fail(closed)
            const id = `r${++next}`
            pending.set(id, { ok, fail })
            ws.send(JSON.stringify({ id, method, params, ...(auth === null || auth === undefined ? {} : { auth }) }))
          }),
        raw: (frame, opts = {}) =>
          new Promise((ok, fail) => {
            if (closed !== undefined) return fail(closed)
            nullWaiters.push({ ok, fail })
            ws.send(frame, { binary: opts.binary ?? false })
          }),
        close: () =>
          new Promise((r) => {
            if (ws.readyState === ws.CLOSED) return r()
            ws.once("close", () => r())
            ws.close()
          })
      })
    )
  })

/** A bare socket: every frame the daemon sends is queued; `next` waits (bounded) for one. */
export interface RawSocket {
  readonly ws: WebSocket
  readonly send: (frame: string | Buffer, opts?: { binary?: boolean }) => void
  /** The next frame, parsed; rejects after `timeoutMs` or when the connection closes first. */
  readonly next: (timeoutMs?: number) => Promise<Answer>
  /** Resolves with the close code (bounded by `timeoutMs`). */
  readonly closed: (timeoutMs?: number) => Promise<number>
  readonly close: () => Promise<void>
}

export const openSocket = (port: number, headers?: Record<string, string>): Promise<RawSocket> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024, ...(headers === undefined ? {} : { headers }) })
    const queue: Array<Answer> = []
    const waiters: Array<(a: Answer | Error) => void> = []
    let closeCode: number | undefined
    const closeWaiters: Array<(code: number) => void> = []
    ws.on("message", (data) => {
      let a: Answer
      try {
        a = JSON.parse(String(data)) as Answer
      } catch {
        a = { id: null, error: { code: -1, message: `not JSON: ${String(data).slice(0, 200)}` } }
      }
      const w = waiters.shift()
      if (w !== undefined) w(a)
      else queue.push(a)
    })
    ws.on("close", (code) => {
      closeCode = code
      for (const w of waiters.splice(0)) w(new Error(`connection closed (${code}) while waiting for a frame`))
      for (const w of closeWaiters.splice(0)) w(code)
    })
    ws.once("error", reject)
    ws.once("open", () =>
      resolve({
        ws,
        send: (frame, opts = {}) => ws.send(frame, { binary: opts.binary ?? false }),
        next: (timeoutMs = 10_000) =>
          new Promise((ok, fail) => {
            const queued = queue.shift()
            if (queued !== undefined) return ok(queued)
            if (closeCode !== undefined) return fail(new Error(`connection closed (${closeCode})`))
            const timer = setTimeout(() => {
              const i = waiters.indexOf(settle)
              if (i >= 0) waiters.splice(i, 1)
              fail(new Error(`no frame within ${timeoutMs} ms`))
            }, timeoutMs)
            const settle = (a: Answer | Error) => {
              clearTimeout(timer)
              if (a instanceof Error) fail(a)
              else ok(a)
            }
            waiters.push(settle)
          }),
        closed: (timeoutMs = 10_000) =>
          new Promise((ok, fail) => {
            if (closeCode !== undefined) return ok(closeCode)
            const timer = setTimeout(() => fail(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs)
            closeWaiters.push((code) => {
              clearTimeout(timer)
              ok(code)
            })
          }),
        close: () =>
          new Promise((r) => {
            if (ws.readyState === ws.CLOSED) return r()
            ws.once("close", () => r())
            ws.close()
          })
      })
    )
  })

/** GET /health of a daemon, parsed. */
export const health = async (port: number): Promise<{ status: number; body: Record<string, unknown> }> => {
  const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(10_000) })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}
