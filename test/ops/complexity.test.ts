/**
 * performance.max_query_complexity (src/query/Complexity.ts): the documented score, and the 422
 * that list, count, findFirst, updateMany and deleteMany answer past the limit, through the real
 * RpcHandler on SQLite (the check runs before any SQL, so the dialect does not matter).
 */
import { Effect, Exit, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startInProcess } from "../support/inprocess.js"
import type { FieldDef } from "../../src/entity/Model.js"
import { checkComplexity, complexity } from "../../src/query/Complexity.js"
import { type FilterNode, TRUE } from "../../src/query/Filter.js"
import type { RpcHandler } from "../../src/rpc/Handler.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, writeConfig } from "../support/services.js"

const f = { name: "x" } as unknown as FieldDef
const cmp: FilterNode = { _tag: "Cmp", field: f, op: "eq", value: 1 }
const inList = (n: number): FilterNode => ({ _tag: "In", field: f, values: Array.from({ length: n }, (_, i) => i), negate: false })

describe("complexity score", () => {
  it("is 10 per filter node + 1 per in/notIn value + 20 per sort key + offset rows / 100", () => {
    expect(complexity({ filter: TRUE }).total).toBe(0)
    expect(complexity({ filter: cmp }).total).toBe(10)
    // and(cmp, not(in[5]), or(cmp, isNull)): nodes and, cmp, not, in, or, cmp, isNull = 7
    const tree: FilterNode = {
      _tag: "And",
      nodes: [cmp, { _tag: "Not", node: inList(5) }, { _tag: "Or", nodes: [cmp, { _tag: "IsNull", field: f, isNull: true }] }]
    }
    const c = complexity({ filter: tree, sortKeys: 2, page: 11, limit: 50 })
    expect(c).toMatchObject({ filterNodes: 7, inValues: 5, sortKeys: 2, offsetRows: 500, filter: 75, sort: 40, page: 5, total: 120 })
  })

  it("contains / startsWith / endsWith add 1 per pattern character (code points)", () => {
    const like = (op: "contains" | "startsWith" | "endsWith", value: string): FilterNode => ({ _tag: "Like", field: f, op, value })
    expect(complexity({ filter: like("contains", "") }).total).toBe(10)
    expect(complexity({ filter: like("contains", "abc") }).total).toBe(13)
    expect(complexity({ filter: like("startsWith", "x".repeat(60)) })).toMatchObject({ filterNodes: 1, patternChars: 60, total: 70 })
    expect(complexity({ filter: like("endsWith", "😀😀") }).patternChars).toBe(2)
    // The review's count: 48 contains conditions of 60 characters under one AND scored 490; now 3370.
    const review: FilterNode = { _tag: "And", nodes: Array.from({ length: 48 }, () => like("contains", "y".repeat(60))) }
    expect(complexity({ filter: review }).total).toBe(49 * 10 + 48 * 60)
    const longer = complexity({ filter: like("contains", "y".repeat(200)) }).total
    expect(longer).toBeGreaterThan(complexity({ filter: like("contains", "y".repeat(20)) }).total)
  })

  it("a transaction's earlier operations count against the same limit", () => {
    expect(Exit.isSuccess(Effect.runSyncExit(checkComplexity({ filter: inList(490) }, 1000, 500)))).toBe(true)
    const over = Effect.runSyncExit(checkComplexity({ filter: inList(490) }, 1000, 510))
    expect(Exit.isFailure(over)).toBe(true)
    if (Exit.isFailure(over) && over.cause._tag === "Fail") {
      expect(over.cause.error.fields[0]!.error).toMatch(
        /^transaction complexity 1010 exceeds the limit 1000: the earlier operations score 510, this one 500 /
      )
    }
  })

  it("names the part that weighs most, with the numbers", () => {
    const deep = Effect.runSyncExit(checkComplexity({ filter: cmp, page: 2001, limit: 100 }, 1000))
    expect(Exit.isFailure(deep)).toBe(true)
    if (Exit.isFailure(deep) && deep.cause._tag === "Fail") {
      expect(deep.cause.error.fields[0]!.field).toBe("page")
      expect(deep.cause.error.fields[0]!.error).toMatch(/^query complexity 2010 exceeds the limit 1000: .*offset of 200000 rows/)
    }
    const wide = Effect.runSyncExit(checkComplexity({ filter: inList(995) }, 1000))
    expect(Exit.isFailure(wide) && wide.cause._tag === "Fail" && wide.cause.error.fields[0]!.field).toBe("filter")
    expect(Exit.isSuccess(Effect.runSyncExit(checkComplexity({ filter: inList(990) }, 1000)))).toBe(true)
  })
})

