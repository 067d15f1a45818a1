/**
 * Reliability · access. Two things, on the real daemon process (bin/dbal-daemon.mjs) over real
 * WebSockets, configured with the shipped config/acl_rules.yaml:
 *
 * 1. The decision table (access-table.ts, written by hand from the rules): every entity ×
 *    principal (no credentials, each user role by session token, a service token) × method is
 *    sent alone and again as the only operation of a `transaction` (see TX_DIALECTS), and its
 *    observed decision must be the table's: 403 / 401 when refused, success reaching a row no
 *    filter admits when allowed, only the admitted rows when filtered. Every probe aims at a
 *    fresh "foreign" row; afterwards each row a refused or filtered write aimed at is looked at
 *    as `system` (unchanged) and every refused create is checked to have made nothing. The
 *    authenticate and getCapabilities methods are checked per principal.
 *
 * 2. Cross-user attempts: a user A against user B's User, Session and Credential rows and an
 *    inactive page, an admin against another admin's workflows (rule R2) and an admin against
 *    a god's account (rank guard) — through every method, `include`, the bulk methods,
 *    `transaction` ops, filters on hidden fields, the same reads by A and B (PostgreSQL runs
 *    with the result cache on), forged or expired credentials and role changes. Each is
 *    refused or filtered, no answer carries any of B's values, and afterwards B's rows are
 *    unchanged (looked at as `system`).
 *
 * Requests are pipelined: WIDTH probes in flight over one connection per principal.
 * Every test prints its figures (report("access", …)).
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { isDeepStrictEqual } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Answer, type Client, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  SERVICE_TOKEN,
  serviceAuth,
  skipDialect,
  type TestDatabase,
  tempDir,
  writeConfig
} from "../support/services.js"
import * as YAML from "yaml"
import { Methods } from "../../src/rpc/Protocol.js"
import {
  CELLS,
  type Code,
  ENTITIES,
  ENTITY_METHODS,
  type Entity,
  type EntityMethod,
  EXPECTED,
  type Kind,
  KINDS,
  OPERATIONS_OF,
  OTHER_METHODS,
  LIVE_METHODS
} from "./access-table.js"
import { change, KEY } from "../security/acl-support.js"
import { report, scale } from "./figures.js"

type Rec = Record<string, unknown>
type UserKind = Exclude<Kind, "anonymous" | "system">

const RULES_FILE = path.join(root, "config", "acl_rules.yaml")
const DIALECTS: ReadonlyArray<DialectName> = ["sqlite", "postgresql"]
/** Cells (and attempts) in flight at once: requests are pipelined on each connection. */
const WIDTH = 32
/**
 * Where every cell is also sent inside a transaction. The short run (inside `npm test`) does it
 * on SQLite only, to stay within its time; PostgreSQL's transaction paths are still exercised by
 * the cross-user tests. The long run does it on both.
 */
const TX_DIALECTS: ReadonlyArray<DialectName> = scale(["sqlite"], ["sqlite", "postgresql"])

const uid = (): string => randomBytes(5).toString("hex")
const later = (): string => new Date(Date.now() + 3_600_000 + Math.floor(Math.random() * 1e6) * 1000).toISOString()
const isRec = (v: unknown): v is Rec => typeof v === "object" && v !== null && !Array.isArray(v)
const isPage = (v: unknown): v is { data: Array<Rec>; total: number } => isRec(v) && Array.isArray(v.data) && typeof v.total === "number"
const brief = (v: unknown): string => JSON.stringify(v).slice(0, 300)

/** Runs `fn` over `items`, `width` at a time. */
const pool = async <T>(items: ReadonlyArray<T>, width: number, fn: (t: T) => Promise<void>): Promise<void> => {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!)
    })
  )
}

/** The unique field findByField, upsert and *ByField look records up by. */
const LOOKUP: Record<Entity, string> = { ...KEY, ComponentHierarchy: "id" }

interface Person {
  readonly id: string
  readonly username: string
  readonly email: string
  readonly role: UserKind
  readonly token: string
  readonly sessionId: string
  readonly auth: { readonly token: string; readonly user_id: string }
}

/** What setting up and looking at rows needs: the service connection, and a request counter. */
interface Base {
  /** Service connection used to set up and to look at rows (system passes every rule). */
  readonly sys: Client
  requests: number
}

interface Env extends Base {
  readonly dialect: DialectName
  readonly daemon: Daemon
  readonly db: TestDatabase
  readonly dir: string
  /** One connection per principal kind; `anonymous` sends no credentials. */
  readonly clients: Record<Kind, Client>
  readonly people: Record<UserKind, Person>
  /** The owner of the foreign Sessions, Workflows and LuaScripts the cells aim at. */
  readonly bystander: Person
}

const call = (env: Base, c: Client, method: string, params: ReadonlyArray<unknown>, auth?: Record<string, unknown>): Promise<Answer> => {
  env.requests++
  return auth === undefined ? c.call(method, params) : c.call(method, params, auth)
}

const sysOk = async <T = Rec>(env: Base, method: string, params: ReadonlyArray<unknown>): Promise<T> => {
  const a = await call(env, env.sys, method, params)
  if (a.error !== undefined) throw new Error(`setup ${method} ${brief(params)} failed: ${brief(a.error)}`)
  return a.result as T
}

/** The row as `system` sees it, or null when there is none. */
const sysRead = async (env: Base, entity: Entity, id: string): Promise<Rec | null> => {
  const a = await call(env, env.sys, "read", [entity, id])
  if (a.error?.code === 404) return null
  if (a.error !== undefined) throw new Error(`read ${entity} ${id} as system failed: ${brief(a.error)}`)
  return a.result as Rec
}

const person = async (env: Base, role: UserKind): Promise<Person> => {
  const s = uid()
  const u = await sysOk(env, "create", ["User", { username: `acc_${role}_${s}`, email: `acc_${role}_${s}@example.com`, role }])
  const token = `sess-${randomBytes(24).toString("hex")}`
  const session = await sysOk(env, "create", ["Session", { userId: u.id, token, expiresAt: later() }])
  const id = String(u.id)
  return {
    id,
    username: String(u.username),
    email: String(u.email),
    role,
    token,
    sessionId: String(session.id),
    auth: { token, user_id: id }
  }
}

const startEnv = async (dialect: DialectName): Promise<Env> => {
  const db = await createDatabase(dialect)
  const dir = tempDir("access")
  const defaults = daemonConfig(db)
  const config = {
    ...defaults,
    security: {
      ...(defaults.security as Rec),
      auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], failed_auth: { burst: 1000, per_minute: 1000 } },
      acl: { rules_file: RULES_FILE }
    },
    // PostgreSQL runs with the result cache on, so that cached answers are checked for
    // cross-user leaks too (its keys carry the caller's row filter); SQLite runs without.
    ...(dialect === "postgresql" ? { performance: { cache_enabled: true } } : {})
  }
  let daemon: Daemon
  try {
    daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { timeoutMs: 60_000 })
  } catch (e) {
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
  try {
    const sys = await connect(daemon.port, serviceAuth)
    const base: Base = { sys, requests: 0 }
    const [user, admin, god, supergod, bystander] = await Promise.all(
      (["user", "admin", "god", "supergod", "user"] as const).map((r) => person(base, r))
    )
    const people = { user: user!, admin: admin!, god: god!, supergod: supergod! }
    const clients: Record<Kind, Client> = {
      anonymous: await connect(daemon.port),
      user: await connect(daemon.port, people.user.auth),
      admin: await connect(daemon.port, people.admin.auth),
      god: await connect(daemon.port, people.god.auth),
      supergod: await connect(daemon.port, people.supergod.auth),
      system: await connect(daemon.port, serviceAuth)
    }
    return { dialect, daemon, db, dir, sys, clients, people, bystander: bystander!, requests: base.requests }
  } catch (e) {
    // Nothing may outlive a failed start: the daemon (and its connections) and the database.
    await daemon.stop()
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
}

const stopEnv = async (env: Env | undefined): Promise<void> => {
  if (env === undefined) return
  for (const c of [env.sys, ...Object.values(env.clients)]) await c.close()
  await env.daemon.stop()
  await env.db.drop()
  fs.rmSync(env.dir, { recursive: true, force: true })
}

// ---------------------------------------------------------------------------------------------
// Records the cells aim at

/** Create data without references to other rows (`s`: a fresh suffix). Pages are inactive (R1 hides them). */
const plainData = (env: Env, entity: Exclude<Entity, "Credential" | "ComponentHierarchy">, s: string): Rec => {
  switch (entity) {
    case "User":
      return { username: `t_${s}`, email: `t_${s}@example.com` }
    case "Session":
      return { userId: env.bystander.id, token: `tok-${s}`, expiresAt: later() }
    case "PageView":
      return { slug: `p-${s}`, title: `Page ${s}`, level: 1, layout: { s }, isActive: false }
    case "Workflow":
      return { name: `wf-${s}`, trigger: "manual", triggerConfig: { s }, steps: [{ s }], createdBy: env.bystander.id }
    case "LuaScript":
      return { name: `lua-${s}`, code: "return 1", createdBy: env.bystander.id }
    case "Package":
      return { name: `pkg-${s}`, version: "1.0.0", author: "tests", manifest: { s } }
  }
}

const chunks = <T>(items: ReadonlyArray<T>, size: number): Array<ReadonlyArray<T>> =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size))

