/**
 * Shared setup of the access-rule suites (acl*.test.ts): the daemon's core layers in this process
 * (test/support/inprocess.ts) answering frames through the real RpcHandler, a database per suite,
 * principals of each user role with session tokens, record factories for the eight entities, and
 * rules-file writing. No sleeps: waits are bounded polls.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ManagedRuntime } from "effect"
import { expect } from "vitest"
import type { RpcHandler } from "../../src/rpc/Handler.js"
import { type InProcess, startInProcess } from "../support/inprocess.js"
import { uid } from "../support/ids.js"
import type { Answer, Rec, WireError } from "../support/types.js"
import {
  createDatabase,
  daemonConfig,
  type DialectName,
  serviceAuth,
  type TestDatabase,
  tempDir,
  writeConfig
} from "../support/services.js"

export type { Answer, Rec, WireError }
export { uid }
export type Auth = { readonly token: string; readonly user_id: string }

export const ACL_DIALECTS = ["sqlite", "postgresql"] as const satisfies ReadonlyArray<DialectName>
export const USER_ROLES = ["user", "admin", "god", "supergod"] as const
export type UserRole = (typeof USER_ROLES)[number]

export interface Principal {
  readonly id: string
  readonly role: UserRole
  readonly username: string
  readonly auth: Auth
}

export interface AclDaemonOptions {
  /** Contents of the rules file (written to a temporary file), or an existing file's path. */
  readonly rules?: string | { readonly file: string }
  readonly cacheTtl?: number
  readonly neverExpose?: ReadonlyArray<string>
}

export interface AclDaemon {
  readonly dialect: DialectName
  /** Absolute path of the rules file (when one is configured). */
  readonly rulesFile: string | undefined
  readonly runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  /** Sends one request (default auth: the service principal) and returns the parsed answer. */
  readonly call: (method: string, params: ReadonlyArray<unknown>, auth?: Auth) => Promise<Answer>
  /** As `call`, expecting success. */
  readonly ok: <T = unknown>(method: string, params: ReadonlyArray<unknown>, auth?: Auth) => Promise<T>
  /** As `call`, expecting an error with this code. */
  readonly fail: (code: number, method: string, params: ReadonlyArray<unknown>, auth?: Auth) => Promise<WireError>
  /** Creates a User of this role and a Session for it (as system). */
  readonly principal: (role: UserRole) => Promise<Principal>
  readonly dispose: () => Promise<void>
}

const describeCall = (method: string, params: ReadonlyArray<unknown>, auth: Auth) =>
  `${method} ${JSON.stringify(params).slice(0, 240)} as ${auth.user_id}`

