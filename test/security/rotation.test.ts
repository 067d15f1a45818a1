/**
 * Service-token rotation without a restart, on the real daemon process (SQLite):
 * the token file is rewritten and the daemon gets SIGHUP; the new token works at once, the old
 * one keeps working for `security.auth.rotation_overlap` seconds and is refused after it; two
 * connections sending requests with the old token and, once the reload is logged, with the new
 * one, never get a 401 that the overlap does not allow. A configuration file that no longer
 * loads on SIGHUP keeps the tokens in force. makeServiceTokens is also checked on its own with
 * a hand-moved clock.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeServiceTokens } from "../../layers/Auth.js"
import { type Answer, type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { until } from "../support/wait.js"

const OVERLAP_S = 3
const token = () => randomBytes(24).toString("base64url")

describe("makeServiceTokens", () => {
  const t = (name: string, value: string) => ({ name, token: Redacted.make(value) })
  const d = (value: string) => createHash("sha256").update(value, "utf8").digest()

  it("keeps a replaced token valid for the overlap only; a kept token never expires", () => {
    let now = 1_000
    const tokens = makeServiceTokens([t("app", "old-token-0123456789"), t("batch", "batch-token-0123456789")], () => now)
    expect(tokens.match(d("old-token-0123456789"))).toBe("app")
    expect(tokens.replace([t("app", "new-token-0123456789"), t("batch", "batch-token-0123456789")], 300_000)).toEqual({
      current: 2,
      retired: 1
    })
    expect(tokens.match(d("new-token-0123456789"))).toBe("app")
    expect(tokens.match(d("old-token-0123456789"))).toBe("app")
    now += 299_999
    expect(tokens.match(d("old-token-0123456789"))).toBe("app")
    now += 1
    expect(tokens.match(d("old-token-0123456789"))).toBeUndefined()
    expect(tokens.match(d("batch-token-0123456789"))).toBe("batch")
    expect(tokens.match(d("unknown-token-0123456789"))).toBeUndefined()
  })

  it("a second reload keeps the first one's overlap, and a token brought back is current again", () => {
    let now = 0
    const tokens = makeServiceTokens([t("app", "a-token-0123456789")], () => now)
    tokens.replace([t("app", "b-token-0123456789")], 10_000)
    now = 5_000
    tokens.replace([t("app", "c-token-0123456789")], 10_000)
    expect(tokens.match(d("a-token-0123456789"))).toBe("app")
    expect(tokens.match(d("b-token-0123456789"))).toBe("app")
    now = 10_000
    expect(tokens.match(d("a-token-0123456789"))).toBeUndefined()
    expect(tokens.match(d("b-token-0123456789"))).toBe("app")
    tokens.replace([t("app", "b-token-0123456789")], 0)
    now = 1_000_000
    expect(tokens.match(d("b-token-0123456789"))).toBe("app")
    expect(tokens.match(d("c-token-0123456789"))).toBeUndefined()
  })
})

describe("service-token rotation on SIGHUP (daemon process)", () => {
  const dir = tempDir("rotation")
  const tokenFile = path.join(dir, "service-token")
  let db: TestDatabase
  let daemon: Daemon | undefined
  let configFile: string
  const clients: Array<Client> = []

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    fs.writeFileSync(tokenFile, `${token()}\n`, { mode: 0o600 })
    const cfg = daemonConfig(db)
    const security = cfg.security as Record<string, unknown>
    configFile = writeConfig(
      {
        ...cfg,
        security: {
          ...security,
          auth: {
            service_tokens: [{ name: "app", token_file: tokenFile }],
            rotation_overlap: OVERLAP_S,
            // Refusals after the overlap must not lock 127.0.0.1 out (that would be a 429 for the new token too).
            failed_auth: { burst: 100_000, per_minute: 100_000 }
          }
        }
      },
      dir
    )
    daemon = await startDaemon([`--config=${configFile}`])
  }, 60_000)

  afterAll(async () => {
    for (const c of clients) await c.close()
    await daemon?.stop()
    await db?.drop()
  })

  const auth = (value: string) => ({ token: value, user_id: "app" })
  const reloads = () => (daemon!.output().match(/service tokens reloaded/g) ?? []).length
  const hangup = async () => {
    const before = reloads()
    const sentAt = Date.now()
    daemon!.process.kill("SIGHUP")
    await until("the reload is logged", () => (reloads() > before ? true : undefined), 10_000)
    return sentAt
  }

  it("new token at once, old token during the overlap only, no wrong 401 under load", async () => {
    const oldToken = fs.readFileSync(tokenFile, "utf8").trim()
    const newToken = token()
    const a = await connect(daemon!.port)
    const b = await connect(daemon!.port)
    clients.push(a, b)
    expect((await a.call("count", ["User"], auth(oldToken))).error).toBeUndefined()
    expect((await a.call("count", ["User"], auth(newToken))).error?.code).toBe(401)

    interface Outcome {
      readonly at: number
      readonly which: "old" | "new"
      readonly answer: Answer
    }
    const outcomes: Array<Outcome> = []
    let useNew = false
    let stop = false
    // Each connection keeps 4 requests in flight until told to stop; from the moment the reload is
    // logged every other request carries the new token.
    const load = (c: Client) =>
      Promise.all(
        Array.from({ length: 4 }, async (_, lane) => {
          let i = 0
          while (!stop) {
            const which = useNew && (i + lane) % 2 === 0 ? "new" : "old"
            i++
            const answer = await c.call("count", ["User"], auth(which === "new" ? newToken : oldToken))
            outcomes.push({ at: Date.now(), which, answer })
            if (which === "old" && answer.error?.code === 401) stop = true
          }
        })
      )
    const running = Promise.all([load(a), load(b)])
    await until("requests under load", () => (outcomes.length >= 50 ? true : undefined), 10_000)

    fs.writeFileSync(tokenFile, `${newToken}\n`, { mode: 0o600 })
    const sentAt = await hangup()
    useNew = true
    const loggedAt = Date.now()
    // The new token works at once, on a fresh connection too.
    const fresh = await connect(daemon!.port)
    clients.push(fresh)
    expect((await fresh.call("count", ["User"], auth(newToken))).error).toBeUndefined()

    // The load stops itself at the first refusal of the old token; bounded by the overlap plus slack.
    await Promise.race([
      running,
      new Promise<never>((_, fail) =>
        setTimeout(
          () => fail(new Error(`the old token was still accepted ${OVERLAP_S + 15} s after the reload`)),
          (OVERLAP_S + 15) * 1000
        ).unref()
      )
    ])
    stop = true

    const firstRefusal = outcomes.find((o) => o.which === "old" && o.answer.error !== undefined)
    expect(firstRefusal, "the old token was refused in the end").toBeDefined()
    expect(firstRefusal!.answer.error!.code).toBe(401)
    // Not before the overlap: the reload happened after the signal was sent.
    expect(firstRefusal!.at).toBeGreaterThanOrEqual(sentAt + OVERLAP_S * 1000)
    // Every old-token request answered within the overlap succeeded, and every new-token request did.
    const wrong = outcomes.filter((o) => o.answer.error !== undefined && (o.which === "new" || o.at < sentAt + OVERLAP_S * 1000))
    expect(wrong.map((o) => JSON.stringify(o))).toEqual([])
    const newOnes = outcomes.filter((o) => o.which === "new")
    expect(newOnes.length).toBeGreaterThan(10)
    expect(outcomes.filter((o) => o.which === "old" && o.at > loggedAt && o.answer.error === undefined).length).toBeGreaterThan(10)
    // After the overlap the old token stays refused; the new one keeps working.
    expect((await fresh.call("count", ["User"], auth(oldToken))).error?.code).toBe(401)
    expect((await fresh.call("count", ["User"], auth(newToken))).error).toBeUndefined()
    expect(daemon!.alive()).toBe(true)
  }, 60_000)

  it("a configuration that no longer loads keeps the tokens in force", async () => {
    const current = fs.readFileSync(tokenFile, "utf8").trim()
    fs.rmSync(tokenFile)
    const errorsBefore = (daemon!.output().match(/service tokens not reloaded/g) ?? []).length
    daemon!.process.kill("SIGHUP")
    await until(
      "the failed reload is logged",
      () => ((daemon!.output().match(/service tokens not reloaded/g) ?? []).length > errorsBefore ? true : undefined),
      10_000
    )
    expect(daemon!.output()).toMatch(/service tokens not reloaded, keeping the current ones: .*token_file: cannot read it \(ENOENT\)/)
    expect(daemon!.output()).not.toContain(current)
    const c = await connect(daemon!.port)
    clients.push(c)
    expect((await c.call("count", ["User"], auth(current))).error).toBeUndefined()
    expect(daemon!.alive()).toBe(true)
  }, 30_000)
})
