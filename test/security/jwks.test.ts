/**
 * JWT keys from a remote JWKS (`security.auth.jwt.jwks_url`), served by an HTTP server on
 * 127.0.0.1 in this test, against the live daemon (in process, SQLite): the set is fetched once
 * and then cached; when the provider rotates (a token names a new `kid`) the set is fetched again
 * at once and the new key works, while tokens of the old key, sent at the same time, keep working
 * as long as the set still has it; a token of a key the set never had is refused with 401; a key
 * set that cannot be fetched gives 503, not 401.
 */
import * as http from "node:http"
import * as jose from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client } from "../support/daemon.js"
import { createDatabase, type TestDatabase } from "../support/services.js"
import { connectFrom, expectError, expectOk, type InProcessDaemon, securityConfig, startInProcess } from "./harness.js"

interface KeyPair {
  readonly kid: string
  readonly privateKey: jose.CryptoKey
  readonly jwk: jose.JWK
}
const makeKey = async (kid: string): Promise<KeyPair> => {
  const pair = await jose.generateKeyPair("ES256", { extractable: true })
  return { kid, privateKey: pair.privateKey, jwk: { ...(await jose.exportJWK(pair.publicKey)), kid, alg: "ES256", use: "sig" } }
}
const sign = (key: KeyPair, sub: string) =>
  new jose.SignJWT({ role: "user" })
    .setProtectedHeader({ alg: "ES256", kid: key.kid })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(key.privateKey)

describe("JWT keys from jwks_url", () => {
  let db: TestDatabase
  let daemon: InProcessDaemon | undefined
  let server: http.Server
  let client: Client
  const provider = { keys: [] as Array<KeyPair>, fetches: 0, status: 200 }
  let a: KeyPair
  let b: KeyPair
  let stranger: KeyPair

  beforeAll(async () => {
    ;[a, b, stranger] = await Promise.all([makeKey("key-a"), makeKey("key-b"), makeKey("key-stranger")])
    provider.keys = [a]
    server = http.createServer((_req, res) => {
      provider.fetches++
      res.writeHead(provider.status, { "content-type": "application/json" })
      res.end(provider.status === 200 ? JSON.stringify({ keys: provider.keys.map((k) => k.jwk) }) : "{}")
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const url = `http://127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}/.well-known/jwks.json`
    db = await createDatabase("sqlite")
    daemon = await startInProcess(
      securityConfig(db, {
        auth: {
          service_tokens: [],
          jwt: { enabled: true, algorithms: ["ES256"], jwks_url: url, jwks_cooldown: 0, jwks_cache_max_age: 600 },
          failed_auth: { burst: 1000, per_minute: 1000 }
        }
      })
    )
    client = await connectFrom(daemon.port)
  }, 60_000)

  afterAll(async () => {
    await client?.close()
    await daemon?.dispose()
    await new Promise<void>((r) => server.close(() => r()))
    await db?.drop()
  })

  const authenticate = async (token: string) => client.call("authenticate", [{ token }], null)

  it("fetches the set once and caches it", async () => {
    expect(expectOk(await authenticate(await sign(a, "alice")))).toMatchObject({ userId: "alice", role: "user" })
    expect(expectOk(await authenticate(await sign(a, "alice")))).toMatchObject({ userId: "alice" })
    expect(provider.fetches).toBe(1)
  })

  it("a rotation: the new key works at once, the old one keeps working under load while the set has it", async () => {
    provider.keys = [a, b]
    const oldTokens = await Promise.all(Array.from({ length: 40 }, (_, i) => sign(a, `old-${i}`)))
    const newToken = await sign(b, "bob")
    const answers = await Promise.all([authenticate(newToken), ...oldTokens.map((t) => authenticate(t))])
    expect(expectOk(answers[0]!)).toMatchObject({ userId: "bob" })
    answers.slice(1).forEach((ans, i) => expect(expectOk(ans, `old token ${i}`)).toMatchObject({ userId: `old-${i}` }))
    expect(provider.fetches).toBe(2)
    // The provider retires the old key: once the set is fetched again, tokens of it are refused.
    provider.keys = [b]
    expectError(await authenticate(await sign(stranger, "mallory")), 401, "a key the set never had")
    expect(provider.fetches).toBe(3)
    expectError(await authenticate(await sign(a, "alice")), 401, "the retired key")
    expect(expectOk(await authenticate(await sign(b, "bob")))).toMatchObject({ userId: "bob" })
  })

  it("a key set that cannot be fetched gives 503, not 401", async () => {
    provider.status = 500
    const before = provider.fetches
    const answer = await authenticate(await sign(stranger, "mallory"))
    expect(answer.error?.code, JSON.stringify(answer)).toBe(503)
    expect(provider.fetches).toBe(before + 1)
    provider.status = 200
  })
})