describe("over the limit: 422 from the handler", () => {
  let db: TestDatabase | undefined
  let runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown> | undefined
  let handle: ((frame: string) => Promise<string>) | undefined
  let next = 0

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    const file = writeConfig(daemonConfig(db, { performance: { max_query_complexity: 100 } }))
    ;({ runtime, handle } = await startInProcess(file))
  })
  afterAll(async () => {
    await runtime?.dispose()
    await db?.drop()
  })

  const call = async (method: string, params: ReadonlyArray<unknown>) => {
    const id = `c${++next}`
    const a = JSON.parse(await handle!(JSON.stringify({ id, method, params, auth: serviceAuth }))) as {
      result?: unknown
      error?: { code: number; details?: { fields?: Array<{ field: string; error: string }> } }
    }
    return a
  }
  const expect422 = async (method: string, params: ReadonlyArray<unknown>, field: string, score: number) => {
    const a = await call(method, params)
    expect(a.error?.code, JSON.stringify(a)).toBe(422)
    expect(a.error?.details?.fields?.[0]?.field).toBe(field)
    expect(a.error?.details?.fields?.[0]?.error).toMatch(new RegExp(`^query complexity ${score} exceeds the limit 100: `))
  }

  const elevenConditions = { AND: Array.from({ length: 10 }, (_, i) => ({ username: { ne: `x${i}` } })) }
  const names = (n: number) => Array.from({ length: n }, (_, i) => `user${i}`)

  it("list, count, findFirst, updateMany and deleteMany refuse a filter that is too complex", async () => {
    // 1 and + 10 conditions = 11 nodes = 110
    await expect422("list", ["User", { filter: elevenConditions }], "filter", 110)
    await expect422("count", ["User", elevenConditions], "filter", 110)
    await expect422("findFirst", ["User", elevenConditions], "filter", 110)
    // in list of 95 values: 1 node + 95 = 105
    await expect422("count", ["User", { username: { in: names(95) } }], "filter", 105)
    await expect422("updateMany", ["User", { username: { notIn: names(95) } }, { role: "user" }], "filter", 105)
    await expect422("deleteMany", ["User", { username: { in: names(95) } }], "filter", 105)
  })

  it("list refuses a page that is too deep, and sort keys count", async () => {
    // offset (200 - 1) × 60 = 11940 rows → 119
    await expect422("list", ["User", { page: 200, limit: 60 }], "page", 119)
    // 5 sort keys = 100, plus one condition = 110
    await expect422(
      "list",
      [
        "User",
        {
          filter: { role: "user" },
          sort: [{ username: "asc" }, { email: "asc" }, { role: "desc" }, { createdAt: "asc" }, { updatedAt: "asc" }]
        }
      ],
      "sort",
      110
    )
  })

  it("long contains / startsWith / endsWith patterns score more: a short one runs, a long one is refused", async () => {
    // 1 node + 89 characters = 99; 1 node + 91 characters = 101
    const ok = await call("count", ["User", { username: { contains: "a".repeat(89) } }])
    expect(ok.error, JSON.stringify(ok.error)).toBeUndefined()
    await expect422("count", ["User", { username: { contains: "a".repeat(91) } }], "filter", 101)
    await expect422("list", ["User", { filter: { email: { startsWith: "b".repeat(91) } } }], "filter", 101)
    await expect422("deleteMany", ["User", { email: { endsWith: "c".repeat(91) } }], "filter", 101)
  })

  it("a transaction's operations share one limit: each alone is admitted, together they are refused (422, rolled back)", async () => {
    const name = `tx${Date.now()}`
    // Each count scores 1 AND + 6 conditions = 70; two of them 140 > 100.
    const count = { method: "count", params: ["User", { AND: Array.from({ length: 6 }, (_, i) => ({ username: { ne: `x${i}` } })) }] }
    const alone = await call("transaction", [[count]])
    expect(alone.error, JSON.stringify(alone.error)).toBeUndefined()
    const create = { method: "create", params: ["User", { username: name, email: `${name}@example.com` }] }
    const a = await call("transaction", [[create, count, count]])
    expect(a.error?.code, JSON.stringify(a)).toBe(422)
    const details = a.error?.details as { operation?: number; rolledBack?: boolean; fields?: Array<{ field: string; error: string }> }
    expect(details.operation).toBe(2)
    expect(details.rolledBack).toBe(true)
    expect(details.fields?.[0]?.error).toMatch(
      /^transaction complexity 140 exceeds the limit 100: the earlier operations score 70, this one 70 /
    )
    // Rolled back: the create of operation 0 left nothing.
    expect((await call("count", ["User", { username: name }])).result).toBe(0)
    // One-condition counts score 10 each: eleven of them exceed 100, ten fit exactly.
    const counts = (n: number) => Array.from({ length: n }, () => ({ method: "count", params: ["User", { username: name }] }))
    const eleven = await call("transaction", [counts(11)])
    expect(eleven.error?.code, JSON.stringify(eleven)).toBe(422)
    expect((eleven.error?.details as { operation?: number }).operation).toBe(10)
    const ten = await call("transaction", [counts(10)])
    expect(ten.error, JSON.stringify(ten.error)).toBeUndefined()
  })

  it("requests within the limit run", async () => {
    const small = await call("list", ["User", { filter: { username: { in: names(60) } }, sort: { username: "asc" }, page: 2, limit: 10 }])
    expect(small.error, JSON.stringify(small.error)).toBeUndefined()
    const counted = await call("count", ["User", { AND: Array.from({ length: 9 }, (_, i) => ({ username: { ne: `x${i}` } })) }])
    expect(counted.result).toBe(0)
  })
})
