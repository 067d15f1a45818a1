/**
 * The RPC handler's pipeline (src/rpc/Handler.ts) with the request services stubbed
 * (test/support/layers.ts): authentication, rate limit, access decision, audit and the answer's
 * shape. The database is a stub that dies when used where the test is not about SQL, and a real
 * in-memory SQLite database where a request must run.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import * as DatabaseLive from "../../layers/Database.js"
import * as Entities from "../../layers/Entities.js"
import { layer as handlerLayer } from "../../layers/RpcHandler.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import type { Acl } from "../../src/services/Acl.js"
import { Auth } from "../../src/services/Auth.js"
import { Database, type DatabaseShape } from "../../src/services/Database.js"
import type { RateLimiter } from "../../src/services/RateLimiter.js"
import type { Answer, Rec } from "../support/types.js"
import {
  AclTest,
  AuditLogTest,
  type AuditLogTestOptions,
  AuditTrail,
  AuthTest,
  ChangesTest,
  ChangesTrail,
  ConfigTest,
  makeTestLayer,
  RateLimiterTest,
  ResultCacheTest,
  testCredentials,
  testPrincipal
} from "../support/layers.js"

interface Stubs {
  readonly auth?: Layer.Layer<Auth>
  readonly acl?: Layer.Layer<Acl>
  readonly limiter?: Layer.Layer<RateLimiter>
  readonly audit?: AuditLogTestOptions
  /** A real in-memory SQLite database (migrated) instead of the stub that dies when used. */
  readonly sqlite?: boolean
  /** Wraps the database the handler gets (the migrated one stays underneath). */
  readonly wrapDatabase?: (db: DatabaseShape) => DatabaseShape
}

/** The real handler over the stubs (defaults: a fixed principal, allow-all, unlimited, memory audit, no cache). */
const handlerWith = (s: Stubs = {}) => {
  const base = Layer.provideMerge(Entities.layer, ConfigTest())
  const database = s.sqlite === true ? DatabaseLive.layer : makeTestLayer(Database)({})
  const wrapped =
    s.wrapDatabase === undefined ? database : Layer.provideMerge(Layer.effect(Database, Effect.map(Database, s.wrapDatabase)), database)
  const withDatabase = Layer.provideMerge(wrapped, base)
  const services = Layer.mergeAll(
    s.auth ?? AuthTest.fixed(),
    s.acl ?? AclTest.allowAll,
    s.limiter ?? RateLimiterTest.unlimited,
    AuditLogTest.memory(s.audit),
    ResultCacheTest.none,
    ChangesTest.recording()
  )
  return Layer.provideMerge(handlerLayer, Layer.merge(services, withDatabase))
}

const newConnection = (): Connection => ({ remoteAddress: "192.0.2.10", auth: undefined })

let seq = 0
/** Sends one request (with the test's credentials unless `auth` is null) and parses the answer. */
const call = (method: string, params: ReadonlyArray<unknown>, auth: Rec | null = testCredentials, conn = newConnection()) =>
  Effect.gen(function* () {
    const handler = yield* RpcHandler
    const id = `h${++seq}`
    const text = yield* handler.handle(conn, JSON.stringify({ id, method, params, ...(auth === null ? {} : { auth }) }))
    const answer = JSON.parse(text) as Answer
    expect(answer.id).toBe(id)
    return answer
  })

/** The one audit record of request `id`. */
const auditOf = (id: unknown) =>
  Effect.map(AuditTrail, ({ entries }) => {
    const mine = entries.filter((e) => e.record.requestId === id)
    expect(mine, `audit records of ${String(id)}`).toHaveLength(1)
    return mine[0]!
  })

/** `{id, error: {code, message, details?}}` and nothing else; returns the error. */
const expectError = (a: Answer, code: number) => {
  expect(a.error, JSON.stringify(a)).toBeDefined()
  expect(Object.keys(a).sort()).toEqual(["error", "id"])
  expect(a.error!.code).toBe(code)
  expect(typeof a.error!.message).toBe("string")
  for (const k of Object.keys(a.error!)) expect(["code", "message", "details"]).toContain(k)
  return a.error!
}

const newUser = () => {
  const s = `${Date.now().toString(36)}${++seq}`
  return { username: `u_${s}`, email: `u_${s}@example.com` }
}

describe("makeTestLayer", () => {
  it.effect("uses the methods given; any other dies naming the service and the method", () =>
    Effect.gen(function* () {
      const given = yield* Effect.provide(
        Effect.flatMap(Auth, (a) => a.authenticate({ token: "t" }, "r")),
        makeTestLayer(Auth)({ authenticate: () => Effect.succeed(testPrincipal) })
      )
      expect(given).toEqual(testPrincipal)
      const exit = yield* Effect.exit(
        Effect.provide(
          Effect.flatMap(Auth, (a) => a.authenticate({ token: "t" }, "r")),
          makeTestLayer(Auth)({})
        )
      )
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : "")).toContain('dbal/Auth: method "authenticate" is not implemented')
    })
  )
})

