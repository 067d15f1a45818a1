/**
 * `performance.read_batch` on PostgreSQL (src/query/ReadBatch.ts, the repository's `read`):
 * concurrent reads by id under a row filter, coalesced into `pk = ANY($1)` statements, answer
 * exactly what each read alone answers — the row for a visible id, 404 for an id the row filter
 * hides and for an id no row has — and a read inside a transaction is never coalesced.
 */
import { Effect, Either, ManagedRuntime, Runtime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { core } from "../../app/Application.js"
import { EntityRegistry, type EntityDef } from "../../src/entity/Model.js"
import { parseFilter } from "../../src/query/Filter.js"
import { type Access, makeRepository } from "../../src/query/Repository.js"
import { requestRuntime } from "../../src/query/Timeout.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import { Database, type DatabaseShape } from "../../src/services/Database.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"

describe.skipIf(await skipDialect("postgresql"))("postgresql: reads by id coalesced (performance.read_batch)", () => {
  let db: TestDatabase
  let rt: ManagedRuntime.ManagedRuntime<Database | EntityRegistry | RpcHandler, unknown>
  let database: DatabaseShape
  let pv: EntityDef
  let access: Access
  const active: Array<string> = []
  const inactive: Array<string> = []

  beforeAll(async () => {
    db = await createDatabase("postgresql")
    rt = ManagedRuntime.make(core(writeConfig(daemonConfig(db)))) as typeof rt
    database = await rt.runPromise(Database)
    pv = (await rt.runPromise(EntityRegistry)).entities.get("PageView")!
    const handler = await rt.runPromise(RpcHandler)
    const run = Runtime.runPromise(requestRuntime(await rt.runtime()))
    const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
    const created = JSON.parse(
      await run(
        handler.handle(
          conn,
          JSON.stringify({
            id: 1,
            method: "transaction",
            auth: serviceAuth,
            params: [
              Array.from({ length: 30 }, (_, i) => ({
                method: "create",
                params: ["PageView", { slug: `batch/${i}`, title: `page ${i}`, level: 1, layout: { i }, isActive: i % 3 !== 0 }]
              }))
            ]
          })
        )
      )
    ) as { result: Array<{ id: string; isActive: boolean }> }
    for (const p of created.result) (p.isActive ? active : inactive).push(p.id)
    access = { rowFilter: Either.getOrThrow(parseFilter(pv, { isActive: true }, "filter")), readable: pv.exposed }
  })
  afterAll(async () => {
    await rt?.dispose()
    await db?.drop()
  })

  /** The repository on the daemon's database, with the text of every statement run recorded. */
  const repositoryWith = (readBatch: number) => {
    const texts: Array<string> = []
    const counted: DatabaseShape = {
      ...database,
      query: (statement) =>
        Effect.suspend(() => {
          texts.push(statement.compile()[0])
          return database.query(statement)
        }),
      // Reads outside a transaction take the direct path with their statement compiled already.
      ...(database.queryCompiled === undefined
        ? {}
        : {
            queryCompiled: <A extends object>(text: string, params: ReadonlyArray<unknown>) =>
              Effect.suspend(() => {
                texts.push(text)
                return database.queryCompiled!<A>(text, params)
              })
          })
    }
    return { repo: makeRepository(counted, rt.runSync(EntityRegistry), { readBatch }), texts }
  }

  it("answers each read as alone: the row, or 404 for a hidden or absent id; in fewer statements", async () => {
    const absent = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]
    const ids = [...active, ...inactive, ...absent, active[0]!, inactive[0]!]
    const readAll = (readBatch: number) => {
      const { repo, texts } = repositoryWith(readBatch)
      const reads = Effect.all(
        ids.map((id) => Effect.either(repo.read(pv, id, access))),
        { concurrency: "unbounded" }
      )
      return rt.runPromise(reads).then((answers) => ({ answers, texts }))
    }
    const alone = await readAll(0)
    const batched = await readAll(1)
    expect(alone.texts).toHaveLength(ids.length)
    expect(batched.texts.length).toBeLessThan(ids.length)
    expect(batched.texts.some((t) => t.includes("= ANY($1)"))).toBe(true)
    for (const [i, id] of ids.entries()) {
      const a = batched.answers[i]!
      if (active.includes(id)) expect(Either.getOrThrow(a)).toEqual(Either.getOrThrow(alone.answers[i]!))
      else expect(Either.isLeft(a) && a.left._tag).toBe("NotFound")
      expect(Either.isLeft(alone.answers[i]!)).toBe(Either.isLeft(a))
    }
    expect(active.length).toBeGreaterThan(0)
    expect(inactive.length).toBeGreaterThan(0)
  })

  it("never coalesces reads inside a transaction", async () => {
    const { repo, texts } = repositoryWith(1)
    const answers = await rt.runPromise(
      database.sql.withTransaction(
        Effect.all(
          active.map((id) => repo.read(pv, id, access)),
          { concurrency: "unbounded" }
        )
      )
    )
    expect(answers.map((a) => a.id)).toEqual(active)
    expect(texts.filter((t) => t.includes("= ANY("))).toHaveLength(0)
  })
})
