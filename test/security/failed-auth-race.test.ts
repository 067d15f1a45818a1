/**
 * The failed-authentication throttle against concurrent attempts, on the real daemon process:
 * bad tokens pipelined on one connection (all in flight at once) are charged as they are tried,
 * so that with `failed_auth.burst` 10 the 11th and later get 429, not 401. The lockout is logged
 * (WARN, once) and counted (`dbal_auth_lockouts_total`). Valid tokens pipelined in the same way
 * are never refused: their reservations come back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Answer, type Daemon, openSocket, type RawSocket, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  daemonConfig,
  serviceAuth,
  skipDialect,
  SERVICE_TOKEN,
  type TestDatabase,
  writeConfig
} from "../support/services.js"
import { untilTrue } from "../support/wait.js"

const BURST = 10

const metric = async (port: number, name: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

/** Sends every frame at once, then collects one answer per frame (by id). */
const pipeline = async (
  s: RawSocket,
  frames: ReadonlyArray<{ id: string; method: string; params: ReadonlyArray<unknown>; auth?: unknown }>
) => {
  for (const f of frames) s.send(JSON.stringify(f))
  const answers = new Map<unknown, Answer>()
  while (answers.size < frames.length) {
    const a = await s.next()
    answers.set(a.id, a)
  }
  return frames.map((f) => answers.get(f.id)!)
}

for (const dialect of ["sqlite", "postgresql"] as const) {
  describe.skipIf(await skipDialect(dialect))(`failed-auth throttle under pipelining on ${dialect}`, () => {
    let db: TestDatabase | undefined
    let daemon: Daemon | undefined
    const sockets: Array<RawSocket> = []

    beforeAll(async () => {
      db = await createDatabase(dialect)
      const base = daemonConfig(db)
      daemon = await startDaemon(
        [
          `--config=${writeConfig({
            ...base,
            security: {
              ...(base.security as Record<string, unknown>),
              auth: { service_tokens: [{ name: "tests", token: SERVICE_TOKEN }], failed_auth: { burst: BURST, per_minute: 1 } }
            }
          })}`
        ],
        { timeoutMs: 90_000 }
      )
    })
    afterAll(async () => {
      for (const s of sockets) await s.close()
      await daemon?.stop()
      await db?.drop()
    })

    it("valid tokens pipelined 40 at a time are all answered (reservations are given back)", async () => {
      const s = await openSocket(daemon!.port)
      sockets.push(s)
      const answers = await pipeline(
        s,
        Array.from({ length: 40 }, (_, i) => ({ id: `ok${i}`, method: "count", params: ["User"], auth: serviceAuth }))
      )
      expect(answers.map((a) => a.error?.code ?? "ok")).toEqual(Array.from({ length: 40 }, () => "ok"))
    })

    it(`13 bad tokens pipelined on one connection: ${BURST} answer 401, the other 3 429; the lockout is logged once and counted`, async () => {
      expect(await metric(daemon!.port, "dbal_auth_lockouts_total"), "exported from the start").toBe(0)
      const s = await openSocket(daemon!.port)
      sockets.push(s)
      const answers = await pipeline(
        s,
        Array.from({ length: 13 }, (_, i) => ({
          id: `bad${i}`,
          method: "count",
          params: ["User"],
          auth: { token: `no-such-session-token-${i}-0123456789` }
        }))
      )
      const codes = answers.map((a) => a.error?.code)
      expect(
        codes.every((c) => c === 401 || c === 429),
        JSON.stringify(codes)
      ).toBe(true)
      expect(codes.filter((c) => c === 401).length, JSON.stringify(codes)).toBe(BURST)
      expect(codes.filter((c) => c === 429).length, JSON.stringify(codes)).toBe(13 - BURST)
      // The address stays locked: a good token now gets 429 too.
      s.send(JSON.stringify({ id: "after", method: "count", params: ["User"], auth: serviceAuth }))
      expect((await s.next()).error?.code).toBe(429)

      await untilTrue("the lockout WARN line", () => /locked out/.test(daemon!.output()))
      const lines = daemon!
        .output()
        .split("\n")
        .filter((l) => l.includes("locked out"))
      expect(lines.length, lines.join("\n")).toBe(1)
      expect(lines[0]).toMatch(/"level":"WARN"|WARN/)
      expect(lines[0]).toContain("127.0.0.1")
      expect(await metric(daemon!.port, "dbal_auth_lockouts_total")).toBe(1)
    })
  })
}
