/**
 * Starts the real daemon process (bin/dbal-daemon.mjs, as `npm start` does) and talks to it over
 * a real WebSocket. Waits on conditions with bounds, never on sleeps.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import WebSocket from "ws"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export interface Daemon {
  readonly port: number
  readonly process: ChildProcess
  readonly output: () => string
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** Runs `command` (default: node bin/dbal-daemon.mjs args) until it prints its listening line. */
export const startDaemon = (
  args: ReadonlyArray<string>,
  opts: { env?: Record<string, string>; timeoutMs?: number; command?: ReadonlyArray<string> } = {}
): Promise<Daemon> =>
  new Promise((resolve, reject) => {
    const [cmd, ...rest] = opts.command ?? [process.execPath, path.join(root, "bin", "dbal-daemon.mjs")]
    const child = spawn(cmd!, [...rest, ...args], { cwd: root, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`daemon did not start within ${opts.timeoutMs ?? 30000} ms:\n${out}`))
    }, opts.timeoutMs ?? 30000)
    const onData = (b: Buffer) => {
      out += b.toString()
      const m = /listening on ws:\/\/[^:]+:(\d+)/.exec(out)
      if (m !== null) {
        clearTimeout(timer)
        child.stdout.off("data", onData)
        child.stdout.on("data", (b2: Buffer) => (out += b2.toString()))
        resolve({
          port: Number(m[1]),
          process: child,
          output: () => out,
          stop: async (signal = "SIGTERM") => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal)
            return exited
          }
        })
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", (b: Buffer) => (out += b.toString()))
    child.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`daemon exited with ${code} before listening:\n${out}`))
    })
  })

export interface Answer {
  readonly id: unknown
  readonly result?: unknown
  readonly error?: { code: number; message: string; details?: Record<string, unknown> }
}

export interface Client {
  readonly ws: WebSocket
  /** Sends a request and waits for the answer with the same id. */
  readonly call: (method: string, params?: ReadonlyArray<unknown>, auth?: Record<string, unknown> | null) => Promise<Answer>
  /** Sends a raw frame and waits for the next answer with id null (or any answer if `anyId`). */
  readonly raw: (frame: string | Buffer, opts?: { binary?: boolean }) => Promise<Answer>
  readonly close: () => Promise<void>
}

export const connect = (port: number, defaultAuth?: Record<string, unknown>): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024 })
    const pending = new Map<unknown, (a: Answer) => void>()
    const nullWaiters: Array<(a: Answer) => void> = []
    let next = 0
    ws.on("message", (data) => {
      const a = JSON.parse(String(data)) as Answer
      if (a.id === null) nullWaiters.shift()?.(a)
      else {
        const r = pending.get(a.id)
        pending.delete(a.id)
        r?.(a)
      }
    })
    ws.once("error", reject)
    ws.once("open", () =>
      resolve({
        ws,
        call: (method, params = [], auth = defaultAuth) =>
          new Promise((r) => {
            const id = `r${++next}`
            pending.set(id, r)
            ws.send(JSON.stringify({ id, method, params, ...(auth === null || auth === undefined ? {} : { auth }) }))
          }),
        raw: (frame, opts = {}) =>
          new Promise((r) => {
            nullWaiters.push(r)
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