/** Starts the core layers on a fresh database of `dialect`. */
export const startAclDaemon = async (dialect: DialectName, opts: AclDaemonOptions = {}): Promise<AclDaemon> => {
  const db: TestDatabase = await createDatabase(dialect)
  const dir = tempDir("acl")
  let rulesFile: string | undefined
  if (typeof opts.rules === "string") {
    rulesFile = path.join(dir, "acl_rules.yaml")
    fs.writeFileSync(rulesFile, opts.rules)
  } else if (opts.rules !== undefined) rulesFile = path.resolve(opts.rules.file)
  const base = daemonConfig(db)
  const security = {
    ...(base.security as Rec),
    auth: {
      service_tokens: [{ name: "tests", token: serviceAuth.token }],
      session_cache_ttl: 0,
      failed_auth: { burst: 1000, per_minute: 1000 }
    },
    rate_limit: { enabled: false },
    acl: { ...(rulesFile === undefined ? {} : { rules_file: rulesFile }), cache_ttl: opts.cacheTtl ?? 0 },
    ...(opts.neverExpose === undefined ? {} : { never_expose: opts.neverExpose })
  }
  const file = writeConfig({ ...base, security }, dir)
  let daemon: InProcess
  try {
    daemon = await startInProcess(file)
  } catch (e) {
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
  const rt = daemon.runtime
  let next = 0

  const call: AclDaemon["call"] = async (method, params, auth = serviceAuth) => {
    const id = `a${++next}`
    const text = await daemon.handle(JSON.stringify({ id, method, params, auth }))
    const a = JSON.parse(text) as Answer
    expect(a.id).toBe(id)
    return a
  }
  const ok: AclDaemon["ok"] = async <T>(method: string, params: ReadonlyArray<unknown>, auth: Auth = serviceAuth) => {
    const a = await call(method, params, auth)
    expect(a.error, `${describeCall(method, params, auth)} failed: ${JSON.stringify(a.error)}`).toBeUndefined()
    return a.result as T
  }
  const fail: AclDaemon["fail"] = async (code, method, params, auth = serviceAuth) => {
    const a = await call(method, params, auth)
    expect(a.error?.code, `${describeCall(method, params, auth)}: expected ${code}, got ${JSON.stringify(a).slice(0, 400)}`).toBe(code)
    expect(a.result).toBeUndefined()
    return a.error!
  }
  const principal: AclDaemon["principal"] = async (role) => {
    const username = `acl_${role}_${uid()}`
    const u = await ok<Rec>("create", ["User", { username, email: `${username}@example.com`, role }])
    const token = `sess-${randomBytes(24).toString("hex")}`
    await ok("create", ["Session", { userId: u.id, token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }])
    return { id: String(u.id), role, username, auth: { token, user_id: String(u.id) } }
  }
  return {
    dialect,
    rulesFile,
    runtime: rt,
    call,
    ok,
    fail,
    principal,
    dispose: async () => {
      try {
        await rt.dispose()
      } finally {
        await db.drop()
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }
  }
}

/** Principals of every user role. */
export const allPrincipals = async (d: AclDaemon): Promise<Record<UserRole, Principal>> => ({
  user: await d.principal("user"),
  admin: await d.principal("admin"),
  god: await d.principal("god"),
  supergod: await d.principal("supergod")
})

export const ENTITIES = ["User", "Credential", "Session", "PageView", "ComponentHierarchy", "Workflow", "LuaScript", "Package"] as const
export type EntityName = (typeof ENTITIES)[number]

/** A unique field of each entity's create data, to look a record up as system. */
export const KEY: Record<EntityName, string> = {
  User: "username",
  Credential: "username",
  Session: "token",
  PageView: "slug",
  ComponentHierarchy: "componentType",
  Workflow: "name",
  LuaScript: "name",
  Package: "name"
}

/** A field change every entity accepts, with a fresh value. */
export const change = (entity: EntityName): Rec => {
  const s = uid()
  switch (entity) {
    case "User":
      return { email: `c_${s}@example.com` }
    case "Credential":
      return { firstLogin: false }
    case "Session":
      return { expiresAt: new Date(Date.now() + 7_200_000 + Math.floor(Math.random() * 1000) * 1000).toISOString() }
    case "PageView":
      return { title: `Changed ${s}` }
    case "ComponentHierarchy":
      return { componentType: `Changed${s}` }
    case "Workflow":
    case "LuaScript":
    case "Package":
      return { description: `changed ${s}` }
  }
}

/**
 * Valid create data for each entity (referenced rows are created first as system), and a
 * harmless field change for updates.
 */
export const factories = (d: AclDaemon, ownerId: string) => {
  const user = async (role: UserRole = "user"): Promise<Rec> => {
    const s = uid()
    return d.ok<Rec>("create", ["User", { username: `f_${s}`, email: `f_${s}@example.com`, role }])
  }
  const page = async (over: Rec = {}): Promise<Rec> => {
    const s = uid()
    return d.ok<Rec>("create", ["PageView", { slug: `p-${s}`, title: `Page ${s}`, level: 1, layout: { s }, ...over }])
  }
  const data = async (entity: EntityName): Promise<Rec> => {
    const s = uid()
    switch (entity) {
      case "User":
        return { username: `n_${s}`, email: `n_${s}@example.com` }
      case "Credential": {
        const u = await user()
        return { username: u.username, passwordHash: `hash-${s}` }
      }
      case "Session":
        return { userId: ownerId, token: `tok-${s}`, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }
      case "PageView":
        return { slug: `p-${s}`, title: `Page ${s}`, level: 1, layout: { s } }
      case "ComponentHierarchy": {
        const p = await page()
        return { pageId: p.id, componentType: `Box${s}`, order: 0, props: { s } }
      }
      case "Workflow":
        return { name: `wf-${s}`, trigger: "manual", triggerConfig: {}, steps: [], createdBy: ownerId }
      case "LuaScript":
        return { name: `lua-${s}`, code: "return 1", createdBy: ownerId }
      case "Package":
        return { name: `pkg-${s}`, version: "1.0.0", author: "tests", manifest: { s } }
    }
  }
  /** A record created as system. */
  const record = async (entity: EntityName): Promise<Rec> => d.ok<Rec>("create", [entity, await data(entity)])
  return { user, page, data, record, change }
}

/** Rewrites a file so that its size changes too (the Acl layer compares mtime and size). */
export const rewrite = (file: string, text: string) => {
  const before = fs.existsSync(file) ? fs.statSync(file).size : -1
  let body = text
  while (Buffer.byteLength(body) === before) body += "\n"
  fs.writeFileSync(file, body)
}

export { until } from "../support/wait.js"
