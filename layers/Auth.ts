/**
 * Auth layer: three kinds of token, tried in this order.
 * - Service tokens of the configuration (role `system`), compared in constant time.
 * - JWTs (when `security.auth.jwt.enabled`): signature, `exp`, `nbf`, `iss`, `aud` checked;
 *   `sub` is the user id, the role comes from the configured claim.
 * - Session tokens: a row of Session (`token`, `userId`, `expiresAt`) joined to its User for
 *   the current role. Remembered at most `session_cache_ttl` seconds, forgotten at once when the
 *   daemon writes Session or User, and the expiry is checked on every request.
 * Service tokens are re-read from the configuration file (and its `token_file`s) on SIGHUP; a
 * token the new file no longer has stays valid for `rotation_overlap` seconds, so that clients
 * can move to the new one without a request failing.
 * `auth.user_id`, when given, must name the principal. Failed attempts are counted per remote
 * address (see makeFailedAuthThrottle); past `failed_auth` the address gets 429 before its token
 * is even looked at.
 */
import { Cause, Effect, Exit, Layer, Metric, Option, Redacted, Runtime } from "effect"
import * as jose from "jose"
import { createHash, timingSafeEqual } from "node:crypto"
import * as fs from "node:fs"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { loadConfig } from "./Config.js"
import { RateLimited, Unauthorized, Unavailable } from "../src/Errors.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"
import { authLockouts } from "../src/Metrics.js"
import { decodeValue } from "../src/query/Codec.js"
import { storableText } from "../src/entity/Validate.js"
import { Auth, type Credentials } from "../src/services/Auth.js"
import { Changes } from "../src/services/Changes.js"
import { Database, type DatabaseShape } from "../src/services/Database.js"
import { isUserRole, type Principal, type UserRole } from "../src/services/Principal.js"
import { makeMemory } from "../src/limits/TokenBucket.js"

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()
/**
 * The digest of a credentials object's token, made once per object: a connection that called
 * `authenticate`, or that sends the same auth with every request (the handler then passes the
 * previous request's object, `Connection.sentAuth`), presents the same object each time, and
 * hashing it again each time showed in the profile of the request path (bench/handler-micro.ts:
 * 5–10 % of a read's CPU).
 */
const tokenDigests = new WeakMap<Credentials, Buffer>()
const digestOf = (creds: Credentials): Buffer => {
  let d = tokenDigests.get(creds)
  if (d === undefined) {
    d = digest(creds.token)
    tokenDigests.set(creds, d)
  }
  return d
}
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/
const MAX_CACHED_SESSIONS = 10_000

interface ServiceDigest {
  readonly name: string
  readonly digest: Buffer
}

const digestsOf = (
  tokens: ReadonlyArray<{ readonly name: string; readonly token: Redacted.Redacted<string> }>
): ReadonlyArray<ServiceDigest> => tokens.map((t) => ({ name: t.name, digest: digest(Redacted.value(t.token)) }))

/**
 * The service tokens in force: the current ones, and the ones a reload removed, each valid until
 * its overlap ends. A token the reload keeps (or brings back) is current, never retired.
 */
export const makeServiceTokens = (
  initial: ReadonlyArray<{ readonly name: string; readonly token: Redacted.Redacted<string> }>,
  now: () => number = Date.now
) => {
  let current = digestsOf(initial)
  let retired: ReadonlyArray<ServiceDigest & { readonly until: number }> = []
  const has = (list: ReadonlyArray<ServiceDigest>, d: Buffer) => list.some((s) => s.digest.equals(d))

  /** Puts `next` in force; the tokens it drops stay valid for `overlapMs`. */
  const replace = (next: ReadonlyArray<{ readonly name: string; readonly token: Redacted.Redacted<string> }>, overlapMs: number) => {
    const t = now()
    const nextDigests = digestsOf(next)
    const dropped = current.filter((c) => !has(nextDigests, c.digest)).map((c) => ({ ...c, until: t + overlapMs }))
    retired = [...retired.filter((r) => r.until > t), ...dropped].filter((r) => r.until > t && !has(nextDigests, r.digest))
    current = nextDigests
    return { current: current.length, retired: dropped.length }
  }

  /** The name of the token with this digest, when it is in force. */
  const match = (d: Buffer): string | undefined => {
    // Every current token is compared (constant time each), so that the time does not say which matched.
    let name: string | undefined
    for (const s of current) if (timingSafeEqual(s.digest, d)) name = s.name
    if (name !== undefined || retired.length === 0) return name
    const t = now()
    for (const r of retired) if (r.until > t && timingSafeEqual(r.digest, d)) name = r.name
    return name
  }

  return { replace, match }
}

