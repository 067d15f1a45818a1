/**
 * Shared setup of the security suites: an in-process daemon (the live layers, a real WebSocket
 * server on a free port), a small WebSocket client that can bind a chosen local address (to act
 * as a second remote address), helpers to create users and sessions through the daemon as the
 * service principal, JWT signing, the standard error shape, and bounded waits on conditions.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as jose from "jose"
import { expect } from "vitest"
import WebSocket from "ws"
import { startServing } from "../support/inprocess.js"
import type { Answer, Client } from "../support/daemon.js"
import { uid } from "../support/ids.js"
import type { Rec } from "../support/types.js"
import { type TestDatabase, daemonConfig, serviceAuth, tempDir } from "../support/services.js"

export type { Rec }
export { uid }
export type Auth = Record<string, unknown>

export const DIALECTS = ["sqlite", "postgresql", "mysql"] as const

/** Writes `config` (JSON is YAML) into `dir` as config.yaml and returns the file. */
export const writeConfigIn = (dir: string, config: Rec): string => {
  const file = path.join(dir, "config.yaml")
  fs.writeFileSync(file, JSON.stringify(config, null, 2))
  return file
}

/** The tests' daemon configuration with `security` entries merged over the default ones. */
export const securityConfig = (db: TestDatabase, security: Rec): Rec => {
  const base = daemonConfig(db)
  const baseSecurity = base.security as Rec
  return { ...base, security: { ...baseSecurity, ...security } }
}

export interface InProcessDaemon {
  readonly port: number
  readonly dir: string
  readonly dispose: () => Promise<void>
}

/** The live application (app/Application.ts `live`) in this process, listening on a free port. */
export const startInProcess = async (config: Rec, dir: string = tempDir("security")): Promise<InProcessDaemon> => {
  const s = await startServing(writeConfigIn(dir, config))
  return { port: s.port, dir, dispose: s.dispose }
}

/**
 * A client like test/support/daemon.ts `connect`, optionally bound to a local address (any of
 * 127.0.0.0/8 reaches a server on 127.0.0.1 on Linux, and the daemon sees it as the remote address).
 */
export const connectFrom = (port: number, opts: { localAddress?: string; auth?: Auth } = {}): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, opts.localAddress === undefined ? {} : { localAddress: opts.localAddress })
    const pending = new Map<string, { ok: (a: Answer) => void; fail: (e: Error) => void }>()
    let closed: Error | undefined
    let next = 0
    ws.on("message", (data) => {
      const a = JSON.parse(String(data)) as Answer
      const r = pending.get(String(a.id))
      pending.delete(String(a.id))
      r?.ok(a)
    })
    ws.on("close", (code) => {
      closed = new Error(`connection closed (${code}) before the answer came`)
      for (const w of pending.values()) w.fail(closed)
      pending.clear()
    })
    ws.once("error", reject)
    ws.once("open", () =>
      resolve({
        ws,
        call: (method, params = [], auth = opts.auth) =>
          new Promise((ok, fail) => {
            if (closed !== undefined) return fail(closed)
            const id = `c${++next}`
            pending.set(id, { ok, fail })
            ws.send(JSON.stringify({ id, method, params, ...(auth === null || auth === undefined ? {} : { auth }) }))
          }),
        raw: () => Promise.reject(new Error("not supported by this client")),
        close: () =>
          new Promise((r) => {
            if (ws.readyState === ws.CLOSED) return r()
            ws.once("close", () => r())
            ws.close()
          })
      })
    )
  })

/** Expects a successful answer and returns its result. */
export const expectOk = <T = unknown>(a: Answer, what = ""): T => {
  expect(a.error, `${what} failed: ${JSON.stringify(a)}`).toBeUndefined()
  expect(Object.keys(a).sort()).toEqual(["id", "result"])
  return a.result as T
}

const MESSAGES: Record<number, string> = {
  401: "Authentication required",
  429: "Rate limit exceeded",
  503: "Database unavailable"
}

/** Expects the standard error shape `{id, error: {code, message, details?}}` with this code. */
export const expectError = (a: Answer, code: number, what = ""): NonNullable<Answer["error"]> => {
  expect(a.result, `${what}: expected ${code}, got ${JSON.stringify(a)}`).toBeUndefined()
  expect(a.error?.code, `${what}: expected ${code}, got ${JSON.stringify(a)}`).toBe(code)
  expect(Object.keys(a).sort()).toEqual(["error", "id"])
  const e = a.error!
  for (const k of Object.keys(e)) expect(["code", "message", "details"]).toContain(k)
  expect(typeof e.message).toBe("string")
  const message = MESSAGES[code]
  if (message !== undefined) expect(e.message).toBe(message)
  if (e.details !== undefined) expect(typeof e.details).toBe("object")
  return e
}

/** A 429 with `details.retryAfter`: an integer number of seconds, at least 1. */
export const expectRateLimited = (a: Answer, what = ""): number => {
  const e = expectError(a, 429, what)
  const retryAfter = e.details?.retryAfter
  expect(Number.isInteger(retryAfter), `retryAfter ${JSON.stringify(retryAfter)} is an integer`).toBe(true)
  expect(retryAfter as number).toBeGreaterThanOrEqual(1)
  return retryAfter as number
}

/** Measures an async call. */
export const timed = async <T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> => {
  const started = performance.now()
  const value = await f()
  return { value, ms: performance.now() - started }
}

export interface UserRow {
  readonly id: string
  readonly username: string
  readonly role: string
}

/** Creates a User through the daemon as the service principal. */
export const createUser = async (system: Client, role = "user"): Promise<UserRow> => {
  const name = `sec_${uid()}`
  const u = expectOk<UserRow>(
    await system.call("create", ["User", { username: name, email: `${name}@example.com`, role }], serviceAuth),
    "create User"
  )
  return u
}

export interface SessionRow {
  readonly id: string
  readonly token: string
  readonly userId: string
}

/** Creates a Session of `userId` expiring at `expiresAt` through the daemon as the service principal. */
export const createSession = async (system: Client, userId: string, expiresAt: Date): Promise<SessionRow> => {
  const token = `sess-${randomBytes(24).toString("hex")}`
  const s = expectOk<Rec>(
    await system.call("create", ["Session", { userId, token, expiresAt: expiresAt.toISOString() }], serviceAuth),
    "create Session"
  )
  return { id: String(s.id), token, userId }
}

export const inSeconds = (s: number): Date => new Date(Date.now() + s * 1000)

/** Signs a JWT with `claims` (iat now, exp in 10 minutes unless given). */
export const signJwt = async (
  key: Parameters<jose.SignJWT["sign"]>[0],
  alg: string,
  claims: { sub?: string; role?: unknown; iss?: string; aud?: string; exp?: number; nbf?: number; [k: string]: unknown }
): Promise<string> => {
  const now = Math.floor(Date.now() / 1000)
  const { exp, nbf, iss, aud, sub, ...rest } = claims
  let jwt = new jose.SignJWT(rest)
    .setProtectedHeader({ alg })
    .setIssuedAt(now)
    .setExpirationTime(exp ?? now + 600)
  if (nbf !== undefined) jwt = jwt.setNotBefore(nbf)
  if (iss !== undefined) jwt = jwt.setIssuer(iss)
  if (aud !== undefined) jwt = jwt.setAudience(aud)
  if (sub !== undefined) jwt = jwt.setSubject(sub)
  return jwt.sign(key)
}

export { until } from "../support/wait.js"