describe("handler pipeline without a database", () => {
  it.effect("a request without credentials is 401 and audited without a principal", () =>
    Effect.gen(function* () {
      const a = yield* call("list", ["User"], null)
      const e = expectError(a, 401)
      expect(e.message).toBe("Authentication required")
      const { record, durable } = yield* auditOf(a.id)
      expect(record).toMatchObject({
        operation: "list",
        entity: "User",
        success: false,
        errorCode: 401,
        error: "UNAUTHORIZED",
        userId: null,
        role: null
      })
      expect(record.remoteAddress).toBe("192.0.2.10")
      expect(durable).toBe(false)
    }).pipe(Effect.provide(handlerWith()))
  )

  it.effect("credentials the Auth service refuses are 401", () =>
    Effect.gen(function* () {
      const a = yield* call("list", ["User"], { token: "not-the-token", user_id: testPrincipal.userId })
      expectError(a, 401)
      expect((yield* auditOf(a.id)).record.errorCode).toBe(401)
    }).pipe(Effect.provide(handlerWith({ auth: AuthTest.token("the-token") })))
  )

  it.effect("an exhausted limiter answers 429 with retryAfter, audited under the principal", () =>
    Effect.gen(function* () {
      const a = yield* call("list", ["User"])
      const e = expectError(a, 429)
      expect(e.message).toBe("Rate limit exceeded")
      expect(e.details?.retryAfter).toBe(7)
      const { record } = yield* auditOf(a.id)
      expect(record).toMatchObject({
        success: false,
        errorCode: 429,
        error: "RATE_LIMIT_EXCEEDED",
        userId: testPrincipal.userId,
        role: testPrincipal.role
      })
    }).pipe(Effect.provide(handlerWith({ limiter: RateLimiterTest.exhausted(7) })))
  )

  // Params that validation refuses (422 under allow-all, below) are 403 under deny-all: the
  // decision comes first, so a refused caller learns nothing about the entity's fields.
  const invalidCreate = ["User", { no_such_field: 1, email: 42 }] as const

  it.effect("deny-all answers 403 before any validation of the params", () =>
    Effect.gen(function* () {
      const a = yield* call("create", invalidCreate)
      const e = expectError(a, 403)
      expect(e.message).toBe("Access forbidden")
      expect(JSON.stringify(e)).not.toContain("no_such_field")
      expect((yield* auditOf(a.id)).record).toMatchObject({
        operation: "create",
        entity: "User",
        success: false,
        errorCode: 403,
        error: "FORBIDDEN"
      })
    }).pipe(Effect.provide(handlerWith({ acl: AclTest.denyAll })))
  )

  it.effect("the same params under allow-all are refused by validation (422)", () =>
    Effect.gen(function* () {
      const a = yield* call("create", invalidCreate)
      expectError(a, 422)
    }).pipe(Effect.provide(handlerWith()))
  )

  it.effect("a write is refused with 503 when the audit log is not ready, before the database is used", () =>
    Effect.gen(function* () {
      // The stub database dies when used: a write that ran would answer 500, not 503.
      const a = yield* call("create", ["User", newUser()])
      expect(expectError(a, 503).message).toBe("Database unavailable")
      expect((yield* auditOf(a.id)).record).toMatchObject({ success: false, errorCode: 503, error: "DATABASE_ERROR" })
    }).pipe(Effect.provide(handlerWith({ audit: { notReadyForWrites: true } })))
  )

  it.effect("a malformed frame is 400 with id null", () =>
    Effect.gen(function* () {
      const handler = yield* RpcHandler
      const a = JSON.parse(yield* handler.handle(newConnection(), "{not json")) as Answer
      expect(a.id).toBeNull()
      expect(Object.keys(a).sort()).toEqual(["error", "id"])
      expect(a.error?.code).toBe(400)
    }).pipe(Effect.provide(handlerWith()))
  )

  it.effect("a defect is 500 without its text, and still audited", () =>
    Effect.gen(function* () {
      // allow-all, so the request reaches the stub database, which dies naming itself.
      const a = yield* call("list", ["User"])
      const e = expectError(a, 500)
      expect(JSON.stringify(e)).not.toMatch(/dbal\/Database|not implemented|at /)
      expect((yield* auditOf(a.id)).record).toMatchObject({ success: false, errorCode: 500, error: "INTERNAL_ERROR" })
    }).pipe(Effect.provide(handlerWith()))
  )

  it.effect("credentials at the upgrade: accepted ones are bound, each attempt audited as connect", () =>
    Effect.gen(function* () {
      const handler = yield* RpcHandler
      const refused = newConnection()
      const failed = yield* Effect.flip(handler.authenticateConnection(refused, { token: "wrong" }))
      expect(failed._tag).toBe("Unauthorized")
      expect(refused.auth).toBeUndefined()
      const conn = newConnection()
      const principal = yield* handler.authenticateConnection(conn, { token: "the-token" })
      expect(principal).toEqual(testPrincipal)
      expect(conn.auth).toEqual({ token: "the-token" })
      const connects = (yield* AuditTrail).entries.filter((e) => e.record.operation === "connect").map((e) => e.record)
      expect(connects).toMatchObject([
        { success: false, errorCode: 401, userId: null, requestId: null },
        { success: true, userId: testPrincipal.userId, requestId: null }
      ])
    }).pipe(Effect.provide(handlerWith({ auth: AuthTest.token("the-token") })))
  )

  it.effect("authenticate binds the credentials to the connection for later frames", () =>
    Effect.gen(function* () {
      const conn = newConnection()
      const first = yield* call("authenticate", [testCredentials], null, conn)
      expect(first.result).toEqual({ authenticated: true, userId: testPrincipal.userId, role: testPrincipal.role })
      const later = yield* call("getCapabilities", [], null, conn)
      expect(later.error, JSON.stringify(later)).toBeUndefined()
      expect(Object.keys(later).sort()).toEqual(["id", "result"])
      expect((yield* auditOf(later.id)).record).toMatchObject({ success: true, userId: testPrincipal.userId })
      const stranger = yield* call("getCapabilities", [], null)
      expectError(stranger, 401)
    }).pipe(Effect.provide(handlerWith()))
  )
})