type Verify = (token: string) => Promise<jose.JWTVerifyResult>

/**
 * Builds the JWT verifier from the configuration: keys of files are read once, at start; a
 * `jwks_url` is fetched when needed and again when a token names a key it does not hold.
 */
export const makeJwtVerifier = async (cfg: DaemonConfig["security"]["auth"]["jwt"]): Promise<Verify | undefined> => {
  if (!cfg.enabled) return undefined
  const options: jose.JWTVerifyOptions = {
    algorithms: [...cfg.algorithms],
    clockTolerance: cfg.clock_tolerance,
    ...(cfg.issuer === undefined ? {} : { issuer: cfg.issuer }),
    ...(cfg.audience === undefined ? {} : { audience: cfg.audience })
  }
  if (cfg.jwks_url !== undefined) {
    // jose caches the set, and fetches it again for a key id it does not hold (a rotation).
    const jwks = jose.createRemoteJWKSet(new URL(cfg.jwks_url), {
      cacheMaxAge: cfg.jwks_cache_max_age * 1000,
      cooldownDuration: cfg.jwks_cooldown * 1000,
      timeoutDuration: 5000
    })
    return (token) => jose.jwtVerify(token, jwks, options)
  }
  if (cfg.jwks_file !== undefined) {
    const jwks = jose.createLocalJWKSet(JSON.parse(fs.readFileSync(cfg.jwks_file, "utf8")) as jose.JSONWebKeySet)
    return (token) => jose.jwtVerify(token, jwks, options)
  }
  if (cfg.public_key_file !== undefined) {
    // One key, imported for each listed algorithm it fits (an RSA key for RS256, an EC P-256 key
    // for ES256, ...); a token is verified with the import for its header's algorithm.
    const pem = fs.readFileSync(cfg.public_key_file, "utf8")
    const keys = new Map<string, jose.CryptoKey>()
    for (const alg of cfg.algorithms.filter((a) => !a.startsWith("HS"))) {
      const key = await jose.importSPKI(pem, alg).catch(() => undefined)
      if (key !== undefined) keys.set(alg, key)
    }
    if (keys.size === 0) throw new Error("security.auth.jwt.public_key_file: the key fits none of security.auth.jwt.algorithms")
    return (token) =>
      jose.jwtVerify(
        token,
        (header) => {
          const key = keys.get(header.alg ?? "")
          if (key === undefined) throw new jose.errors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`)
          return key
        },
        options
      )
  }
  if (cfg.secret !== undefined) {
    const key = new TextEncoder().encode(Redacted.value(cfg.secret))
    return (token) => jose.jwtVerify(token, key, options)
  }
  return undefined
}

/**
 * The failed-authentication throttle of this process: a token bucket per remote address. Every
 * attempt takes (reserves) a token before its credential is looked at and gives it back when the
 * credential is accepted: attempts in flight at once (pipelined on one connection, or on many)
 * cannot all pass a check made before any of them had failed. An attempt that finds the bucket
 * empty while attempts of its address are still in flight waits for them, since their tokens may
 * come back; with none in flight it is refused. The moment an address's bucket runs empty is
 * logged (WARN) and counted once per lockout.
 */
export const makeFailedAuthThrottle = (cfg: DaemonConfig["security"]["auth"]["failed_auth"], now: () => number = Date.now) => {
  const bucket = makeMemory({ requestsPerMinute: cfg.per_minute, burst: cfg.burst })
  const inFlight = new Map<string, { count: number; readonly waiters: Array<() => void> }>()
  const lockedUntil = new Map<string, number>()
  const refused = (retryAfter: number) => new RateLimited({ retryAfter, reason: "too many failed authentications from this address" })

  const reserve = (address: string): Effect.Effect<void, RateLimited> =>
    Effect.suspend(() => {
      const limited = bucket.check(address, true)
      const pending = inFlight.get(address)
      if (limited === undefined) {
        if (pending === undefined) inFlight.set(address, { count: 1, waiters: [] })
        else pending.count++
        return Effect.void
      }
      if (pending === undefined) return Effect.fail(refused(limited.retryAfter))
      const settled = Effect.async<void>((resume) => {
        const wake = () => resume(Effect.void)
        pending.waiters.push(wake)
        return Effect.sync(() => {
          const i = pending.waiters.indexOf(wake)
          if (i >= 0) pending.waiters.splice(i, 1)
        })
      })
      return Effect.zipRight(settled, reserve(address))
    })

  const lockedOut = (address: string): Effect.Effect<void> => {
    const limited = bucket.check(address, false)
    const t = now()
    if (limited === undefined || (lockedUntil.get(address) ?? 0) > t) return Effect.void
    if (lockedUntil.size >= 10_000) for (const [a, until] of lockedUntil) if (until <= t) lockedUntil.delete(a)
    lockedUntil.set(address, t + limited.retryAfter * 1000)
    return Effect.zipRight(
      Metric.increment(authLockouts),
      Effect.logWarning(
        `failed authentications: address ${address} is locked out (every request from it gets 429 for about ${limited.retryAfter} s; failed_auth burst ${cfg.burst}, per_minute ${cfg.per_minute})`
      )
    )
  }

  const settle = (address: string, failed: boolean): Effect.Effect<void> =>
    Effect.suspend(() => {
      const pending = inFlight.get(address)
      if (pending !== undefined) {
        pending.count--
        if (pending.count <= 0) inFlight.delete(address)
        for (const wake of pending.waiters.splice(0)) wake()
      }
      if (!failed) {
        bucket.refund(address)
        return Effect.void
      }
      return lockedOut(address)
    })

  /** Runs `attempt` under the throttle: a 401 it fails with is charged to `address`. */
  const guard = <A, E extends { readonly _tag: string }>(
    address: string,
    attempt: Effect.Effect<A, E>
  ): Effect.Effect<A, E | RateLimited> =>
    Effect.zipRight(
      reserve(address),
      Effect.onExit(attempt, (exit) =>
        settle(address, Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), (e) => e._tag === "Unauthorized"))
      )
    )

  /**
   * An attempt decided without I/O and accepted: `guard`'s reservation and its refund at once
   * (nothing can run between them). False when the address's bucket is empty: `guard` decides.
   */
  const admitNow = (address: string): boolean => {
    if (bucket.check(address, true) !== undefined) return false
    bucket.refund(address)
    return true
  }

  return { guard, admitNow }
}

/**
 * A failure to fetch `jwks_url` (network, timeout, not 200, not a key set), which says nothing
 * about the token: answered 503 and not charged as a failed authentication.
 */
const keySetUnreachable = (e: unknown): boolean =>
  e instanceof jose.errors.JWKSTimeout ||
  e instanceof jose.errors.JWKSInvalid ||
  (e instanceof jose.errors.JOSEError && e.code === "ERR_JOSE_GENERIC") ||
  !(e instanceof jose.errors.JOSEError)

interface CachedSession {
  readonly principal: Principal & { readonly expiresAt: number }
  readonly cachedAt: number
}

const sessionLookup = (db: DatabaseShape, registry: EntityRegistryShape) => {
  const session = registry.entities.get("Session")
  const user = registry.entities.get("User")
  const token = session?.byName.get("token")
  const userId = session?.byName.get("userId")
  const expiresAt = session?.byName.get("expiresAt")
  const role = user?.byName.get("role")
  if (
    session === undefined ||
    user === undefined ||
    token === undefined ||
    userId === undefined ||
    expiresAt === undefined ||
    role === undefined
  ) {
    return undefined
  }
  const { sql, dialect } = db
  return (value: string) =>
    sql<
      Record<string, unknown>
    >`SELECT s.${sql(userId.column)} AS uid, s.${sql(expiresAt.column)} AS exp, u.${sql(role.column)} AS role FROM ${sql(session.table)} s JOIN ${sql(user.table)} u ON u.${sql(user.primaryKey.column)} = s.${sql(userId.column)} WHERE s.${sql(token.column)} = ${value}`.pipe(
      Effect.map((rows) => {
        const r = rows[0]
        if (r === undefined || !isUserRole(r.role)) return Option.none<{ userId: string; role: UserRole; expiresAt: number }>()
        return Option.some({
          userId: String(r.uid),
          role: r.role,
          expiresAt: Date.parse(String(decodeValue(dialect, expiresAt, r.exp)))
        })
      }),
      Effect.mapError(() => new Unavailable({ reason: "sessions cannot be checked: the database does not answer" }))
    )
}

export const make = Effect.gen(function* () {
  const cfg = yield* AppConfig
  const db = yield* Database
  const registry = yield* EntityRegistry
  const changes = yield* Changes
  const authCfg = cfg.security.auth
  // Digests have equal lengths, so the comparison time does not depend on the token's length.
  const services = makeServiceTokens(authCfg.service_tokens)
  yield* reloadOnHangup(cfg, services)
  const verifyJwt = yield* Effect.promise(() => makeJwtVerifier(authCfg.jwt))
  const lookup = sessionLookup(db, registry)
  const ttlMs = authCfg.session_cache_ttl * 1000
  const cache = new Map<string, CachedSession>()
  // Bumped by every invalidation: a lookup that was in flight across one read the old rows and
  // must not be cached (it would outlive the delete or role change by up to the TTL).
  let generation = 0
  yield* changes.subscribe((entity) => {
    if (entity === "Session" || entity === "User") {
      generation++
      cache.clear()
    }
  })
  const throttle = makeFailedAuthThrottle(authCfg.failed_auth)

  const matchUser = (principal: Principal, creds: Credentials): Effect.Effect<Principal, Unauthorized> =>
    creds.userId !== undefined && creds.userId !== principal.userId
      ? Effect.fail(new Unauthorized({ reason: "user_id does not match the token" }))
      : Effect.succeed(principal)

  const service = (creds: Credentials): Principal | undefined => {
    const match = services.match(digestOf(creds))
    return match === undefined ? undefined : { userId: match, role: "system", via: "service-token" }
  }

  const jwt = (verify: Verify, creds: Credentials): Effect.Effect<Principal, Unauthorized | Unavailable> =>
    Effect.tryPromise({ try: () => verify(creds.token), catch: (e) => e }).pipe(
      Effect.mapError((e) =>
        authCfg.jwt.jwks_url !== undefined && keySetUnreachable(e)
          ? new Unavailable({ reason: "JWTs cannot be checked: the key set (jwks_url) cannot be fetched" })
          : new Unauthorized({
              reason:
                e instanceof jose.errors.JWTExpired
                  ? "the token has expired"
                  : e instanceof jose.errors.JWTClaimValidationFailed
                    ? `the token's ${e.claim} claim is not accepted`
                    : "the token's signature or format is not valid"
            })
      ),
      Effect.flatMap(({ payload }) => {
        const role = payload[authCfg.jwt.role_claim]
        if (typeof payload.sub !== "string" || payload.sub.length === 0)
          return Effect.fail(new Unauthorized({ reason: "the token has no subject (sub)" }))
        if (!isUserRole(role))
          return Effect.fail(new Unauthorized({ reason: `the token's ${authCfg.jwt.role_claim} claim is not a user role` }))
        return Effect.succeed<Principal>({
          userId: payload.sub,
          role,
          via: "jwt",
          ...(typeof payload.exp === "number" ? { expiresAt: payload.exp * 1000 } : {})
        })
      })
    )

  const session = (creds: Credentials): Effect.Effect<Principal, Unauthorized | Unavailable> =>
    Effect.gen(function* () {
      // A token no session can hold (NUL, invalid Unicode) is not looked up: PostgreSQL refuses
      // such a parameter, which would be answered 503 and escape the failed-auth throttle.
      if (lookup === undefined || !storableText(creds.token)) return yield* new Unauthorized({ reason: "unknown or expired token" })
      const now = Date.now()
      let entry = cache.get(creds.token)
      if (entry === undefined || now - entry.cachedAt >= ttlMs) {
        const before = generation
        const found = yield* lookup(creds.token)
        if (Option.isNone(found)) {
          cache.delete(creds.token)
          return yield* new Unauthorized({ reason: "unknown or expired token" })
        }
        entry = {
          principal: { userId: found.value.userId, role: found.value.role, via: "session", expiresAt: found.value.expiresAt },
          cachedAt: now
        }
        if (ttlMs > 0 && before === generation) {
          if (cache.size >= MAX_CACHED_SESSIONS) cache.delete(cache.keys().next().value!)
          cache.set(creds.token, entry)
        }
      }
      if (!(entry.principal.expiresAt > now)) return yield* new Unauthorized({ reason: "unknown or expired token" })
      return entry.principal
    })

  /** A session remembered and still valid, or undefined (to be looked up, or refused, by `session`). */
  const knownSession = (creds: Credentials): Principal | undefined => {
    const entry = cache.get(creds.token)
    if (entry === undefined) return undefined
    const now = Date.now()
    return now - entry.cachedAt < ttlMs && entry.principal.expiresAt > now ? entry.principal : undefined
  }

  const recheck = (creds: Credentials): Effect.Effect<Principal, Unauthorized | Unavailable> =>
    Effect.suspend((): Effect.Effect<Principal, Unauthorized | Unavailable> => {
      const svc = service(creds)
      return svc !== undefined
        ? matchUser(svc, creds)
        : Effect.flatMap(verifyJwt !== undefined && JWT_SHAPE.test(creds.token) ? jwt(verifyJwt, creds) : session(creds), (p) =>
            matchUser(p, creds)
          )
    })

  const authenticate = (creds: Credentials, remoteAddress: string): Effect.Effect<Principal, Unauthorized | Unavailable | RateLimited> =>
    throttle.guard(remoteAddress, recheck(creds))

  const known = (creds: Credentials, remoteAddress: string): Principal | undefined => {
    const principal = service(creds) ?? (verifyJwt !== undefined && JWT_SHAPE.test(creds.token) ? undefined : knownSession(creds))
    if (principal === undefined || (creds.userId !== undefined && creds.userId !== principal.userId)) return undefined
    return throttle.admitNow(remoteAddress) ? principal : undefined
  }

  return { authenticate, recheck, known }
})

