/**
 * `token` (development helper): credentials for trying the daemon out.
 * - `token session`: a Session row for a user, created in this process through the daemon's own
 *   layers as the system principal (the RpcHandler with the configuration's first service token,
 *   so the access rules, validation and the audit log apply as to any request).
 * - `token jwt`: a JWT signed with the configured HS* secret, issuer, audience and role claim.
 * Tokens are printed on stdout (that is the point) and never logged.
 */
import { Effect, Logger, Redacted } from "effect"
import * as jose from "jose"
import { randomBytes } from "node:crypto"
import type { DaemonConfig } from "../../src/Config.js"
import { EntityRegistry } from "../../src/entity/Model.js"
import { isUuid } from "../../src/entity/Validate.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import type { UserRole } from "../../src/services/Principal.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as Application from "../Application.js"
import { problem } from "./errors.js"
import { levels, out, stderrLogging } from "./output.js"
import { isRecord } from "../../src/Json.js"

/** Name of the service token used when the configuration has none (it lives in this process only). */
const EPHEMERAL_SERVICE = "dbal-cli"

interface Answer {
  readonly result?: unknown
  readonly error?: { readonly code?: unknown; readonly message?: unknown; readonly details?: unknown }
}

/** One line for a refused request (field errors included, values never). */
const explain = (what: string, error: NonNullable<Answer["error"]>): string => {
  const fields =
    isRecord(error.details) && Array.isArray(error.details.fields)
      ? error.details.fields
          .filter(isRecord)
          .map((f) => `${String(f.field)}: ${String(f.error)}`)
          .join("; ")
      : ""
  return `token session: ${what}: ${String(error.code ?? "?")} ${String(error.message ?? "error")}${fields === "" ? "" : ` (${fields})`}`
}

export interface CreatedSession {
  readonly token: string
  readonly userId: string
  readonly expiresAt: string
}

/** Creates a Session for `user` (a user id or a username) valid for `ttlSeconds`. */
export const createSession = (cfg: DaemonConfig, user: string, ttlSeconds: number) => {
  const first = cfg.security.auth.service_tokens[0]
  const service = first ?? { name: EPHEMERAL_SERVICE, token: Redacted.make(randomBytes(32).toString("base64url")) }
  const config: DaemonConfig =
    first === undefined ? { ...cfg, security: { ...cfg.security, auth: { ...cfg.security.auth, service_tokens: [service] } } } : cfg
  return Effect.gen(function* () {
    const registry = yield* EntityRegistry
    const handler = yield* RpcHandler
    const session = registry.entities.get("Session")
    const userEntity = registry.entities.get("User")
    const missing = ["token", "userId", "expiresAt"].filter((f) => session?.byName.get(f) === undefined)
    if (userEntity === undefined || session === undefined || missing.length > 0) {
      return yield* problem(
        "token session: the entities have no sessions (a User entity and a Session entity with token, userId and expiresAt fields are needed)"
      )
    }
    const conn: Connection = { remoteAddress: "cli", auth: undefined }
    const auth = { token: Redacted.value(service.token), user_id: service.name }
    let next = 0
    const call = (method: string, params: ReadonlyArray<unknown>) =>
      handler
        .handle(conn, JSON.stringify({ id: `cli-${++next}`, method, params, auth }))
        .pipe(Effect.map((text) => JSON.parse(text) as Answer))

    let userId: string | undefined
    if (isUuid(user)) {
      const read = yield* call("read", ["User", user])
      if (read.error === undefined && isRecord(read.result)) userId = String(read.result.id)
      else if (read.error !== undefined && read.error.code !== 404) return yield* problem(explain(`reading User ${user}`, read.error))
    }
    if (userId === undefined && userEntity.byName.has("username")) {
      const listed = yield* call("list", ["User", { filter: { username: user }, limit: 2 }])
      if (listed.error !== undefined) return yield* problem(explain(`looking up the username ${JSON.stringify(user)}`, listed.error))
      const data = isRecord(listed.result) && Array.isArray(listed.result.data) ? listed.result.data.filter(isRecord) : []
      if (data[0] !== undefined) userId = String(data[0].id)
    }
    if (userId === undefined) {
      return yield* problem(
        `token session: no user with ${userEntity.byName.has("username") ? "the id or username" : "the id"} ${JSON.stringify(user)}`
      )
    }

    const token = randomBytes(32).toString("base64url")
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000).toISOString()
    const created = yield* call("create", ["Session", { userId, token, expiresAt }])
    if (created.error !== undefined) return yield* problem(explain("creating the Session", created.error))
    return { token, userId, expiresAt } satisfies CreatedSession
  }).pipe(Effect.provide(Application.coreWith(ConfigLayer.layerValue(config))))
}

export interface MintedJwt {
  readonly token: string
  readonly algorithm: string
  readonly expiresAt: string
}

/** A JWT the daemon accepts for `sub` with `role` (security.auth.jwt with an HS* secret). */
export const mintJwt = (cfg: DaemonConfig, sub: string, role: UserRole, ttlSeconds: number) =>
  Effect.gen(function* () {
    const jwt = cfg.security.auth.jwt
    const file = cfg.sourcePath
    if (!jwt.enabled) {
      return yield* problem(`${file}: security.auth.jwt.enabled is false: the daemon accepts no JWTs (set it to true, with a secret)`)
    }
    const alg = jwt.algorithms.find((a) => a.startsWith("HS"))
    if (alg === undefined || jwt.secret === undefined) {
      return yield* problem(
        `${file}: security.auth.jwt.secret: no HS* shared secret is configured (token jwt signs with HS256/HS384/HS512 only; public-key setups need the issuer's private key)`
      )
    }
    const secret = jwt.secret
    const now = Math.floor(Date.now() / 1000)
    const exp = now + ttlSeconds
    const token = yield* Effect.tryPromise({
      try: () => {
        let builder = new jose.SignJWT({ [jwt.role_claim]: role })
          .setProtectedHeader({ alg, typ: "JWT" })
          .setSubject(sub)
          .setIssuedAt(now)
          .setExpirationTime(exp)
        if (jwt.issuer !== undefined) builder = builder.setIssuer(jwt.issuer)
        if (jwt.audience !== undefined) builder = builder.setAudience(jwt.audience)
        return builder.sign(new TextEncoder().encode(Redacted.value(secret)))
      },
      catch: (e) => problem(`token jwt: cannot sign (${e instanceof Error ? e.message : String(e)})`)
    })
    return { token, algorithm: alg, expiresAt: new Date(exp * 1000).toISOString() } satisfies MintedJwt
  })

/** `token session`: prints the token, the user id and the expiry. */
export const sessionProgram = (file: string, user: string, ttl: number) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const s = yield* createSession(cfg, user, ttl).pipe(Effect.provide(Logger.minimumLogLevel(levels[cfg.logging.level])))
    yield* out([`token: ${s.token}`, `user_id: ${s.userId}`, `expires_at: ${s.expiresAt}`])
  }).pipe(Effect.provide(stderrLogging))

/** `token jwt`: prints the JWT, the user id and the expiry. */
export const jwtProgram = (file: string, sub: string, role: UserRole, ttl: number) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const t = yield* mintJwt(cfg, sub, role, ttl)
    yield* out([`token: ${t.token}`, `user_id: ${sub}`, `expires_at: ${t.expiresAt}`])
  })