/** System's view of the rows whose `field` is one of `values` (paged by 100), by that field. */
const rowsBy = async (env: Base, entity: Entity, field: string, values: ReadonlyArray<unknown>): Promise<Map<string, Rec>> => {
  const out = new Map<string, Rec>()
  for (const part of chunks(values, 100)) {
    const page = await sysOk<{ data: Array<Rec> }>(env, "list", [entity, { filter: { [field]: { in: part } }, limit: 100 }])
    for (const r of page.data) out.set(String(r[field]), r)
  }
  return out
}

/** Creates the records as system (createMany) and returns them as system sees them, in order. */
const bulkCreate = async (env: Base, entity: Entity, data: ReadonlyArray<Rec>): Promise<Array<Rec>> => {
  for (const part of chunks(data, 500)) await sysOk(env, "createMany", [entity, part])
  const made = await rowsBy(
    env,
    entity,
    KEY[entity],
    data.map((d) => d[KEY[entity]])
  )
  return data.map((d) => {
    const r = made.get(String(d[KEY[entity]]))
    if (r === undefined) throw new Error(`setup: ${entity} ${String(d[KEY[entity]])} was not created`)
    return r
  })
}

/** Valid create data for `n` records; the rows they reference are created first, in bulk. */
const createDataBatch = async (env: Env, entity: Entity, n: number): Promise<Array<Rec>> => {
  const suffixes = Array.from({ length: n }, () => uid())
  if (entity === "Credential") {
    const users = suffixes.map((s) => ({ username: `c_${s}`, email: `c_${s}@example.com` }))
    await bulkCreate(env, "User", users)
    return suffixes.map((s, i) => ({ username: users[i]!.username, passwordHash: `hash-${s}` }))
  }
  if (entity === "ComponentHierarchy") {
    const pages = await bulkCreate(
      env,
      "PageView",
      suffixes.map((s) => ({ slug: `cp-${s}`, title: "P", level: 1, layout: {} }))
    )
    return suffixes.map((s, i) => ({ pageId: pages[i]!.id, componentType: `Box${s}`, order: 0, props: { s } }))
  }
  return suffixes.map((s) => plainData(env, entity, s))
}

const createData = async (env: Env, entity: Entity): Promise<Rec> => (await createDataBatch(env, entity, 1))[0]!

/** What updateMany sets: no unique field (User's only non-unique writable field is its role). */
const manyChange = (entity: Entity): Rec => (entity === "User" ? { role: "user" } : change(entity))

/**
 * A row the principal's filter admits, where the rules give them one (written from the rules):
 * a user's own User row (self, R3), an active page for a user (R1), an admin's own workflow (R2).
 * The rows the cells aim at first are "foreign": a user-ranked User, an inactive page, the
 * bystander's workflows, ... — fresh for every cell.
 */