/**
 * SIGHUP re-reads the configuration file and puts its service tokens in force (the old ones that
 * it drops stay valid for its `rotation_overlap`). A file that does not load changes nothing and
 * is logged. Only a daemon that has a configuration file listens (not the in-process client).
 */
const reloadOnHangup = Effect.fn("Auth.reloadOnHangup")(function* (cfg: DaemonConfig, services: ReturnType<typeof makeServiceTokens>) {
  if (!fs.existsSync(cfg.sourcePath)) return
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const reload = loadConfig(cfg.sourcePath).pipe(
    Effect.flatMap((next) => {
      const auth = next.security.auth
      const n = services.replace(auth.service_tokens, auth.rotation_overlap * 1000)
      return Effect.logInfo(
        `service tokens reloaded: ${n.current} in force` +
          (n.retired > 0 ? `, ${n.retired} replaced (still valid for ${auth.rotation_overlap} s)` : "")
      )
    }),
    Effect.catchAll((e) => Effect.logError(`service tokens not reloaded, keeping the current ones: ${e.problems.join("; ")}`))
  )
  const onHup = () => runFork(reload)
  process.on("SIGHUP", onHup)
  yield* Effect.addFinalizer(() => Effect.sync(() => process.off("SIGHUP", onHup)))
})

export const layer = Layer.scoped(Auth, make)
