/**
 * Authentication over a real WebSocket against the live daemon (in process) on each database:
 * every failure mode answers 401 with the standard error shape, the success paths (service token,
 * session token with the user's current role, JWT HS256 and ES256) give the right principal,
 * `authenticate` once per connection, session expiry and deletion seen by long-lived connections
 * at once (with a session cache of 60 s), and failed authentications throttled per remote address.
 */
import { generateKeyPairSync } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as jose from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client, connect } from "../support/daemon.js"
import { createDatabase, SERVICE_TOKEN, serviceAuth, skipDialect, type TestDatabase, tempDir } from "../support/services.js"
import {
  connectFrom,
  createSession,
  createUser,
  DIALECTS,
  expectError,
  expectOk,
  expectRateLimited,
  type InProcessDaemon,
  inSeconds,
  securityConfig,
  signJwt,
  startInProcess,
  until
} from "./harness.js"

const HS_SECRET = "hs256-secret-for-the-security-tests-0123456789"
const ISSUER = "https://issuer.test"
const AUDIENCE = "dbal-daemon-tests"
const hsKey = new TextEncoder().encode(HS_SECRET)
const now = () => Math.floor(Date.now() / 1000)

interface Authenticated {
  readonly authenticated: boolean
  readonly userId: string
  readonly role: string
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`authentication on ${dialect}`, () => {
    let db: TestDatabase | undefined
    let daemon: InProcessDaemon | undefined
    let system: Client
    const clients: Array<Client> = []
    const open = async (auth?: Record<string, unknown>) => {
      const c = await connect(daemon!.port, auth)
      clients.push(c)
      return c
    }

    beforeAll(async () => {
      db = await createDatabase(dialect)
      daemon = await startInProcess(
        securityConfig(db, {
          auth: {
            service_tokens: [{ name: "tests", token: SERVICE_TOKEN }],
            // Long enough that only the daemon's own invalidation can explain a change seen at once.
            session_cache_ttl: 60,
            // This suite fails on purpose many times from 127.0.0.1; throttling has its own suite.
            failed_auth: { burst: 100_000, per_minute: 100_000 },
            jwt: { enabled: true, algorithms: ["HS256"], secret: HS_SECRET, issuer: ISSUER, audience: AUDIENCE }
          }
        })
      )
      system = await open(serviceAuth)
    })

    afterAll(async () => {
      for (const c of clients) await c.close()
      await daemon?.dispose()
      await db?.drop()
    })

    describe("failures: 401 with the standard error shape", () => {
      it("missing auth", async () => {
        const c = await open()
        const e = expectError(await c.call("count", ["User"], null), 401, "no auth")
        expect(typeof e.details?.reason).toBe("string")
      })

      it("unknown token (plain and JWT-shaped)", async () => {
        const c = await open()
        expectError(await c.call("count", ["User"], { token: "no-such-token-0123456789", user_id: "tests" }), 401, "unknown token")
        expectError(await c.call("count", ["User"], { token: "aaaa.bbbb.cccc", user_id: "tests" }), 401, "JWT-shaped garbage")
        expectError(
          await c.call("authenticate", [{ token: "no-such-token-0123456789", user_id: "tests" }], null),
          401,
          "authenticate, unknown"
        )
      })

      it("expired session (expiresAt in the past)", async () => {
        const u = await createUser(system)
        const s = await createSession(system, u.id, inSeconds(-60))
        const c = await open()
        expectError(await c.call("count", ["User"], { token: s.token, user_id: u.id }), 401, "expired session")
        expectError(await c.call("authenticate", [{ token: s.token, user_id: u.id }], null), 401, "authenticate, expired session")
      })

      it("deleted session stops working at once, although sessions are cached for 60 s", async () => {
        const u = await createUser(system)
        const s = await createSession(system, u.id, inSeconds(3600))
        const auth = { token: s.token, user_id: u.id }
        // One connection authenticated once, one sending auth with every request; both warm the cache.
        const once = await open()
        expect(expectOk<Authenticated>(await once.call("authenticate", [auth], null))).toMatchObject({ userId: u.id, role: "user" })
        expectOk(await once.call("read", ["User", u.id], null), "read self (authenticated connection)")
        const each = await open(auth)
        expectOk(await each.call("read", ["User", u.id]), "read self (auth per request)")

        expect(expectOk(await system.call("delete", ["Session", s.id]), "delete Session")).toBe(true)

        expectError(await once.call("read", ["User", u.id], null), 401, "authenticated connection after the delete")
        expectError(await each.call("read", ["User", u.id]), 401, "auth per request after the delete")
        expectError(await (await open()).call("authenticate", [auth], null), 401, "new authenticate after the delete")
      })

      it("a session deleted while lookups of it are in flight is not cached by them (stress: 40 rounds)", async () => {
        // Lookups that read the row before the delete committed but finish after the daemon's
        // invalidation must not put it back into the cache (it would work for up to 60 s more).
        const u = await createUser(system)
        const c = await open()
        const stale: Array<number> = []
        for (let round = 0; round < 40; round++) {
          const s = await createSession(system, u.id, inSeconds(3600))
          const auth = { token: s.token, user_id: u.id }
          const inFlight = Array.from({ length: 10 }, () => c.call("read", ["User", u.id], auth))
          expect(expectOk(await system.call("delete", ["Session", s.id]), "delete Session")).toBe(true)
          for (const a of await Promise.all(inFlight)) if (a.error !== undefined) expectError(a, 401, "concurrent with the delete")
          if ((await c.call("read", ["User", u.id], auth)).error?.code !== 401) stale.push(round)
        }
        expect(stale, "rounds where the deleted session still worked").toEqual([])
      })

      it("user mismatch (auth.user_id is not the principal's user)", async () => {
        const u = await createUser(system)
        const other = await createUser(system)
        const s = await createSession(system, u.id, inSeconds(3600))
        const c = await open()
        expectOk(await c.call("read", ["User", u.id], { token: s.token, user_id: u.id }), "matching user_id")
        expectError(await c.call("read", ["User", u.id], { token: s.token, user_id: other.id }), 401, "session, other user's id")
        expectError(
          await c.call("read", ["User", u.id], { token: s.token, userId: other.id }),
          401,
          "session, other user's id (userId alias)"
        )
        expectError(await c.call("count", ["User"], { token: SERVICE_TOKEN, user_id: u.id }), 401, "service token, a user's id")
        const jwt = await signJwt(hsKey, "HS256", { sub: u.id, role: "user", iss: ISSUER, aud: AUDIENCE })
        expectError(await c.call("read", ["User", u.id], { token: jwt, user_id: other.id }), 401, "JWT, not its sub")
        expectError(await c.call("authenticate", [{ token: s.token, user_id: other.id }], null), 401, "authenticate, mismatch")
      })

      it("JWT: bad signature, tampered payload, expired, not yet valid, wrong iss/aud, bad role or sub, unexpected alg", async () => {
        const sub = "jwt-user-1"
        const c = await open()
        const good = { sub, role: "admin", iss: ISSUER, aud: AUDIENCE }
        const call = async (token: string, what: string) =>
          expectError(await c.call("getCapabilities", [], { token, user_id: sub }), 401, what)

        await call(await signJwt(new TextEncoder().encode(`${HS_SECRET}-but-another`), "HS256", good), "signed with another secret")
        const valid = await signJwt(hsKey, "HS256", good)
        const [h, , sig] = valid.split(".")
        const forged = Buffer.from(JSON.stringify({ ...good, role: "supergod", exp: now() + 600 })).toString("base64url")
        await call(`${h}.${forged}.${sig}`, "payload changed after signing")
        await call(`${h}.${valid.split(".")[1]}.`, "signature removed")
        await call(
          new jose.UnsecuredJWT({ role: "admin" })
            .setSubject(sub)
            .setIssuer(ISSUER)
            .setAudience(AUDIENCE)
            .setExpirationTime("10m")
            .encode(),
          "alg none"
        )
        await call(await signJwt(hsKey, "HS512", good), "HS512 is not an accepted algorithm")
        await call(await signJwt(hsKey, "HS256", { ...good, exp: now() - 600 }), "expired")
        await call(await signJwt(hsKey, "HS256", { ...good, nbf: now() + 600 }), "nbf in the future")
        await call(await signJwt(hsKey, "HS256", { ...good, iss: "https://someone-else.test" }), "wrong issuer")
        await call(await signJwt(hsKey, "HS256", { sub, role: "admin", aud: AUDIENCE }), "no issuer")
        await call(await signJwt(hsKey, "HS256", { ...good, aud: "another-service" }), "wrong audience")
        await call(await signJwt(hsKey, "HS256", { sub, role: "admin", iss: ISSUER }), "no audience")
        await call(await signJwt(hsKey, "HS256", { sub, iss: ISSUER, aud: AUDIENCE }), "no role claim")
        await call(await signJwt(hsKey, "HS256", { ...good, role: "system" }), "role system (only service tokens are system)")
        await call(await signJwt(hsKey, "HS256", { ...good, role: "root" }), "role that does not exist")
        await call(await signJwt(hsKey, "HS256", { ...good, role: ["admin"] }), "role not a string")
        const noSub = await signJwt(hsKey, "HS256", { role: "admin", iss: ISSUER, aud: AUDIENCE })
        expectError(await c.call("getCapabilities", [], { token: noSub, user_id: sub }), 401, "no sub")
        // The same claims, correctly signed, are accepted: the failures above are about what was changed.
        expectOk(await c.call("getCapabilities", [], { token: valid, user_id: sub }), "the valid JWT")
      })
    })

    describe("success paths", () => {
      it("service token: the system principal named by the token", async () => {
        const c = await open()
        expect(expectOk<Authenticated>(await c.call("authenticate", [serviceAuth], null))).toEqual({
          authenticated: true,
          userId: "tests",
          role: "system"
        })
        expect(typeof expectOk(await c.call("count", ["User"], null))).toBe("number")
      })

      it("session token: the session's user with the User row's CURRENT role (a change through the daemon is seen by the next request)", async () => {
        const u = await createUser(system, "user")
        const other = await createUser(system, "user")
        const s = await createSession(system, u.id, inSeconds(3600))
        const auth = { token: s.token, user_id: u.id }
        const c = await open(auth)
        expect(expectOk<Authenticated>(await c.call("authenticate", [auth], null))).toEqual({
          authenticated: true,
          userId: u.id,
          role: "user"
        })
        expect(expectOk<{ id: string }>(await c.call("read", ["User", u.id])).id).toBe(u.id)
        const denied = await c.call("read", ["User", other.id])
        expect(denied.error?.code, `a user reads another user: ${JSON.stringify(denied)}`).toBeOneOf([403, 404])

        expectOk(await system.call("update", ["User", u.id, { role: "admin" }]), "promote to admin")
        expect(expectOk<Authenticated>(await c.call("authenticate", [auth], null))).toEqual({
          authenticated: true,
          userId: u.id,
          role: "admin"
        })
        expect(expectOk<{ id: string }>(await c.call("read", ["User", other.id]), "an admin reads another user").id).toBe(other.id)

        expectOk(await system.call("update", ["User", u.id, { role: "user" }]), "demote to user")
        expect(expectOk<Authenticated>(await c.call("authenticate", [auth], null)).role).toBe("user")
        expect((await c.call("read", ["User", other.id])).error?.code, "demoted at once").toBeOneOf([403, 404])
      })

      it("JWT HS256: sub is the user, the role claim the role; iss and aud accepted", async () => {
        const c = await open()
        for (const role of ["user", "admin", "god", "supergod"]) {
          const sub = `jwt-${role}`
          const token = await signJwt(hsKey, "HS256", { sub, role, iss: ISSUER, aud: AUDIENCE })
          expect(expectOk<Authenticated>(await c.call("authenticate", [{ token, user_id: sub }], null))).toEqual({
            authenticated: true,
            userId: sub,
            role
          })
          expectOk(await c.call("getCapabilities", [], { token, user_id: sub }), `JWT ${role}`)
        }
        // nbf a little in the past and exp a little in the future are fine.
        const token = await signJwt(hsKey, "HS256", {
          sub: "jwt-edge",
          role: "user",
          iss: ISSUER,
          aud: AUDIENCE,
          nbf: now() - 1,
          exp: now() + 30
        })
        expectOk(await c.call("getCapabilities", [], { token, user_id: "jwt-edge" }), "JWT near its bounds")
      })
    })

    describe("connections", () => {
      it("authenticate once, then requests without auth; a failed authenticate authenticates nothing; other connections still need auth", async () => {
        const u = await createUser(system)
        const s = await createSession(system, u.id, inSeconds(3600))
        const c = await open()
        expectError(await c.call("authenticate", [{ token: "wrong-token-0123456789", user_id: u.id }], null), 401, "bad authenticate")
        expectError(await c.call("read", ["User", u.id], null), 401, "after a failed authenticate")
        expectOk(await c.call("authenticate", [{ token: s.token, user_id: u.id }], null), "authenticate")
        for (let i = 0; i < 3; i++) expect(expectOk<{ id: string }>(await c.call("read", ["User", u.id], null)).id).toBe(u.id)
        expectError(await (await open()).call("read", ["User", u.id], null), 401, "another connection")
      })

      it("each request is judged by the auth it carries, whatever earlier requests on the connection sent", async () => {
        const u = await createUser(system)
        const other = await createUser(system)
        const s = await createSession(system, u.id, inSeconds(3600))
        const c = await open()
        const service = { token: SERVICE_TOKEN }
        expectOk(await c.call("count", ["User"], service), "service token")
        expectError(await c.call("count", ["User"], { token: SERVICE_TOKEN, user_id: u.id }), 401, "the same token with a user's id")
        expectOk(await c.call("count", ["User"], service), "service token again")
        expectError(await c.call("count", ["User"], { token: "wrong-token-0123456789" }), 401, "another, unknown token")
        expectOk(await c.call("count", ["User"], service), "and the service token again")
        expect(expectOk<{ id: string }>(await c.call("read", ["User", u.id], { token: s.token, user_id: u.id })).id).toBe(u.id)
        expectError(
          await c.call("read", ["User", u.id], { token: s.token, user_id: other.id }),
          401,
          "the session's token with another user's id"
        )
        expect(expectOk<{ id: string }>(await c.call("read", ["User", u.id], { token: s.token, user_id: u.id })).id).toBe(u.id)
      })

      it("a long-lived authenticated connection gets 401 on its first request after its session expires", async () => {
        const u = await createUser(system)
        const expiresAt = inSeconds(2)
        const s = await createSession(system, u.id, expiresAt)
        const c = await open()
        expectOk(await c.call("authenticate", [{ token: s.token, user_id: u.id }], null), "authenticate")
        let successes = 0
        const refusedAt = await until(
          "a request refused after the session's expiry",
          async () => {
            const a = await c.call("read", ["User", u.id], null)
            if (a.error === undefined) {
              successes++
              return undefined
            }
            expectError(a, 401, "after expiry")
            return Date.now()
          },
          15_000,
          100
        )
        // Stored precision may drop milliseconds (MySQL DATETIME): allow one second before.
        expect(refusedAt, "not refused before the session expired").toBeGreaterThanOrEqual(expiresAt.getTime() - 1000)
        expect(refusedAt - expiresAt.getTime(), "refused soon after the expiry (no cache delay)").toBeLessThan(1500)
        expect(successes, "the session worked until it expired").toBeGreaterThan(0)
        expectError(await c.call("read", ["User", u.id], null), 401, "still refused")
      })
    })

    describe("JWT ES256 with a public key file (relative to the configuration file)", () => {
      let es: InProcessDaemon | undefined
      let privateKey: Parameters<jose.SignJWT["sign"]>[0]
      beforeAll(async () => {
        const pair = await jose.generateKeyPair("ES256", { extractable: true })
        privateKey = pair.privateKey
        const base = tempDir("es256")
        fs.mkdirSync(path.join(base, "keys"))
        fs.writeFileSync(path.join(base, "keys", "jwt-public.pem"), await jose.exportSPKI(pair.publicKey))
        es = await startInProcess(
          securityConfig(db!, {
            auth: {
              service_tokens: [{ name: "tests", token: SERVICE_TOKEN }],
              failed_auth: { burst: 100_000, per_minute: 100_000 },
              jwt: { enabled: true, algorithms: ["ES256"], public_key_file: "keys/jwt-public.pem", issuer: ISSUER, audience: AUDIENCE }
            }
          }),
          base
        )
      })
      afterAll(async () => {
        await es?.dispose()
        if (es !== undefined) fs.rmSync(es.dir, { recursive: true, force: true })
      })

      it("a token signed with the private key is accepted; another key, HS256 with the public key as secret, or expiry: 401", async () => {
        const c = await connect(es!.port)
        clients.push(c)
        const claims = { sub: "es-user", role: "god", iss: ISSUER, aud: AUDIENCE }
        const token = await signJwt(privateKey, "ES256", claims)
        expect(expectOk<Authenticated>(await c.call("authenticate", [{ token, user_id: "es-user" }], null))).toEqual({
          authenticated: true,
          userId: "es-user",
          role: "god"
        })
        expectOk(await c.call("getCapabilities", [], null), "after authenticate")

        const other = await jose.generateKeyPair("ES256")
        expectError(
          await c.call("getCapabilities", [], { token: await signJwt(other.privateKey, "ES256", claims), user_id: "es-user" }),
          401,
          "another key"
        )
        // Algorithm confusion: the public key (which anybody has) as an HMAC secret.
        const pem = fs.readFileSync(path.join(es!.dir, "keys", "jwt-public.pem"))
        expectError(
          await c.call("getCapabilities", [], { token: await signJwt(new Uint8Array(pem), "HS256", claims), user_id: "es-user" }),
          401,
          "HS256 with the public key"
        )
        expectError(
          await c.call("getCapabilities", [], {
            token: await signJwt(privateKey, "ES256", { ...claims, exp: now() - 600 }),
            user_id: "es-user"
          }),
          401,
          "expired"
        )
        expectError(
          await c.call("getCapabilities", [], {
            token: await signJwt(privateKey, "ES256", { ...claims, role: "system" }),
            user_id: "es-user"
          }),
          401,
          "role system"
        )
        // An RSA key in its place is no better.
        const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 })
        const rsaKey = await jose.importPKCS8(rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "RS256")
        expectError(
          await c.call("getCapabilities", [], { token: await signJwt(rsaKey, "RS256", claims), user_id: "es-user" }),
          401,
          "RS256 token"
        )
      })
    })

    describe("failed authentications are throttled per remote address", () => {
      let th: InProcessDaemon | undefined
      beforeAll(async () => {
        th = await startInProcess(
          securityConfig(db!, {
            auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], failed_auth: { burst: 3, per_minute: 1 } }
          })
        )
      })
      afterAll(async () => {
        await th?.dispose()
      })

      it("after 3 bad tokens the 4th attempt, even with a good token, gets 429 with retryAfter >= 1; another address is not affected", async () => {
        const c = await connectFrom(th!.port, { localAddress: "127.0.0.1" })
        clients.push(c)
        const authenticated = await connectFrom(th!.port, { localAddress: "127.0.0.1" })
        clients.push(authenticated)
        expectOk(await authenticated.call("authenticate", [serviceAuth], null), "authenticate before the failures")

        expectError(await c.call("count", ["User"], { token: "bad-token-number-one-000", user_id: "tests" }), 401, "bad 1")
        expectError(await c.call("count", ["User"], { token: SERVICE_TOKEN, user_id: "not-tests" }), 401, "bad 2 (mismatch)")
        expectError(await c.call("authenticate", [{ token: "bad-token-number-three-0", user_id: "tests" }], null), 401, "bad 3")

        const retryAfter = expectRateLimited(await c.call("count", ["User"], serviceAuth), "4th, good token")
        // One failure a minute: the next one is some tens of seconds away.
        expect(retryAfter).toBeLessThanOrEqual(60)
        expectRateLimited(await c.call("authenticate", [serviceAuth], null), "authenticate, good token")
        expectRateLimited(await authenticated.call("count", ["User"], null), "a connection of the same address authenticated earlier")

        // 127.0.0.2 is another remote address (all of 127/8 is loopback on Linux).
        const elsewhere = await connectFrom(th!.port, { localAddress: "127.0.0.2" })
        clients.push(elsewhere)
        expect(typeof expectOk(await elsewhere.call("count", ["User"], serviceAuth), "another address")).toBe("number")
      })
    })
  })
}
