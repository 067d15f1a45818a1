/**
 * A create whose row is committed but cannot be read back (the database went away between the
 * INSERT and the SELECT) is answered with the values written, not with an error a client would
 * retry. The read-back is made to fail here by asking for a column that does not exist. Only MySQL
 * 8 reads a created row back (PostgreSQL, SQLite and MariaDB 10.5+ answer from the INSERT's
 * RETURNING): the test runs on MariaDB with MySQL 8's way assumed (`assumeKeysBy`).
 */
import { SqlClient } from "@effect/sql"
import { Effect, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../../layers/Config.js"
import { executeVia, migrate, queryVia, sqlClientLayer } from "../../layers/Database.js"
import { fromConfig } from "../../layers/Entities.js"
import type { EntityDef, EntityRegistryShape, FieldDef } from "../../src/entity/Model.js"
import { validateCreate } from "../../src/entity/Validate.js"
import { assumeKeysBy, fullAccess, makeRepository } from "../../src/query/Repository.js"
import type { DatabaseShape } from "../../src/services/Database.js"
import { createDatabase, daemonConfig, type TestDatabase, writeConfig } from "../support/services.js"

describe("create: a committed row that cannot be read back", () => {
  let db: TestDatabase
  let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>
  let registry: EntityRegistryShape
  let shape: DatabaseShape

  beforeAll(async () => {
    db = await createDatabase("mysql")
    const cfg = await Effect.runPromise(loadConfig(writeConfig(daemonConfig(db)), {}))
    registry = await Effect.runPromise(fromConfig(cfg))
    rt = ManagedRuntime.make(sqlClientLayer(cfg))
    const sql = await rt.runPromise(SqlClient.SqlClient)
    shape = {
      sql,
      dialect: "mysql",
      adapter: "mysql",
      ping: Effect.succeed(0),
      query: queryVia(undefined),
      execute: executeVia(undefined)
    }
    await rt.runPromise(migrate(sql, "mysql", registry))
    assumeKeysBy(shape, "rowByRow")
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  it("answers with the values written, and the row is stored", async () => {
    const page = registry.entities.get("PageView") as EntityDef
    const repo = makeRepository(shape, registry, {})
    const values = validateCreate(page, { slug: "readback", title: "T", level: 2, layout: { b: 1, a: [true] } })
    if (values._tag === "Left") throw new Error(JSON.stringify(values.left))
    const missing: FieldDef = { ...page.primaryKey, name: "missing", column: "no_such_column" }
    const access = { ...fullAccess(page), readable: [...page.exposed, missing] }
    const answer = (await rt.runPromise(repo.create(page, values.right, access))) as Record<string, unknown>
    expect(answer).toMatchObject({ slug: "readback", title: "T", level: 2, layout: { b: 1, a: [true] }, isActive: true, missing: null })
    expect(String(answer.createdAt)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
    const stored = await rt.runPromise(shape.sql<{ id: string; slug: string }>`SELECT id, slug FROM page_views`)
    expect(stored).toEqual([{ id: answer.id, slug: "readback" }])
  })
})
