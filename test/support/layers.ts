/**
 * Test doubles of the request services, for tests about something other than those services
 * (the handler's pipeline, the answer shape): each is a Layer a test combines with the real ones
 * it is about. `makeTestLayer` is the helper of Effect's http-server example (lib/Layer.ts): the
 * methods a test gives are used, any other one dies naming itself, so that a stub never answers
 * something a test did not choose.
 */
import { Context, Effect, Either, Layer, Schema } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { AppConfig, ConfigFile, type DaemonConfig } from "../../src/Config.js"
import { Forbidden, RateLimited, Unauthorized, Unavailable } from "../../src/Errors.js"
import type { EntityDef } from "../../src/entity/Model.js"
import { TRUE } from "../../src/query/Filter.js"
import { Acl, type Decision } from "../../src/services/Acl.js"
import { AuditLog, type AuditRecord } from "../../src/services/AuditLog.js"
import { Auth, type Credentials } from "../../src/services/Auth.js"
import { Changes } from "../../src/services/Changes.js"
import type { Principal } from "../../src/services/Principal.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { ResultCache } from "../../src/services/ResultCache.js"

const unimplemented = (service: string, prop: string) => {
  const dead = Effect.die(`${service}: method "${prop}" is not implemented in this test`)
  // Both a function (a method called) and an Effect (a property yielded) that dies.
  function fail() {
    return dead
  }
  Object.assign(fail, dead)
  Object.setPrototypeOf(fail, Object.getPrototypeOf(dead))
  return fail
}

/** `impl` with every other string-keyed property an unimplemented method (symbols and `then` stay absent). */
export const makeUnimplementedProxy = <S extends object>(service: string, impl: Partial<S>): S =>
  new Proxy({ ...impl } as S, {
    get(target, prop) {
      if (prop in target) return (target as Record<PropertyKey, unknown>)[prop]
      if (typeof prop === "symbol" || prop === "then") return undefined
      return ((target as Record<PropertyKey, unknown>)[prop] = unimplemented(service, prop))
    }
  })

/** A Layer of `tag` from the methods given; any other method dies when used. */
export const makeTestLayer =
  <I, S extends object>(tag: Context.Tag<I, S>) =>
  (service: Partial<S>): Layer.Layer<I> =>
    Layer.succeed(tag, makeUnimplementedProxy(tag.key, service))

// ---------------------------------------------------------------------------------------------
// Configuration

/**
 * The daemon's configuration decoded from `doc` (a config file's content) as the Config layer
 * decodes it, on an in-memory SQLite database, the shipped entities, audit and rate limits handled
 * by the stubs. The Config layer reads a file; tests of the handler need no file.
 */
export const testConfig = (doc: Record<string, unknown> = {}): DaemonConfig => {
  const cfg = Schema.decodeUnknownSync(ConfigFile)(
    { database: { adapter: "sqlite", connection: { filename: ":memory:" }, auto_migrate: true }, ...doc },
    { errors: "all", onExcessProperty: "error" }
  )
  const root = fileURLToPath(new URL("../..", import.meta.url))
  return { ...cfg, sourcePath: path.join(root, "<test>"), entitiesDir: path.join(root, "config", "entities") }
}

export const ConfigTest = (doc?: Record<string, unknown>): Layer.Layer<AppConfig> => Layer.succeed(AppConfig, testConfig(doc))

// ---------------------------------------------------------------------------------------------
// Auth

export const testPrincipal: Principal = { userId: "00000000-0000-4000-8000-000000000001", role: "user", via: "session" }

/** The credentials every request of a test sends. */
export const testCredentials = { token: "test-token", user_id: testPrincipal.userId } as const

export const AuthTest = {
  /** Any credentials name `principal`. */
  fixed: (principal: Principal = testPrincipal) =>
    makeTestLayer(Auth)({ authenticate: () => Effect.succeed(principal), known: () => principal }),
  /** Credentials are `principal`'s only with this token; others are refused (401). */
  token: (token: string, principal: Principal = testPrincipal) =>
    makeTestLayer(Auth)({
      authenticate: (c: Credentials) =>
        c.token === token ? Effect.succeed(principal) : Effect.fail(new Unauthorized({ reason: "invalid credentials" })),
      // Refused credentials have no plain form: `authenticate` answers them.
      known: (c: Credentials) => (c.token === token ? principal : undefined)
    })
}