describe("handler pipeline on in-memory SQLite", () => {
  it.layer(handlerWith({ sqlite: true }))("allow-all", (it) => {
    it.effect("a write is audited as a durable success with the created id, and announced", () =>
      Effect.gen(function* () {
        const a = yield* call("create", ["User", newUser()])
        expect(a.error, JSON.stringify(a)).toBeUndefined()
        const id = (a.result as Rec).id
        expect(typeof id).toBe("string")
        const { record, durable } = yield* auditOf(a.id)
        expect(durable).toBe(true)
        expect(record).toMatchObject({ operation: "create", entity: "User", success: true, recordIds: [id], userId: testPrincipal.userId })
        expect(record.errorCode).toBeUndefined()
        expect((yield* ChangesTrail).published).toContain("User")
      })
    )

    it.effect("a failed read is audited with its code and the id it aimed at", () =>
      Effect.gen(function* () {
        const missing = "00000000-0000-4000-8000-00000000dead"
        const a = yield* call("read", ["User", missing])
        expectError(a, 404)
        const { record, durable } = yield* auditOf(a.id)
        expect(durable).toBe(false)
        expect(record).toMatchObject({ operation: "read", success: false, errorCode: 404, error: "NOT_FOUND", recordIds: [missing] })
      })
    )
  })

  // A value JSON cannot carry (a BigInt where a string is expected) in the rows every SELECT reads.
  const unencodable = (db: DatabaseShape): DatabaseShape => ({
    ...db,
    query: (statement) =>
      Effect.map(db.query(statement), (rows) =>
        statement.compile()[0].startsWith("SELECT") ? rows.map((r) => ("username" in r ? { ...r, username: 10n } : r)) : rows
      )
  })
  it.layer(handlerWith({ sqlite: true, wrapDatabase: unencodable }))("an answer that cannot be encoded", (it) => {
    it.effect("is a 500, and the request is audited all the same", () =>
      Effect.gen(function* () {
        const created = yield* call("create", ["User", newUser()])
        expect(created.error, JSON.stringify(created)).toBeUndefined()
        const a = yield* call("read", ["User", (created.result as Rec).id])
        expectError(a, 500)
        const { record } = yield* auditOf(a.id)
        expect(record).toMatchObject({ operation: "read", entity: "User" })
      })
    )
  })

  it.layer(handlerWith({ sqlite: true, audit: { notReadyForWrites: true } }))("audit log not ready", (it) => {
    it.effect("writes are refused and not run; reads still answer", () =>
      Effect.gen(function* () {
        const user = newUser()
        expectError(yield* call("create", ["User", user]), 503)
        const found = yield* call("count", ["User", { username: user.username }])
        expect(found.error, JSON.stringify(found)).toBeUndefined()
        expect(found.result).toBe(0)
      })
    )
  })

  it.layer(handlerWith({ sqlite: true, audit: { failDurable: true } }))("audit record cannot be written", (it) => {
    it.effect("a write that ran but could not be recorded is not acknowledged (503)", () =>
      Effect.gen(function* () {
        const user = newUser()
        expectError(yield* call("create", ["User", user]), 503)
        // It did run (the record is what failed): the row is there.
        const found = yield* call("count", ["User", { username: user.username }])
        expect(found.result).toBe(1)
      })
    )
  })
})
