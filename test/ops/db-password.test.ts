/**
 * The PostgreSQL password is re-read from `password_file` for every new connection (no restart).
 *
 * The test server trusts local connections (pg_hba: `host all all 127.0.0.1/32 trust`), so it
 * never asks for a password and changing its configuration is not ours to do. In front of it sits
 * a password-checking proxy speaking the PostgreSQL protocol: it asks each connection for a
 * cleartext password, refuses a wrong one with the server's own error (28P01), and hands a right
 * one's startup to the real server. The daemon's pool (pgLayer, from a configuration file with a
 * relative password_file) connects; the password is rotated in the file and at the proxy, the
 * proxy drops every connection (a server restart, as far as the pool can tell), and the pool's
 * next connections must log in with the new password.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, type Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../../layers/Config.js"
import { pgLayer } from "../../layers/db/Pg.js"
import { createDatabase, daemonConfig, PG, skipDialect, type TestDatabase, tempDir, writeConfig } from "../support/services.js"
import { until } from "../support/wait.js"

const message = (type: string, body: Buffer) => {
  const head = Buffer.alloc(5)
  head.write(type, 0, "latin1")
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}
const int32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
const cstr = (s: string) => Buffer.from(`${s}\0`, "utf8")

/** The proxy: `expected` is the password it accepts now; `seen` every password it was sent. */
const passwordProxy = async () => {
  const state = { expected: "", seen: [] as Array<string>, sockets: new Set<net.Socket>() }
  const server = net.createServer((client) => {
    state.sockets.add(client)
    client.on("close", () => state.sockets.delete(client))
    client.on("error", () => undefined)
    let buf = Buffer.alloc(0)
    let startup: Buffer | undefined
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (startup === undefined) {
        if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return
        startup = buf.subarray(0, buf.readInt32BE(0))
        buf = buf.subarray(startup.length)
        client.write(message("R", int32(3))) // AuthenticationCleartextPassword
      }
      if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return
      const password = buf.subarray(5, 1 + buf.readInt32BE(1) - 1).toString("utf8")
      client.off("data", onData)
      state.seen.push(password)
      if (password !== state.expected) {
        client.end(
          message(
            "E",
            Buffer.concat([
              Buffer.from("S"),
              cstr("FATAL"),
              Buffer.from("C"),
              cstr("28P01"),
              Buffer.from("M"),
              cstr("password authentication failed"),
              Buffer.from([0])
            ])
          )
        )
        return
      }
      const upstream = net.connect(PG.port, PG.host, () => {
        upstream.write(startup!)
        upstream.pipe(client)
        client.pipe(upstream)
      })
      upstream.on("error", () => client.destroy())
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    }
    client.on("data", onData)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    state,
    port: (server.address() as net.AddressInfo).port,
    dropAll: () => {
      for (const s of state.sockets) s.destroy()
    },
    close: () => new Promise<void>((r) => server.close(() => r()))
  }
}

describe("database password_file rotation (PostgreSQL)", async () => {
  const skip = await skipDialect("postgresql")
  let db: TestDatabase | undefined
  let proxy: Awaited<ReturnType<typeof passwordProxy>> | undefined

  beforeAll(async () => {
    if (skip) return
    db = await createDatabase("postgresql")
    proxy = await passwordProxy()
  }, 60_000)
  afterAll(async () => {
    await proxy?.close()
    await db?.drop()
  })

  it.skipIf(skip)(
    "new connections after a rotation log in with the new password from the file",
    async () => {
      const dir = tempDir("dbpw")
      fs.writeFileSync(path.join(dir, "db-password"), "first-password-0123\n", { mode: 0o600 })
      proxy!.state.expected = "first-password-0123"
      const base = daemonConfig(db!)
      const database = base.database as { connection: Record<string, unknown> }
      const file = writeConfig(
        {
          ...base,
          database: {
            ...database,
            connection: { ...database.connection, port: proxy!.port, ssl_mode: "disable", password_file: "db-password" }
          }
        },
        dir
      )
      const cfg = await Effect.runPromise(loadConfig(file, {}))
      const runtime = ManagedRuntime.make(pgLayer(cfg) as Layer.Layer<SqlClient.SqlClient, unknown>)
      try {
        const one = () => runtime.runPromiseExit(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT 1 AS n`))
        expect(Exit.isSuccess(await one())).toBe(true)
        expect(proxy!.state.seen.every((p) => p === "first-password-0123")).toBe(true)
        const before = proxy!.state.seen.length

        fs.writeFileSync(path.join(dir, "db-password"), "second-password-4567\n", { mode: 0o600 })
        proxy!.state.expected = "second-password-4567"
        proxy!.dropAll()
        // The pool notices the dropped connections (or the first query on one fails) and opens new ones.
        await until("a query on a new connection", async () => (Exit.isSuccess(await one()) ? true : undefined), 15_000)
        const after = proxy!.state.seen.slice(before)
        expect(after.length).toBeGreaterThan(0)
        expect(after).toEqual(after.map(() => "second-password-4567"))
      } finally {
        await runtime.dispose()
      }
    },
    60_000
  )
})
