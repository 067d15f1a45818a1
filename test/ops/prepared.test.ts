/**
 * Prepared statement reuse on PostgreSQL: the daemon's parameterized statements are named, so a
 * connection prepares each once and reuses it (visible in pg_prepared_statements). Statements
 * that carry a long list of values run unnamed, planned for their values, except a many-row
 * INSERT … VALUES, which has one plan whatever its values (layers/db/Pg.ts), also after the audit
 * journal's row (the audit log is on, to a file with fsync, as in production).
 */
import * as path from "node:path"
import { Effect, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { core } from "../../app/Application.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import { Database } from "../../src/services/Database.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"

describe.skipIf(await skipDialect("postgresql"))("prepared statements (postgresql)", () => {
  let db: TestDatabase
  let rt: ManagedRuntime.ManagedRuntime<RpcHandler | Database, unknown>
  beforeAll(async () => {
    db = await createDatabase("postgresql")
    const base = daemonConfig(db)
    // One connection, so that the statements below all run on it.
    rt = ManagedRuntime.make(
      core(
        writeConfig({
          ...base,
          database: { ...(base.database as object), pool_size: 1 },
          security: { ...(base.security as object), audit_log: true, audit_log_path: path.join(tempDir("prepared"), "audit.log") }
        })
      )
    ) as unknown as typeof rt
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
  const call = async (id: number, method: string, params: ReadonlyArray<unknown>) =>
    rt.runPromise(Effect.flatMap(RpcHandler, (handler) => handler.handle(conn, JSON.stringify({ id, method, params, auth: serviceAuth }))))
  const prepared = () =>
    rt.runPromise(
      Effect.flatMap(
        Database,
        ({ sql }) =>
          sql<{ name: string; statement: string }>`SELECT name, statement FROM pg_prepared_statements WHERE name LIKE ${"dbal_%"}`
      )
    )

  it("prepares a statement once per connection and reuses it", async () => {
    const created = JSON.parse(await call(1, "create", ["User", { username: "prep", email: "prep@example.com" }])) as {
      result: { id: string }
    }
    for (let i = 0; i < 5; i++) await call(10 + i, "read", ["User", created.result.id])
    const after = await prepared()
    const reads = after.filter((p) => /^SELECT .* FROM "users" WHERE "id" = \$1$/.test(p.statement))
    // Five reads, one prepared statement.
    expect(reads.length).toBe(1)
    expect(after.length).toBeGreaterThan(1)
  })

  it("runs a statement with a long list of values unnamed, so that it is planned for its values", async () => {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`)
    for (const [i, n] of [3, 3, 40, 40].entries()) {
      const answer = JSON.parse(await call(100 + i, "list", ["User", { filter: { id: { in: ids(n) } } }])) as {
        result?: unknown
        error?: unknown
      }
      expect(answer.error).toBeUndefined()
    }
    const inLists = (await prepared())
      .filter((p) => /FROM "users" WHERE .*"id" IN \(/.test(p.statement))
      .map((p) => (p.statement.match(/\$\d+/g) ?? []).length)
    // The three-value list is prepared (its SELECT and its COUNT); no statement with forty values is.
    expect(inLists.length).toBeGreaterThan(0)
    expect(Math.max(...inLists)).toBeLessThanOrEqual(32)
    expect(inLists.some((params) => params >= 3)).toBe(true)
  })

  it("prepares a many-row INSERT … VALUES once and reuses it", async () => {
    const users = (tag: string) => Array.from({ length: 20 }, (_, i) => ({ username: `${tag}${i}`, email: `${tag}${i}@example.com` }))
    for (const [i, tag] of ["ma", "mb", "mc"].entries()) {
      const answer = JSON.parse(await call(200 + i, "createMany", ["User", users(tag)])) as { result?: unknown; error?: unknown }
      expect(answer.result).toBe(20)
    }
    const inserts = (await prepared())
      .filter((p) => p.statement.includes(' INSERT INTO "users" ') || p.statement.startsWith('INSERT INTO "users" '))
      .map((p) => (p.statement.match(/\$\d+/g) ?? []).length)
    // Three batches of 20 rows, one prepared statement (20 rows × the inserted columns, over 32
    // parameters), which inserts the batch's audit journal row too.
    expect(inserts.filter((params) => params > 32)).toHaveLength(1)
    expect(
      (await prepared()).some((p) => p.statement.startsWith("WITH j AS (INSERT INTO") && p.statement.includes('INSERT INTO "users"'))
    ).toBe(true)
  })
})