// ---------------------------------------------------------------------------------------------
// Acl

/** What a principal allowed everything gets: every row, every exposed field, every writable field. */
export const fullDecision = (entity: EntityDef): Decision => ({
  rowFilter: TRUE,
  readable: entity.exposed,
  writable: entity.fields.filter((f) => !f.generated && !f.primary)
})

export const AclTest = {
  allowAll: makeTestLayer(Acl)({
    decide: (_p, entity) => Effect.succeed(fullDecision(entity)),
    decideNow: (_p, entity) => Either.right(fullDecision(entity)),
    readable: (_p, entity) => Effect.succeed(entity.exposed)
  }),
  denyAll: makeTestLayer(Acl)({
    decide: (_p, entity, op) => Effect.fail(new Forbidden({ reason: `test: ${op} on ${entity.name} is denied` })),
    decideNow: (_p, entity, op) => Either.left(new Forbidden({ reason: `test: ${op} on ${entity.name} is denied` })),
    readable: () => Effect.succeed(undefined)
  })
}

// ---------------------------------------------------------------------------------------------
// RateLimiter

export const RateLimiterTest = {
  unlimited: makeTestLayer(RateLimiter)({ consume: () => Effect.void, take: () => undefined }),
  /** Every request is over the limit. */
  exhausted: (retryAfter = 7) =>
    makeTestLayer(RateLimiter)({ consume: () => Effect.fail(new RateLimited({ retryAfter })), take: () => new RateLimited({ retryAfter }) })
}

// ---------------------------------------------------------------------------------------------
// AuditLog

export interface AuditEntry {
  readonly record: AuditRecord
  readonly durable: boolean
}

/** The records the in-memory audit log was given, in order, for assertions. */
export class AuditTrail extends Context.Tag("test/AuditTrail")<AuditTrail, { readonly entries: ReadonlyArray<AuditEntry> }>() {}

export interface AuditLogTestOptions {
  /** `ready` fails for writes (a log that cannot take records: writes are refused). */
  readonly notReadyForWrites?: boolean
  /** `record` fails for durable records (the disk is full): a write is then not acknowledged. */
  readonly failDurable?: boolean
}

export const AuditLogTest = {
  /** Keeps every record in memory (see `AuditTrail`). */
  memory: (options: AuditLogTestOptions = {}): Layer.Layer<AuditLog | AuditTrail> => {
    const entries: Array<AuditEntry> = []
    return Layer.merge(
      makeTestLayer(AuditLog)({
        record: (record, durable) =>
          durable && options.failDurable === true
            ? Effect.fail(new Unavailable({ reason: "test: audit log cannot write" }))
            : Effect.sync(() => void entries.push({ record, durable })),
        ready: (write) =>
          write && options.notReadyForWrites === true ? Effect.fail(new Unavailable({ reason: "test: audit log not ready" })) : Effect.void
      }),
      Layer.succeed(AuditTrail, { entries })
    )
  }
}

// ---------------------------------------------------------------------------------------------
// ResultCache, Changes

export const ResultCacheTest = {
  /** No cache: every read computes. */
  none: makeTestLayer(ResultCache)({ through: (_key, _entities, compute) => compute })
}

/** The entities announced as written, in order. */
export class ChangesTrail extends Context.Tag("test/ChangesTrail")<ChangesTrail, { readonly published: ReadonlyArray<string> }>() {}

export const ChangesTest = {
  noop: makeTestLayer(Changes)({ publish: () => Effect.void, subscribe: () => Effect.void }),
  /** Keeps the entities published (see `ChangesTrail`). */
  recording: (): Layer.Layer<Changes | ChangesTrail> => {
    const published: Array<string> = []
    return Layer.merge(
      makeTestLayer(Changes)({ publish: (e) => Effect.sync(() => void published.push(e)), subscribe: () => Effect.void }),
      Layer.succeed(ChangesTrail, { published })
    )
  }
}