const ownRow = async (env: Env, entity: Entity, kind: Kind): Promise<Rec | undefined> => {
  if (entity === "User" && kind === "user") return { id: env.people.user.id, username: env.people.user.username }
  if (entity === "PageView" && kind === "user")
    return sysOk(env, "create", ["PageView", { ...plainData(env, "PageView", uid()), isActive: true }])
  if (entity === "Workflow" && kind === "admin")
    return sysOk(env, "create", ["Workflow", { ...plainData(env, "Workflow", uid()), createdBy: env.people.admin.id }])
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Sending a probe and reading its outcome

type Outcome =
  | { readonly tag: "reached" }
  | { readonly tag: "missed" }
  | { readonly tag: "error"; readonly code: number; readonly reason: string }
  | { readonly tag: "odd"; readonly text: string }

/** Sends alone or as the only operation of a transaction; the answer is the operation's. */
const send = async (
  env: Env,
  c: Client,
  method: string,
  params: ReadonlyArray<unknown>,
  inTx: boolean,
  problems: Array<string>
): Promise<Answer> => {
  if (!inTx) return call(env, c, method, params)
  const a = await call(env, c, "transaction", [[{ method, params }]])
  if (a.error !== undefined) {
    // A refused credential fails the whole request; anything else names the failed operation.
    if (a.error.code !== 401 && (a.error.details?.operation !== 0 || a.error.details?.rolledBack !== true)) {
      problems.push(`transaction error does not name operation 0 / rolledBack: ${brief(a.error)}`)
    }
    return a
  }
  if (!Array.isArray(a.result) || a.result.length !== 1) {
    problems.push(`transaction result is not a list of one: ${brief(a.result)}`)
    return { id: a.id, error: { code: -1, message: "bad transaction result" } }
  }
  return { id: a.id, result: a.result[0] }
}

interface Probe {
  readonly params: ReadonlyArray<unknown>
  /** For creates: the unique key value of the record it would make. */
  readonly made?: string
  readonly expectChange?: Rec
}

const CREATES: ReadonlySet<EntityMethod> = new Set(["create", "createMany"])
const WRITES: ReadonlySet<EntityMethod> = new Set([
  "update",
  "updateByField",
  "updateMany",
  "upsert",
  "delete",
  "deleteByField",
  "deleteMany"
])
/** Methods whose probe needs fresh create data. */
const NEEDS_DATA: ReadonlySet<EntityMethod> = new Set(["create", "createMany", "upsert"])

/** The request of `method` aimed at `row` (`data`: fresh create data, for NEEDS_DATA methods). */
const probeFor = (entity: Entity, method: EntityMethod, row: Rec, data: Rec = {}): Probe => {
  const id = String(row.id)
  const lookup = LOOKUP[entity]
  switch (method) {
    case "create":
      return { params: [entity, data], made: String(data[KEY[entity]]) }
    case "createMany":
      return { params: [entity, [data]], made: String(data[KEY[entity]]) }
    case "read":
    case "delete":
      return { params: [entity, id] }
    case "update": {
      const ch = change(entity)
      return { params: [entity, id, ch], expectChange: ch }
    }
    case "list":
      return { params: [entity, { filter: { id } }] }
    case "findFirst":
    case "count":
    case "deleteMany":
      return { params: [entity, { id }] }
    case "findByField":
    case "deleteByField":
      return { params: [entity, lookup, row[lookup]] }
    case "updateByField": {
      const ch = change(entity)
      return { params: [entity, lookup, row[lookup], ch], expectChange: ch }
    }
    case "updateMany": {
      const ch = manyChange(entity)
      return { params: [entity, { id }, ch], ...(entity === "User" ? {} : { expectChange: ch }) }
    }
    case "upsert": {
      // The row exists: an admitted upsert takes the update path.
      const ch = change(entity)
      const createData = lookup === "id" ? data : { ...data, [lookup]: row[lookup] }
      return { params: [entity, lookup, row[lookup], createData, ch], expectChange: ch }
    }
  }
}

/** What the answer says about the row the probe aimed at. */
const outcomeOf = (method: EntityMethod, id: string, a: Answer): Outcome => {
  if (a.error !== undefined) {
    const byId = ["read", "update", "delete", "upsert", "updateByField", "deleteByField"].includes(method)
    if (a.error.code === 404 && byId) return { tag: "missed" }
    return { tag: "error", code: a.error.code, reason: String(a.error.details?.reason ?? a.error.message) }
  }
  const r = a.result
  const odd = (): Outcome => ({ tag: "odd", text: `${method} answered ${brief(r)}` })
  switch (method) {
    case "read":
    case "update":
    case "updateByField":
    case "upsert":
      return isRec(r) && r.id === id ? { tag: "reached" } : odd()
    case "findFirst":
    case "findByField":
      return r === null ? { tag: "missed" } : isRec(r) && r.id === id ? { tag: "reached" } : odd()
    case "list":
      if (!isPage(r)) return odd()
      if (r.data.length === 0 && r.total === 0) return { tag: "missed" }
      return r.data.length === 1 && r.data[0]!.id === id && r.total === 1 ? { tag: "reached" } : odd()
    case "count":
    case "updateMany":
    case "deleteMany":
      return r === 0 ? { tag: "missed" } : r === 1 ? { tag: "reached" } : odd()
    case "delete":
    case "deleteByField":
      return r === true ? { tag: "reached" } : odd()
    case "create":
      return isRec(r) && typeof r.id === "string" ? { tag: "reached" } : odd()
    case "createMany":
      return r === 1 ? { tag: "reached" } : odd()
  }
}

const codeOf = (o: Outcome, own: Outcome | undefined): string => {
  switch (o.tag) {
    case "reached":
      return "A"
    case "odd":
      return `? (${o.text})`
    case "error":
      if (o.code === 401) return "U"
      if (o.code === 403 && o.reason.startsWith("Insufficient permissions for operation")) return "D"
      if (o.code === 403 && /may not be written/.test(o.reason)) return "W"
      if (o.code === 422) return "X"
      return `? (${o.code} ${o.reason})`
    case "missed":
      if (own === undefined) return "? (the row was not reached, and the principal owns none)"
      return own.tag === "reached" ? "F" : `? (own row: ${JSON.stringify(own)})`
  }
}

interface Run {
  readonly entity: Entity
  readonly kind: Kind
  readonly method: EntityMethod
  readonly code: Code
  readonly inTx: boolean
}

interface Prepared extends Run {
  /** The foreign row the probe aims at, as system saw it before. */
  readonly row: Rec
  readonly probe: Probe
}

/** Creates, in bulk, the foreign row of every run and the create data its probe needs. */
const prepare = async (env: Env, runs: ReadonlyArray<Run>): Promise<Array<Prepared>> => {
  const out: Array<Prepared> = []
  for (const entity of ENTITIES) {
    const mine = runs.filter((r) => r.entity === entity)
    const extra = mine.filter((r) => NEEDS_DATA.has(r.method)).length
    const data = await createDataBatch(env, entity, mine.length + extra)
    const rows = await bulkCreate(env, entity, data.slice(0, mine.length))
    let next = mine.length
    mine.forEach((r, i) => {
      const row = rows[i]!
      out.push({ ...r, row, probe: probeFor(entity, r.method, row, NEEDS_DATA.has(r.method) ? data[next++] : undefined) })
    })
  }
  return out
}

/**
 * Checks, as system, what each probe did to the database (looked up in bulk): a refused or
 * filtered write left its row as it was and a refused create made nothing (else "LEAK"); an
 * allowed one did what it was asked.
 */
const checkEffects = async (
  env: Env,
  done: ReadonlyArray<{ readonly p: Prepared; readonly reached: boolean; readonly problems: Array<string> }>
): Promise<void> => {
  for (const entity of ENTITIES) {
    const mine = done.filter((d) => d.p.entity === entity)
    const writes = mine.filter((d) => WRITES.has(d.p.method))
    const creates = mine.filter((d) => CREATES.has(d.p.method))
    const now = await rowsBy(
      env,
      entity,
      "id",
      writes.map((d) => d.p.row.id)
    )
    const made = await rowsBy(
      env,
      entity,
      KEY[entity],
      creates.map((d) => d.p.probe.made)
    )
    for (const { p, reached, problems } of creates) {
      const n = made.has(String(p.probe.made)) ? 1 : 0
      if (n !== (reached ? 1 : 0)) problems.push(`${!reached && n > 0 ? "LEAK " : ""}${n} records made, expected ${reached ? 1 : 0}`)
    }
    for (const { p, reached, problems } of writes) {
      const after = now.get(String(p.row.id)) ?? null
      const deletes = p.method === "delete" || p.method === "deleteByField" || p.method === "deleteMany"
      if (!reached) {
        if (!isDeepStrictEqual(after, p.row)) problems.push(`LEAK the aimed-at row changed: ${brief(p.row)} → ${brief(after)}`)
      } else if (deletes) {
        if (after !== null) problems.push("the row is still there after an allowed delete")
      } else if (after === null) {
        problems.push("the row is gone after an update")
      } else {
        for (const [k, v] of Object.entries(p.probe.expectChange ?? {}))
          if (!isDeepStrictEqual(after[k], v)) problems.push(`${k} is ${brief(after[k])}, expected ${brief(v)}`)
      }
    }
  }
}

/** Sends one run's probe at its foreign row, then (when that missed) at the principal's own row. */
const probe = async (env: Env, p: Prepared): Promise<{ observed: string; reached: boolean; problems: Array<string> }> => {
  const problems: Array<string> = []
  const c = env.clients[p.kind]
  const o = outcomeOf(p.method, String(p.row.id), await send(env, c, p.method, p.probe.params, p.inTx, problems))
  let own: Outcome | undefined
  if (o.tag === "missed") {
    const mine = await ownRow(env, p.entity, p.kind)
    if (mine !== undefined) {
      const data = NEEDS_DATA.has(p.method) ? await createData(env, p.entity) : undefined
      const ownProbe = probeFor(p.entity, p.method, mine, data)
      own = outcomeOf(p.method, String(mine.id), await send(env, c, p.method, ownProbe.params, p.inTx, problems))
    }
  }
  return { observed: codeOf(o, own), reached: o.tag === "reached", problems }
}

// ---------------------------------------------------------------------------------------------
// Cross-user attempts

type Expect = (a: Answer) => string | undefined

const refused =
  (code: number, reason?: RegExp): Expect =>
  (a) =>
    a.error?.code === code && (reason === undefined || reason.test(String(a.error.details?.reason ?? ""))) && a.result === undefined
      ? undefined
      : `expected ${code}${reason === undefined ? "" : ` ${String(reason)}`}`
const answers =
  (what: string, ok: (r: unknown) => boolean): Expect =>
  (a) =>
    a.error === undefined && ok(a.result) ? undefined : `expected ${what}`
const nothing = answers("null", (r) => r === null)
const number = (n: number) => answers(String(n), (r) => r === n)
const pageOf = (ids: ReadonlyArray<string>) =>
  answers(
    `a page of exactly [${ids.join(", ")}]`,
    (r) => isPage(r) && r.total === ids.length && isDeepStrictEqual(r.data.map((x) => x.id).sort(), [...ids].sort())
  )
const emptyPage = pageOf([])
/** Every record of the page passes `ok` (and there is at least one). */
const pageWhere = (what: string, ok: (x: Rec) => boolean) => answers(what, (r) => isPage(r) && r.data.length > 0 && r.data.every(ok))
const recordWhere = (what: string, ok: (x: Rec) => boolean) => answers(what, (r) => isRec(r) && ok(r))
/** A transaction whose results pass each check in turn. */
const results =
  (...checks: ReadonlyArray<Expect>): Expect =>
  (a) => {
    if (a.error !== undefined || !Array.isArray(a.result) || a.result.length !== checks.length) return `expected ${checks.length} results`
    const list = a.result as ReadonlyArray<unknown>
    for (const [i, check] of checks.entries()) {
      const p = check({ id: a.id, result: list[i] })
      if (p !== undefined) return `result ${i}: ${p}`
    }
    return undefined
  }
/** A transaction refused at operation `op` and rolled back. */
const txRefused =
  (code: number, op: number): Expect =>
  (a) =>
    a.error?.code === code && a.error.details?.operation === op && a.error.details?.rolledBack === true
      ? undefined
      : `expected ${code} at operation ${op}, rolled back`

interface Attempt {
  readonly name: string
  readonly as: Kind
  readonly method: string
  readonly params: ReadonlyArray<unknown>
  /** Credentials replacing the connection's own (forged identities, or B's own requests). */
  readonly auth?: Record<string, unknown>
  readonly expect: Expect
  /** Values the answer may not carry, when not the victims' (B's own requests: A's values). */
  readonly secrets?: ReadonlyArray<string>
}

interface Victims {
  /** Principal A (user) and A2 (admin) are env.people.user / env.people.admin. */
  readonly b: Person
  readonly bCredentialId: string
  readonly b2: Person
  readonly inactivePage: Rec
  readonly wa: Rec
  readonly wb: Rec
  /** Values of B's that nothing A (or A2) is sent may contain. */
  readonly secrets: ReadonlyArray<string>
  /** Rows none of the attempts may change: [entity, id]. */
  readonly guarded: ReadonlyArray<readonly [Entity, string]>
}

const setUpVictims = async (env: Env): Promise<Victims> => {
  const s = uid()
  const b = await person(env, "user")
  const cred = await sysOk(env, "create", ["Credential", { username: b.username, passwordHash: `bhash-${s}` }])
  const b2 = await person(env, "admin")
  const inactivePage = await sysOk(env, "create", [
    "PageView",
    { slug: `hidden-${s}`, title: `Hidden ${s}`, level: 1, layout: { s }, isActive: false }
  ])
  const workflow = (createdBy: string, tag: string) =>
    sysOk(env, "create", [
      "Workflow",
      {
        name: `wf${tag}-${s}`,
        description: `d${tag}-${s}`,
        trigger: "manual",
        triggerConfig: { secret: `trig${tag}-${s}` },
        steps: [{ secret: `steps${tag}-${s}` }],
        createdBy
      }
    ])
  const wa = await workflow(env.people.admin.id, "A")
  const wb = await workflow(b2.id, "B")
  return {
    b,
    bCredentialId: String(cred.id),
    b2,
    inactivePage,
    wa,
    wb,
    secrets: [
      b.id,
      b.username,
      b.email,
      b.token,
      b.sessionId,
      String(cred.id),
      `bhash-${s}`,
      String(inactivePage.id),
      String(inactivePage.slug),
      String(wb.id),
      String(wb.name),
      `dB-${s}`,
      `trigB-${s}`,
      `stepsB-${s}`,
      // A2's own workflow: its hidden fields (R2 read_fields) never reach A2.
      `trigA-${s}`,
      `stepsA-${s}`
    ],
    guarded: [
      ["User", b.id],
      ["Session", b.sessionId],
      ["Credential", String(cred.id)],
      ["User", b2.id],
      ["PageView", String(inactivePage.id)],
      ["Workflow", String(wa.id)],
      ["Workflow", String(wb.id)],
      ["User", env.people.user.id],
      ["User", env.people.god.id],
      ["Session", env.people.god.sessionId]
    ]
  }
}

interface AttemptFigures {
  attempts: number
  refused: number
  filtered: number
  leaks: number
  rowsChecked: number
}

/**
 * Runs the attempts (pipelined), then checks that no answer carried one of the victims'
 * values and that every guarded row is unchanged. Returns the problems found.
 */
const runAttempts = async (
  env: Env,
  v: Victims,
  attempts: ReadonlyArray<Attempt>
): Promise<{ problems: Array<string>; figures: AttemptFigures }> => {
  const before = new Map<string, Rec | null>()
  for (const [entity, id] of v.guarded) before.set(`${entity}:${id}`, await sysRead(env, entity, id))
  const problems: Array<string> = []
  const figures: AttemptFigures = { attempts: attempts.length, refused: 0, filtered: 0, leaks: 0, rowsChecked: v.guarded.length }
  await pool(attempts, WIDTH, async (t) => {
    const a = await call(env, env.clients[t.as], t.method, t.params, t.auth)
    if (a.error !== undefined) figures.refused++
    else figures.filtered++
    const p = t.expect(a)
    if (p !== undefined) problems.push(`${t.name} (as ${t.as}): ${p}; got ${brief(a.error ?? a.result)}`)
    const text = JSON.stringify(a)
    const leaked = (t.secrets ?? v.secrets).filter((s) => text.includes(s))
    if (leaked.length > 0) {
      figures.leaks++
      problems.push(`LEAK ${t.name} (as ${t.as}): the answer carries ${leaked.join(", ")}: ${brief(a)}`)
    }
  })
  for (const [entity, id] of v.guarded) {
    const now = await sysRead(env, entity, id)
    if (!isDeepStrictEqual(now, before.get(`${entity}:${id}`))) {
      figures.leaks++
      problems.push(`LEAK ${entity} ${id} changed: ${brief(before.get(`${entity}:${id}`))} → ${brief(now)}`)
    }
  }
  // B's session still authenticates as B (it was not deleted, expired or given to someone else).
  const whoB = await whoIs(env, v.b.token)
  if (!isDeepStrictEqual(whoB.result, { authenticated: true, userId: v.b.id, role: "user" })) problems.push(`B's session: ${brief(whoB)}`)
  return { problems, figures }
}

/** Who a session token authenticates as, on a connection of its own (authenticate sticks to it). */
const whoIs = async (env: Env, token: string): Promise<Answer> => {
  const c = await connect(env.daemon.port)
  try {
    return await call(env, c, "authenticate", [{ token }])
  } finally {
    await c.close()
  }
}

/** dbal_cache_lookups_total{result="hit"} from /metrics (0 when the cache is off). */
const cacheHits = async (env: Env): Promise<number> => {
  const res = await fetch(`http://127.0.0.1:${env.daemon.port}/metrics`, { signal: AbortSignal.timeout(10_000) })
  const line = (await res.text()).split("\n").find((l) => l.startsWith("dbal_cache_lookups_total{") && l.includes('result="hit"'))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

const reportAttempts = (env: Env, test: string, f: AttemptFigures) =>
  report("access", `${test} (${env.dialect})`, {
    cells: f.attempts,
    allowed: f.leaks,
    denied: f.refused,
    filtered: f.filtered,
    cross_user_attempts: f.attempts,
    rows_checked: f.rowsChecked,
    leaks: f.leaks
  })

// ---------------------------------------------------------------------------------------------

describe("the access table (access-table.ts)", () => {
  it("the hand-written table is consistent with the documented method → operation mapping", () => {
    // A typo check of the table itself (no daemon involved): methods decided under the same
    // operation have the same code, and upsert combines create and update.
    const problems: Array<string> = []
    // An upsert is refused when either of its operations is, and filtered when either is.
    const combine = (x: Code, y: Code): Code =>
      x === "U" || y === "U" ? "U" : x === "D" || y === "D" ? "D" : x === "F" || y === "F" ? "F" : "A"
    for (const entity of ENTITIES) {
      for (const kind of KINDS) {
        const row = EXPECTED[entity][kind]
        const byOp = new Map<string, Set<Code>>()
        for (const m of ENTITY_METHODS) {
          if (m === "upsert" || m === "updateMany") continue
          for (const op of OPERATIONS_OF[m]) byOp.set(op, (byOp.get(op) ?? new Set()).add(row[m]))
        }
        for (const [op, codes] of byOp) if (codes.size !== 1) problems.push(`${entity}/${kind}/${op}: ${[...codes].join(" ")}`)
        // X: ComponentHierarchy has no unique field but its id, so no upsert at all (for those
        // the access decision admits: it comes first).
        const decided = combine(row.create, row.update)
        const upsert = entity === "ComponentHierarchy" && decided !== "U" && decided !== "D" ? "X" : decided
        if (row.upsert !== upsert) problems.push(`${entity}/${kind}/upsert: ${row.upsert}, expected ${upsert}`)
        if (row.updateMany !== row.update && !(row.updateMany === "W" && row.update === "F"))
          problems.push(`${entity}/${kind}/updateMany: ${row.updateMany} vs update ${row.update}`)
      }
    }
    expect(problems).toEqual([])
    expect(CELLS).toHaveLength(ENTITIES.length * KINDS.length * ENTITY_METHODS.length)
  })

  it("covers every method of the protocol and every shipped entity", () => {
    expect([...ENTITY_METHODS, ...OTHER_METHODS, ...LIVE_METHODS].sort()).toEqual([...Methods].sort())
    const dir = path.join(root, "config", "entities")
    const shipped = fs
      .readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => String((YAML.parse(fs.readFileSync(path.join(dir, f), "utf8")) as Rec).entity))
    expect(shipped.sort()).toEqual([...ENTITIES].sort())
  })
})

const served: ReadonlyArray<DialectName> = (await Promise.all(DIALECTS.map(async (d) => ((await skipDialect(d)) ? [] : [d])))).flat()

/** The daemons of every dialect start together (their start-up dominates on 2 cores otherwise). */
const starting = new Map<DialectName, Promise<Env>>()
beforeAll(() => {
  for (const d of served) {
    const p = startEnv(d)
    p.catch(() => undefined) // awaited (and reported) by the dialect's own beforeAll
    starting.set(d, p)
  }
})
afterAll(async () => {
  for (const p of starting.values()) await stopEnv(await p.catch(() => undefined))
}, 60_000)

for (const dialect of DIALECTS) {
  describe.skipIf(!served.includes(dialect))(`access decisions and cross-user isolation, shipped rules (${dialect})`, () => {
    let env: Env
    let v: Victims

    beforeAll(async () => {
      env = await starting.get(dialect)!
      v = await setUpVictims(env)
    }, 120_000)

    it(`every entity × principal × method gets the table's decision, alone${TX_DIALECTS.includes(dialect) ? " and inside a transaction" : ""}`, async () => {
      const started = Date.now()
      const requestsBefore = env.requests
      const tally = { A: 0, F: 0, D: 0, U: 0, W: 0, X: 0 }
      const mismatches: Array<string> = []
      let accidentalAllows = 0
      const wrappings = TX_DIALECTS.includes(dialect) ? [false, true] : [false]
      const runs: Array<Run> = CELLS.flatMap((cell) => wrappings.map((inTx) => ({ ...cell, inTx })))
      const prepared = await prepare(env, runs)
      const setupMs = Date.now() - started
      const done: Array<{ p: Prepared; observed: string; reached: boolean; problems: Array<string> }> = []
      await pool(prepared, WIDTH, async (p) => {
        done.push({ p, ...(await probe(env, p)) })
      })
      await checkEffects(env, done)
      for (const { p, observed, problems } of done) {
        const where = `${p.entity} ${p.kind} ${p.method}${p.inTx ? " (in a transaction)" : ""}`
        if (observed !== p.code) {
          mismatches.push(`${where}: expected ${p.code}, observed ${observed}`)
          if (observed === "A" || (observed === "F" && p.code !== "A")) accidentalAllows++
        } else tally[p.code]++
        for (const problem of problems) mismatches.push(`${where}: ${problem}`)
        if (problems.some((x) => x.startsWith("LEAK"))) accidentalAllows++
      }

      // The methods that name no entity, per principal.
      let others = 0
      for (const kind of KINDS) {
        const c = env.clients[kind]
        const creds = kind === "anonymous" ? { token: `not-a-session-${uid()}` } : kind === "system" ? serviceAuth : env.people[kind].auth
        const who = await call(env, c, "authenticate", [creds])
        const caps = await call(env, c, "getCapabilities", [])
        const schema = await call(env, c, "getSchema", [])
        others += 3
        if (kind === "anonymous") {
          if (who.error?.code !== 401) mismatches.push(`authenticate without valid credentials: ${brief(who)}`)
          if (caps.error?.code !== 401) mismatches.push(`getCapabilities without credentials: ${brief(caps)}`)
          if (schema.error?.code !== 401) mismatches.push(`getSchema without credentials: ${brief(schema)}`)
          tally.U += 3
        } else {
          // getSchema lists what the principal may use: every entity for system, never the
          // system-only Credential for anyone else.
          const names =
            isRec(schema.result) && Array.isArray(schema.result.entities)
              ? schema.result.entities.map((e: unknown) => (isRec(e) ? e.name : undefined))
              : undefined
          const schemaOk =
            names !== undefined && (kind === "system" ? ENTITIES.every((e) => names.includes(e)) : !names.includes("Credential"))
          if (!schemaOk) mismatches.push(`getSchema as ${kind}: ${brief(schema)}`)
          tally.A += 1
          const expected = { authenticated: true, userId: kind === "system" ? "tests" : env.people[kind].id, role: kind }
          if (!isDeepStrictEqual(who.result, expected)) mismatches.push(`authenticate as ${kind}: ${brief(who)}`)
          if (!(isRec(caps.result) && Array.isArray(caps.result.methods))) mismatches.push(`getCapabilities as ${kind}: ${brief(caps)}`)
          tally.A += 2
        }
      }

      const figures = {
        cells: CELLS.length,
        checks: runs.length + others,
        in_transaction: runs.filter((r) => r.inTx).length,
        allowed: tally.A,
        denied: tally.D + tally.W,
        unauthenticated: tally.U,
        filtered: tally.F,
        not_applicable: tally.X,
        mismatches: mismatches.length,
        // Probes a row filter (self, R1, R2, R3) had to stop at a row of someone else's.
        cross_user_attempts: runs.filter((r) => r.code === "F" || r.code === "W").length,
        leaks: accidentalAllows,
        requests: env.requests - requestsBefore,
        setup_ms: setupMs,
        ms: Date.now() - started
      }
      report("access", `decision table (${dialect})`, figures)
      expect(mismatches).toEqual([])
      expect(accidentalAllows).toBe(0)
    })

    it("user A cannot reach user B's rows through any single-record method", async () => {
      const { b, inactivePage: page } = v
      const a = env.people.user
      const attempts: Array<Attempt> = [
        { name: "read B", as: "user", method: "read", params: ["User", b.id], expect: refused(404) },
        { name: "read B (upper-case id)", as: "user", method: "read", params: ["User", b.id.toUpperCase()], expect: refused(404) },
        { name: "list", as: "user", method: "list", params: ["User", { limit: 100 }], expect: pageOf([a.id]) },
        { name: "list by B's id", as: "user", method: "list", params: ["User", { filter: { id: b.id } }], expect: emptyPage },
        { name: "count", as: "user", method: "count", params: ["User"], expect: number(1) },
        { name: "count by B's id", as: "user", method: "count", params: ["User", { id: b.id }], expect: number(0) },
        { name: "findFirst by B's id", as: "user", method: "findFirst", params: ["User", { id: b.id }], expect: nothing },
        {
          name: "findFirst, no filter",
          as: "user",
          method: "findFirst",
          params: ["User"],
          expect: recordWhere("A's own row", (r) => r.id === a.id)
        },
        { name: "findByField username", as: "user", method: "findByField", params: ["User", "username", b.username], expect: nothing },
        { name: "findByField email", as: "user", method: "findByField", params: ["User", "email", b.email], expect: nothing },
        { name: "findByField id", as: "user", method: "findByField", params: ["User", "id", b.id], expect: nothing },
        {
          name: "update B",
          as: "user",
          method: "update",
          params: ["User", b.id, { email: `x_${uid()}@example.com` }],
          expect: refused(404)
        },
        {
          name: "updateByField username",
          as: "user",
          method: "updateByField",
          params: ["User", "username", b.username, { email: `x_${uid()}@example.com` }],
          expect: refused(404)
        },
        {
          name: "updateByField email",
          as: "user",
          method: "updateByField",
          params: ["User", "email", b.email, { email: `x_${uid()}@example.com` }],
          expect: refused(404)
        },
        {
          name: "upsert B's username",
          as: "user",
          method: "upsert",
          params: ["User", "username", b.username, { email: `x_${uid()}@example.com` }, { email: `y_${uid()}@example.com` }],
          expect: refused(404)
        },
        { name: "delete B", as: "user", method: "delete", params: ["User", b.id], expect: refused(403) },
        { name: "deleteByField B", as: "user", method: "deleteByField", params: ["User", "username", b.username], expect: refused(403) },
        // Session and Credential: system only.
        { name: "read B's session", as: "user", method: "read", params: ["Session", b.sessionId], expect: refused(403) },
        { name: "findByField B's token", as: "user", method: "findByField", params: ["Session", "token", b.token], expect: refused(403) },
        { name: "list B's sessions", as: "user", method: "list", params: ["Session", { filter: { userId: b.id } }], expect: refused(403) },
        { name: "count B's sessions", as: "user", method: "count", params: ["Session", { userId: b.id }], expect: refused(403) },
        { name: "findFirst B's session", as: "user", method: "findFirst", params: ["Session", { userId: b.id }], expect: refused(403) },
        {
          name: "create a session for B",
          as: "user",
          method: "create",
          params: ["Session", { userId: b.id, token: `hijack-${uid()}`, expiresAt: later() }],
          expect: refused(403)
        },
        {
          name: "update B's session",
          as: "user",
          method: "update",
          params: ["Session", b.sessionId, { expiresAt: new Date(Date.now() - 1000).toISOString() }],
          expect: refused(403)
        },
        {
          name: "take over B's token (upsert)",
          as: "user",
          method: "upsert",
          params: ["Session", "token", b.token, { userId: a.id, expiresAt: later() }, { userId: a.id }],
          expect: refused(403)
        },
        {
          name: "updateByField B's token",
          as: "user",
          method: "updateByField",
          params: ["Session", "token", b.token, { userId: a.id }],
          expect: refused(403)
        },
        { name: "delete B's session", as: "user", method: "delete", params: ["Session", b.sessionId], expect: refused(403) },
        {
          name: "deleteByField B's token",
          as: "user",
          method: "deleteByField",
          params: ["Session", "token", b.token],
          expect: refused(403)
        },
        { name: "read B's credential", as: "user", method: "read", params: ["Credential", v.bCredentialId], expect: refused(403) },
        {
          name: "findByField B's credential",
          as: "user",
          method: "findByField",
          params: ["Credential", "username", b.username],
          expect: refused(403)
        },
        {
          name: "update B's credential",
          as: "user",
          method: "update",
          params: ["Credential", v.bCredentialId, { passwordHash: "pwned" }],
          expect: refused(403)
        },
        {
          name: "updateByField B's credential",
          as: "user",
          method: "updateByField",
          params: ["Credential", "username", b.username, { passwordHash: "pwned" }],
          expect: refused(403)
        },
        {
          name: "delete B's credential",
          as: "user",
          method: "deleteByField",
          params: ["Credential", "username", b.username],
          expect: refused(403)
        },
        // Inactive pages (R1): not there for a user.
        { name: "read an inactive page", as: "user", method: "read", params: ["PageView", page.id], expect: refused(404) },
        {
          name: "findByField an inactive page",
          as: "user",
          method: "findByField",
          params: ["PageView", "slug", page.slug],
          expect: nothing
        },
        { name: "findFirst an inactive page", as: "user", method: "findFirst", params: ["PageView", { slug: page.slug }], expect: nothing },
        {
          name: "list inactive pages",
          as: "user",
          method: "list",
          params: ["PageView", { filter: { isActive: false } }],
          expect: emptyPage
        },
        { name: "count an inactive page", as: "user", method: "count", params: ["PageView", { id: page.id }], expect: number(0) },
        { name: "activate a page", as: "user", method: "update", params: ["PageView", page.id, { isActive: true }], expect: refused(403) },
        // An admin against another admin's workflows (R2).
        { name: "read B2's workflow", as: "admin", method: "read", params: ["Workflow", v.wb.id], expect: refused(404) },
        {
          name: "list workflows",
          as: "admin",
          method: "list",
          params: ["Workflow", { limit: 100 }],
          expect: pageWhere("only A2's workflows", (w) => w.createdBy === env.people.admin.id)
        },
        { name: "findByField B2's workflow", as: "admin", method: "findByField", params: ["Workflow", "name", v.wb.name], expect: nothing },
        {
          name: "findFirst B2's workflow",
          as: "admin",
          method: "findFirst",
          params: ["Workflow", { createdBy: v.b2.id }],
          expect: nothing
        },
        { name: "count B2's workflows", as: "admin", method: "count", params: ["Workflow", { createdBy: v.b2.id }], expect: number(0) },
        {
          name: "update B2's workflow",
          as: "admin",
          method: "update",
          params: ["Workflow", v.wb.id, { description: "mine now" }],
          expect: refused(403)
        },
        {
          name: "take over B2's workflow (upsert)",
          as: "admin",
          method: "upsert",
          params: [
            "Workflow",
            "name",
            v.wb.name,
            { trigger: "manual", triggerConfig: {}, steps: [], createdBy: env.people.admin.id },
            { createdBy: env.people.admin.id }
          ],
          expect: refused(403)
        },
        { name: "delete B2's workflow", as: "admin", method: "delete", params: ["Workflow", v.wb.id], expect: refused(403) },
        {
          name: "read own workflow: no hidden fields",
          as: "admin",
          method: "read",
          params: ["Workflow", v.wa.id],
          expect: recordWhere(
            "A2's workflow without steps/triggerConfig",
            (w) => w.id === v.wa.id && !("steps" in w) && !("triggerConfig" in w)
          )
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      reportAttempts(env, "cross-user, single-record methods", figures)
      expect(problems).toEqual([])
    })

    it("the same read from A and from B gets each their own answer (the result cache on PostgreSQL)", async () => {
      const { b } = v
      const a = env.people.user
      const aValues = [a.id, a.username, a.email, a.token]
      // Each request is sent by A, then by B, then by A again: a cache keyed without the
      // caller's row filter would hand one the other's answer.
      const reads: ReadonlyArray<readonly [string, string, ReadonlyArray<unknown>, (p: Person) => Expect]> = [
        ["list", "User", [{ limit: 100 }], (p) => pageOf([p.id])],
        ["count", "User", [], () => number(1)],
        ["findFirst", "User", [], (p) => recordWhere("the caller's own row", (r) => r.id === p.id)],
        ["list", "User", [{ filter: { role: "user" }, sort: { username: "asc" } }], (p) => pageOf([p.id])],
        ["read", "User", [a.id], (p) => (p === a ? recordWhere("A's row", (r) => r.id === a.id) : refused(404))],
        ["findByField", "User", ["username", b.username], (p) => (p === b ? recordWhere("B's row", (r) => r.id === b.id) : nothing)]
      ]
      const attempts: Array<Attempt> = []
      for (const [round, p] of [
        [1, a],
        [2, b],
        [3, a]
      ] as const) {
        for (const [method, entity, rest, expectFor] of reads) {
          attempts.push({
            name: `${method} ${brief(rest)} (round ${round})`,
            as: "anonymous",
            method,
            params: [entity, ...rest],
            auth: p.auth,
            expect: expectFor(p),
            ...(p === b ? { secrets: aValues } : {})
          })
        }
      }
      const problems: Array<string> = []
      const figures: AttemptFigures = { attempts: 0, refused: 0, filtered: 0, leaks: 0, rowsChecked: 0 }
      // Rounds in order (each round pipelined), so that B asks what A's answers may have cached.
      for (let r = 0; r < 3; r++) {
        const round = await runAttempts(env, v, attempts.slice(r * reads.length, (r + 1) * reads.length))
        problems.push(...round.problems)
        for (const k of Object.keys(figures) as Array<keyof AttemptFigures>) figures[k] += round.figures[k]
      }
      const hits = await cacheHits(env)
      report("access", `cross-user, same reads by two users (${dialect})`, {
        cells: figures.attempts,
        allowed: figures.leaks,
        denied: figures.refused,
        filtered: figures.filtered,
        cross_user_attempts: figures.attempts,
        cache_hits: hits,
        leaks: figures.leaks
      })
      expect(problems).toEqual([])
      // The cache answered some of them (so what was checked includes cached answers).
      if (dialect === "postgresql") expect(hits).toBeGreaterThan(0)
    })

    it("include brings nothing of B's: refused where the included entity may not be read, filtered where R2 narrows", async () => {
      const attempts: Array<Attempt> = [
        { name: "sessions with their user", as: "user", method: "list", params: ["Session", { include: ["user"] }], expect: refused(403) },
        {
          name: "credentials with their user",
          as: "user",
          method: "list",
          params: ["Credential", { include: ["user"] }],
          expect: refused(403)
        },
        {
          name: "workflows with their creator",
          as: "user",
          method: "list",
          params: ["Workflow", { include: ["creator"] }],
          expect: refused(403)
        },
        {
          name: "scripts with their creator",
          as: "user",
          method: "list",
          params: ["LuaScript", { include: { creator: true } }],
          expect: refused(403)
        },
        {
          name: "components with their page",
          as: "user",
          method: "list",
          params: ["ComponentHierarchy", { include: ["page", "parent"] }],
          expect: refused(403)
        },
        {
          name: "packages with their installer",
          as: "user",
          method: "list",
          params: ["Package", { include: ["installer"] }],
          expect: refused(403)
        },
        {
          name: "credentials with their user",
          as: "admin",
          method: "list",
          params: ["Credential", { include: ["user"] }],
          expect: refused(403)
        },
        {
          name: "sessions with their user",
          as: "admin",
          method: "list",
          params: ["Session", { include: ["user"], filter: { userId: v.b.id } }],
          expect: refused(403)
        },
        {
          name: "sessions with their user",
          as: "supergod",
          method: "list",
          params: ["Session", { include: ["user"], filter: { userId: v.b.id } }],
          expect: refused(403)
        },
        {
          name: "packages with their installer",
          as: "admin",
          method: "list",
          params: ["Package", { include: ["installer"] }],
          expect: refused(403)
        },
        {
          name: "workflows with their creator",
          as: "admin",
          method: "list",
          params: ["Workflow", { include: ["creator"], limit: 100 }],
          expect: pageWhere(
            "only A2's workflows, creator A2, no hidden fields",
            (w) => w.createdBy === env.people.admin.id && isRec(w.creator) && w.creator.id === env.people.admin.id && !("steps" in w)
          )
        },
        {
          name: "B2's workflows with their creator",
          as: "admin",
          method: "list",
          params: ["Workflow", { include: ["creator"], filter: { OR: [{ createdBy: v.b2.id }, { name: v.wb.name }] } }],
          expect: emptyPage
        },
        {
          name: "include in a transaction",
          as: "user",
          method: "transaction",
          params: [[{ method: "list", params: ["Workflow", { include: ["creator"] }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "include in a transaction",
          as: "admin",
          method: "transaction",
          params: [[{ method: "list", params: ["Workflow", { include: ["creator"], filter: { createdBy: v.b2.id } }] }]],
          expect: results(emptyPage)
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      reportAttempts(env, "cross-user, include", figures)
      expect(problems).toEqual([])
    })

    it("bulk methods touch none of B's rows: updateMany, deleteMany, createMany with B as owner", async () => {
      const { b } = v
      const a = env.people.user
      const s = uid()
      const attempts: Array<Attempt> = [
        {
          name: "updateMany users by B's id (role)",
          as: "user",
          method: "updateMany",
          params: ["User", { id: b.id }, { role: "user" }],
          expect: refused(403, /may not be written/)
        },
        {
          name: "updateMany every user but A",
          as: "user",
          method: "updateMany",
          params: ["User", { id: { ne: a.id } }, { role: "user" }],
          expect: refused(403)
        },
        {
          name: "updateMany users (email)",
          as: "user",
          method: "updateMany",
          params: ["User", { username: b.username }, { email: `m_${s}@example.com` }],
          expect: refused(422)
        },
        { name: "deleteMany users by B's id", as: "user", method: "deleteMany", params: ["User", { id: b.id }], expect: refused(403) },
        { name: "deleteMany B's sessions", as: "user", method: "deleteMany", params: ["Session", { userId: b.id }], expect: refused(403) },
        {
          name: "updateMany B's sessions",
          as: "user",
          method: "updateMany",
          params: ["Session", { userId: b.id }, { expiresAt: later() }],
          expect: refused(403)
        },
        {
          name: "createMany sessions owned by B",
          as: "user",
          method: "createMany",
          params: ["Session", [{ userId: b.id, token: `hijack-many-${s}`, expiresAt: later() }]],
          expect: refused(403)
        },
        {
          name: "createMany a user with B's id",
          as: "user",
          method: "createMany",
          params: ["User", [{ id: b.id, username: `dup_${s}`, email: `dup_${s}@example.com` }]],
          expect: refused(422)
        },
        {
          name: "createMany an admin",
          as: "user",
          method: "createMany",
          params: ["User", [{ username: `esc_${s}`, email: `esc_${s}@example.com`, role: "admin" }]],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "createMany credentials for B",
          as: "user",
          method: "createMany",
          params: ["Credential", [{ username: b.username, passwordHash: "pwned" }]],
          expect: refused(403)
        },
        {
          name: "updateMany inactive pages",
          as: "user",
          method: "updateMany",
          params: ["PageView", { isActive: false }, { isActive: true }],
          expect: refused(403)
        },
        {
          name: "deleteMany inactive pages",
          as: "user",
          method: "deleteMany",
          params: ["PageView", { isActive: false }],
          expect: refused(403)
        },
        {
          name: "updateMany B2's workflows",
          as: "admin",
          method: "updateMany",
          params: ["Workflow", { createdBy: v.b2.id }, { isActive: false }],
          expect: refused(403)
        },
        {
          name: "deleteMany B2's workflows",
          as: "admin",
          method: "deleteMany",
          params: ["Workflow", { createdBy: v.b2.id }],
          expect: refused(403)
        },
        {
          name: "createMany workflows owned by B2",
          as: "admin",
          method: "createMany",
          params: ["Workflow", [{ name: `fake-${s}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy: v.b2.id }]],
          expect: refused(403)
        },
        {
          name: "create a workflow owned by B2",
          as: "admin",
          method: "create",
          params: ["Workflow", { name: `fake1-${s}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy: v.b2.id }],
          expect: refused(403)
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      expect(await sysOk<number>(env, "count", ["Session", { token: { startsWith: "hijack" } }])).toBe(0)
      expect(await sysOk<number>(env, "count", ["Workflow", { name: { startsWith: "fake" } }])).toBe(0)
      expect(await sysOk<number>(env, "count", ["User", { username: { in: [`dup_${s}`, `esc_${s}`] } }])).toBe(0)
      reportAttempts(env, "cross-user, bulk methods", figures)
      expect(problems).toEqual([])
    })

    it("transaction ops are decided one by one: refused ones roll back the caller's own writes too", async () => {
      const { b } = v
      const a = env.people.user
      const s = uid()
      const attempts: Array<Attempt> = [
        {
          name: "update own email, then B's",
          as: "user",
          method: "transaction",
          params: [
            [
              { method: "update", params: ["User", a.id, { email: `tx_${s}@example.com` }] },
              { method: "update", params: ["User", b.id, { email: `txb_${s}@example.com` }] }
            ]
          ],
          expect: txRefused(404, 1)
        },
        {
          name: "update own email, then create a session for B",
          as: "user",
          method: "transaction",
          params: [
            [
              { method: "update", params: ["User", a.id, { email: `tx2_${s}@example.com` }] },
              { method: "create", params: ["Session", { userId: b.id, token: `hijack-tx-${s}`, expiresAt: later() }] }
            ]
          ],
          expect: txRefused(403, 1)
        },
        {
          name: "read B",
          as: "user",
          method: "transaction",
          params: [[{ method: "read", params: ["User", b.id] }]],
          expect: txRefused(404, 0)
        },
        {
          name: "reads of B",
          as: "user",
          method: "transaction",
          params: [
            [
              { method: "list", params: ["User", { filter: { id: b.id } }] },
              { method: "count", params: ["User", { email: b.email }] },
              { method: "findFirst", params: ["User", { username: b.username }] },
              { method: "findByField", params: ["User", "email", b.email] }
            ]
          ],
          expect: results(emptyPage, number(0), nothing, nothing)
        },
        {
          name: "count B's sessions",
          as: "user",
          method: "transaction",
          params: [[{ method: "count", params: ["Session", { userId: b.id }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "updateMany B",
          as: "user",
          method: "transaction",
          params: [[{ method: "updateMany", params: ["User", { id: b.id }, { role: "user" }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "deleteMany B",
          as: "user",
          method: "transaction",
          params: [[{ method: "deleteMany", params: ["User", { id: b.id }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "upsert B",
          as: "user",
          method: "transaction",
          params: [
            [
              {
                method: "upsert",
                params: ["User", "username", b.username, { email: `u_${s}@example.com` }, { email: `v_${s}@example.com` }]
              }
            ]
          ],
          expect: txRefused(404, 0)
        },
        {
          name: "delete B's credential",
          as: "user",
          method: "transaction",
          params: [[{ method: "deleteByField", params: ["Credential", "username", b.username] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "B2's workflows",
          as: "admin",
          method: "transaction",
          params: [
            [
              { method: "list", params: ["Workflow", { filter: { createdBy: v.b2.id } }] },
              { method: "findByField", params: ["Workflow", "name", v.wb.name] },
              { method: "count", params: ["Workflow", { id: v.wb.id }] }
            ]
          ],
          expect: results(emptyPage, nothing, number(0))
        },
        {
          name: "update B2's workflow",
          as: "admin",
          method: "transaction",
          params: [[{ method: "update", params: ["Workflow", v.wb.id, { description: "x" }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "update a god",
          as: "admin",
          method: "transaction",
          params: [[{ method: "update", params: ["User", env.people.god.id, { email: `g_${s}@example.com` }] }]],
          expect: txRefused(404, 0)
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      expect(await sysOk<number>(env, "count", ["Session", { token: { startsWith: "hijack" } }])).toBe(0)
      reportAttempts(env, "cross-user, transaction ops", figures)
      expect(problems).toEqual([])
    })

    it("filters cannot reach past the row filter or test hidden fields", async () => {
      const { b } = v
      const a = env.people.user
      const attempts: Array<Attempt> = [
        {
          name: "OR with B's id",
          as: "user",
          method: "list",
          params: ["User", { filter: { OR: [{ id: b.id }, { id: a.id }] } }],
          expect: pageOf([a.id])
        },
        { name: "NOT A", as: "user", method: "list", params: ["User", { filter: { NOT: { id: a.id } } }], expect: emptyPage },
        {
          name: "B's email prefix",
          as: "user",
          method: "count",
          params: ["User", { email: { startsWith: b.email.slice(0, 8) } }],
          expect: number(0)
        },
        {
          name: "B's username in a list",
          as: "user",
          method: "count",
          params: ["User", { username: { in: [b.username, a.username] } }],
          expect: number(1)
        },
        {
          name: "every role",
          as: "user",
          method: "count",
          params: ["User", { role: { in: ["user", "admin", "god", "supergod"] } }],
          expect: number(1)
        },
        {
          name: "inactive OR active",
          as: "user",
          method: "count",
          params: ["PageView", { OR: [{ id: v.inactivePage.id }, { isActive: false }] }],
          expect: number(0)
        },
        {
          name: "sort cannot widen",
          as: "user",
          method: "list",
          params: ["User", { sort: { email: "desc" }, limit: 100 }],
          expect: pageOf([a.id])
        },
        // R2's read_fields leave out steps and triggerConfig: they cannot be tested either.
        {
          name: "filter on steps",
          as: "admin",
          method: "list",
          params: ["Workflow", { filter: { steps: { isNull: false } } }],
          expect: refused(403, /may not be read/)
        },
        {
          name: "count on triggerConfig",
          as: "admin",
          method: "count",
          params: ["Workflow", { triggerConfig: null }],
          expect: refused(403, /may not be read/)
        },
        {
          name: "findFirst on triggerConfig",
          as: "admin",
          method: "findFirst",
          params: ["Workflow", { triggerConfig: { isNull: true } }],
          expect: refused(403, /may not be read/)
        },
        {
          name: "hidden field inside OR",
          as: "admin",
          method: "list",
          params: ["Workflow", { filter: { OR: [{ id: v.wa.id }, { NOT: { steps: null } }] } }],
          expect: refused(403, /may not be read/)
        },
        {
          name: "hidden field in a transaction",
          as: "admin",
          method: "transaction",
          params: [[{ method: "count", params: ["Workflow", { steps: { isNull: true } }] }]],
          expect: txRefused(403, 0)
        },
        {
          name: "B2's workflows by creator",
          as: "admin",
          method: "list",
          params: ["Workflow", { filter: { OR: [{ createdBy: v.b2.id }, { createdBy: env.people.admin.id }] }, limit: 100 }],
          expect: pageWhere("only A2's", (w) => w.createdBy === env.people.admin.id)
        },
        {
          name: "B2's workflow name prefix",
          as: "admin",
          method: "count",
          params: ["Workflow", { name: { startsWith: String(v.wb.name).slice(0, 4) }, createdBy: { ne: env.people.admin.id } }],
          expect: number(0)
        },
        // never_expose fields (Credential.passwordHash) cannot be tested by anyone, system included;
        // a user, who may not read Credential at all, gets the access decision's 403 first.
        {
          name: "filter on passwordHash",
          as: "system",
          method: "count",
          params: ["Credential", { passwordHash: { startsWith: "bhash" } }],
          expect: refused(422)
        },
        {
          name: "filter on passwordHash",
          as: "user",
          method: "count",
          params: ["Credential", { passwordHash: { startsWith: "bhash" } }],
          expect: refused(403)
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      reportAttempts(env, "cross-user, filters and hidden fields", figures)
      expect(problems).toEqual([])
    })

    it("forged identities, role escalation and higher-ranked accounts are refused", async () => {
      const { b } = v
      const a = env.people.user
      const g = env.people.god
      const s = uid()
      const attempts: Array<Attempt> = [
        {
          name: "A's token claiming B's id",
          as: "anonymous",
          method: "read",
          params: ["User", b.id],
          auth: { token: a.token, user_id: b.id },
          expect: refused(401)
        },
        {
          name: "authenticate A's token as B",
          as: "anonymous",
          method: "authenticate",
          params: [{ token: a.token, user_id: b.id }],
          expect: refused(401)
        },
        {
          name: "B's session id as a token",
          as: "anonymous",
          method: "read",
          params: ["User", b.id],
          auth: { token: b.sessionId },
          expect: refused(401)
        },
        {
          name: "B's id as a token",
          as: "anonymous",
          method: "count",
          params: ["User"],
          auth: { token: b.id, user_id: b.id },
          expect: refused(401)
        },
        { name: "A raises their role", as: "user", method: "update", params: ["User", a.id, { role: "admin" }], expect: refused(403) },
        {
          name: "A renames to B",
          as: "user",
          method: "update",
          params: ["User", a.id, { username: `${b.username}x` }],
          expect: refused(403, /may not be written/)
        },
        {
          name: "A creates an admin",
          as: "user",
          method: "create",
          params: ["User", { username: `esc1_${s}`, email: `esc1_${s}@example.com`, role: "admin" }],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "A creates a user with B's id",
          as: "user",
          method: "create",
          params: ["User", { id: b.id, username: `dup1_${s}`, email: `dup1_${s}@example.com` }],
          expect: refused(422)
        },
        // The rank guard: an admin does not reach a god's account.
        {
          name: "update a god",
          as: "admin",
          method: "update",
          params: ["User", g.id, { email: `g1_${s}@example.com` }],
          expect: refused(404)
        },
        {
          name: "updateByField a god",
          as: "admin",
          method: "updateByField",
          params: ["User", "username", g.username, { email: `g2_${s}@example.com` }],
          expect: refused(404)
        },
        {
          name: "upsert a god",
          as: "admin",
          method: "upsert",
          params: ["User", "username", g.username, { email: `g3_${s}@example.com` }, { email: `g4_${s}@example.com` }],
          expect: refused(404)
        },
        {
          name: "demote a god (updateMany)",
          as: "admin",
          method: "updateMany",
          params: ["User", { id: g.id }, { role: "admin" }],
          expect: number(0)
        },
        { name: "delete a god", as: "admin", method: "delete", params: ["User", g.id], expect: refused(404) },
        { name: "deleteByField a god", as: "admin", method: "deleteByField", params: ["User", "email", g.email], expect: refused(404) },
        { name: "deleteMany a god", as: "admin", method: "deleteMany", params: ["User", { id: g.id }], expect: number(0) },
        {
          name: "promote B to god",
          as: "admin",
          method: "update",
          params: ["User", b.id, { role: "god" }],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "promote users to god (updateMany)",
          as: "admin",
          method: "updateMany",
          params: ["User", { id: b.id }, { role: "god" }],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "promote self to god",
          as: "admin",
          method: "update",
          params: ["User", env.people.admin.id, { role: "god" }],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "create a god",
          as: "admin",
          method: "create",
          params: ["User", { username: `esc2_${s}`, email: `esc2_${s}@example.com`, role: "god" }],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "createMany a god",
          as: "admin",
          method: "createMany",
          params: ["User", [{ username: `esc3_${s}`, email: `esc3_${s}@example.com`, role: "god" }]],
          expect: refused(403, /no_role_escalation/)
        },
        {
          name: "upsert a new god",
          as: "admin",
          method: "upsert",
          params: ["User", "username", `esc4_${s}`, { email: `esc4_${s}@example.com`, role: "god" }, { role: "god" }],
          expect: refused(403, /no_role_escalation/)
        }
      ]
      const { problems, figures } = await runAttempts(env, v, attempts)
      const whoG = await whoIs(env, g.token)
      expect(whoG.result).toEqual({ authenticated: true, userId: g.id, role: "god" })
      expect(await sysOk<number>(env, "count", ["User", { username: { startsWith: "esc" } }])).toBe(0)

      // An expired session of B's is no credential at all.
      const expired = `sess-expired-${uid()}`
      await sysOk(env, "create", ["Session", { userId: b.id, token: expired, expiresAt: new Date(Date.now() - 60_000).toISOString() }])
      const viaExpired = await call(env, env.clients.anonymous, "read", ["User", b.id], { token: expired })
      expect(viaExpired.error?.code, brief(viaExpired)).toBe(401)
      // A role change applies to the very next request (the session cache forgets the user at once).
      const x = await person(env, "admin")
      const before = await call(env, env.clients.anonymous, "count", ["Workflow"], x.auth)
      expect(before.result, brief(before)).toBe(0)
      await sysOk(env, "update", ["User", x.id, { role: "user" }])
      const after = await call(env, env.clients.anonymous, "count", ["Workflow"], x.auth)
      expect(after.error?.code, `demoted admin: ${brief(after)}`).toBe(403)
      figures.attempts += 3
      figures.refused += 3
      reportAttempts(env, "cross-user, identities and ranks", figures)
      expect(problems).toEqual([])
    })
  })
}
