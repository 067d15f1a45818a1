/**
 * Prepared statement reuse on PostgreSQL: the daemon's parameterized statements are named, so a
 * connection prepares each once and reuses it (visible in pg_prepared_statements).
 */
import { Effect, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { core } from "../../layers/Main.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import { Database } from "../../src/services/Database.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"

describe.skipIf(await skipDialect("postgresql"))("prepared statements (postgresql)", () => {
  let db: TestDatabase
  let rt: ManagedRuntime.ManagedRuntime<RpcHandler | Database, unknown>
  beforeAll(async () => {
    db = await createDatabase("postgresql")
    const base = daemonConfig(db)
    // One connection, so that the statements below all run on it.
    rt = ManagedRuntime.make(core(writeConfig({ ...base, database: { ...(base.database as object), pool_size: 1 } }))) as unknown as typeof rt
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  it("prepares a statement once per connection and reuses it", async () => {
    const handler = await rt.runPromise(RpcHandler)
    const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
    const call = (id: number, method: string, params: ReadonlyArray<unknown>) =>
      rt.runPromise(handler.handle(conn, JSON.stringify({ id, method, params, auth: serviceAuth })))
    const created = JSON.parse(await call(1, "create", ["User", { username: "prep", email: "prep@example.com" }])) as { result: { id: string } }
    const prepared = () =>
      rt.runPromise(
        Effect.flatMap(Database, ({ sql }) => sql<{ name: string; statement: string }>`SELECT name, statement FROM pg_prepared_statements WHERE name LIKE ${"dbal_%"}`)
      )
    for (let i = 0; i < 5; i++) await call(10 + i, "read", ["User", created.result.id])
    const after = await prepared()
    const reads = after.filter((p) => /^SELECT .* FROM "users" WHERE "id" = \$1$/.test(p.statement))
    // Five reads, one prepared statement.
    expect(reads.length).toBe(1)
    expect(after.length).toBeGreaterThan(1)
  })
})
