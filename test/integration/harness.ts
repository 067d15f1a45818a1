/**
 * Shared setup of the integration suites: one database per dialect and file, the daemon's core
 * layers (everything below the WebSocket server) in a ManagedRuntime, and `call`, which sends a
 * frame through the real RpcHandler and parses its answer. Each suite file runs its tests once
 * per dialect with identical expectations.
 */
import { ManagedRuntime } from "effect"
import { afterAll, beforeAll, expect } from "vitest"
import { startInProcess } from "../support/inprocess.js"
import type { RpcHandler } from "../../src/rpc/Handler.js"
import { uid } from "../support/ids.js"
import type { Answer, Rec, WireError } from "../support/types.js"
import { createDatabase, daemonConfig, type DialectName, serviceAuth, type TestDatabase, writeConfig } from "../support/services.js"

export const DIALECTS = ["sqlite", "postgresql", "mysql"] as const satisfies ReadonlyArray<DialectName>

export type { Answer, Rec }
export { uid }

export interface Harness {
  /** Sends one request and returns the parsed answer (never throws on an error answer). */
  readonly call: (method: string, params?: ReadonlyArray<unknown>, auth?: Record<string, unknown> | null) => Promise<Answer>
  /** Sends a raw frame. */
  readonly raw: (frame: string) => Promise<Answer>
  /** Calls and expects success; returns the result. */
  readonly ok: <T = unknown>(method: string, params?: ReadonlyArray<unknown>) => Promise<T>
  /** Calls and expects an error with this code; returns the error. */
  readonly fail: (code: number, method: string, params?: ReadonlyArray<unknown>) => Promise<WireError>
  /** Number of rows of an entity matching a filter (as system). */
  readonly count: (entity: string, filter?: Rec) => Promise<number>
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

export const expectUuidV4 = (v: unknown) => expect(v).toMatch(UUID_V4)
export const expectIsoUtc = (v: unknown) => {
  expect(typeof v).toBe("string")
  expect(v).toMatch(ISO_UTC)
  expect(new Date(v as string).toISOString()).toBe(v)
}

/** Nothing of SQL, driver messages or stack traces in an error answer. */
export const expectNoLeak = (e: WireError | undefined) => {
  const text = JSON.stringify(e ?? {})
  const patterns = [
    /SELECT/i,
    /INSERT/i,
    /\bUPDATE\b/,
    /\bDELETE\b/,
    /\bWHERE\b/,
    /\bFROM\b/,
    / {4}at /,
    /\bSQLITE_/,
    /\bER_[A-Z_]+/,
    /violates/i,
    /duplicate key/i,
    /Duplicate entry/i,
    /constraint failed/i,
    /syntax/i,
    /\bstack\b/i,
    /\.ts:\d+/,
    /\bpg_/,
    /relation "/,
    /sqlState/i
  ]
  for (const bad of patterns) {
    expect(text, `error leaks internals: ${text}`).not.toMatch(bad)
  }
}

export const fieldsOf = (e: WireError): ReadonlyArray<{ field: string; error: string }> =>
  (e.details?.fields ?? []) as ReadonlyArray<{ field: string; error: string }>

/** The names in details.fields (422: `{field}` items; 409: plain field names). */
export const fieldNames = (e: WireError): ReadonlyArray<string> =>
  ((e.details?.fields ?? []) as ReadonlyArray<unknown>).map((f) => (typeof f === "string" ? f : String((f as { field: unknown }).field)))

/**
 * Sets up a database, configuration and runtime for the surrounding `describe` block and returns
 * a harness whose methods work once `beforeAll` has run.
 */
export const useDaemon = (dialect: DialectName): Harness => {
  let db: TestDatabase | undefined
  let runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown> | undefined
  let handle: ((frame: string) => Promise<string>) | undefined
  let next = 0

  beforeAll(async () => {
    db = await createDatabase(dialect)
    const file = writeConfig(daemonConfig(db))
    ;({ runtime, handle } = await startInProcess(file))
  })

  afterAll(async () => {
    await runtime?.dispose()
    await db?.drop()
  })

  const raw = async (frame: string): Promise<Answer> => {
    if (handle === undefined) throw new Error("the daemon is not started")
    return JSON.parse(await handle(frame)) as Answer
  }

  const call: Harness["call"] = async (method, params = [], auth = serviceAuth) => {
    const id = `t${++next}`
    const a = await raw(JSON.stringify({ id, method, params, ...(auth === null ? {} : { auth }) }))
    expect(a.id).toBe(id)
    return a
  }

  const ok = async <T = unknown>(method: string, params: ReadonlyArray<unknown> = []): Promise<T> => {
    const a = await call(method, params)
    expect(a.error, `${method} ${JSON.stringify(params).slice(0, 300)} failed: ${JSON.stringify(a.error)}`).toBeUndefined()
    return a.result as T
  }

  const fail = async (code: number, method: string, params: ReadonlyArray<unknown> = []): Promise<WireError> => {
    const a = await call(method, params)
    expect(a.error, `${method} ${JSON.stringify(params).slice(0, 300)} answered ${JSON.stringify(a.result)?.slice(0, 300)}`).toBeDefined()
    expect(a.error!.code, JSON.stringify(a.error)).toBe(code)
    expectNoLeak(a.error)
    return a.error!
  }

  const count = (entity: string, filter?: Rec) => ok<number>("count", filter === undefined ? [entity] : [entity, filter])

  return { call, raw, ok, fail, count }
}

/** Helpers to create the records most tests need (as system). */
export const fixtures = (h: Harness) => {
  const user = (over: Rec = {}) => {
    const s = uid()
    return h.ok<Rec>("create", ["User", { username: `u_${s}`, email: `u_${s}@example.com`, ...over }])
  }
  const page = (over: Rec = {}) => {
    const s = uid()
    return h.ok<Rec>("create", ["PageView", { slug: `p-${s}`, title: `Page ${s}`, level: 1, layout: { s }, ...over }])
  }
  const workflow = (createdBy: string, over: Rec = {}) => {
    const s = uid()
    return h.ok<Rec>("create", ["Workflow", { name: `wf-${s}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy, ...over }])
  }
  return { user, page, workflow }
}
