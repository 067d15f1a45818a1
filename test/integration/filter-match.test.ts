/**
 * The in-memory evaluation of filters (src/query/FilterMatch.ts, what realtime events are checked
 * with) selects exactly the rows the SQL of the same filter selects, on each real database: the
 * rows are written through the daemon, read back as records (what a subscriber's event is made
 * of), and every filter below is run both ways. The filters cover what access rules and
 * subscriptions use: each operator, NULLs under NOT and notIn, case-insensitive mode, text order
 * by code point (upper case, accents, astral characters), LIKE with wildcard characters, dates,
 * booleans and uuids.
 */
import { Either } from "effect"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { loadRegistry } from "../../src/entity/Load.js"
import { parseFilter } from "../../src/query/Filter.js"
import { compileMatch, matches } from "../../src/query/FilterMatch.js"
import { skipDialect } from "../support/services.js"
import { DIALECTS, type Rec, uid, useDaemon } from "./harness.js"

const registry = loadRegistry(fileURLToPath(new URL("../../config/entities", import.meta.url)))
const PageView = registry.entities.get("PageView")!

const TITLES = [
  "alpha",
  "Alpha",
  "ALPHA",
  "beta",
  "Zeta",
  "émile",
  "Émile",
  "a_b",
  "a%b",
  "a!b",
  "😀 smile",
  "\uFFFD last",
  "zz",
  "ab",
  "a",
  ""
]
const DESCRIPTIONS = [null, "some text", "Some Text", null, "x"]

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(dialect, () => {
    const h = useDaemon(dialect)

    it("selects the same rows in memory as in SQL, for every filter", async () => {
      const run = uid()
      const created: Array<Rec> = []
      for (const [i, title] of TITLES.entries()) {
        created.push(
          await h.ok<Rec>("create", [
            "PageView",
            {
              slug: `fm-${run}-${i}`,
              title: `${run}${title}`,
              description: DESCRIPTIONS[i % DESCRIPTIONS.length],
              level: (i % 5) + 1,
              layout: i % 3 === 0 ? {} : { i },
              isActive: i % 2 === 0
            }
          ])
        )
      }
      const mid = created[7]!
      const scope = { slug: { startsWith: `fm-${run}-` } }
      const filters: Array<Rec> = [
        { title: `${run}alpha` },
        { title: { ne: `${run}alpha` } },
        { title: { gt: `${run}a` } },
        { title: { gte: `${run}Zeta` } },
        { title: { lt: `${run}émile` } },
        { title: { lte: `${run}😀 smile` } },
        { title: { gt: `${run}\uFFFD` } },
        { title: { in: [`${run}alpha`, `${run}beta`, "nothing"] } },
        { title: { notIn: [`${run}alpha`, `${run}beta`] } },
        { title: { in: [] } },
        { title: { notIn: [] } },
        { title: { contains: "a_b" } },
        { title: { contains: "%" } },
        { title: { contains: "!" } },
        { title: { startsWith: `${run}A` } },
        { title: { endsWith: "ile" } },
        { title: { contains: "LPH", mode: "insensitive" } },
        { title: { eq: `${run}ALPHA`, mode: "insensitive" } },
        { title: { in: [`${run}ÉMILE`, `${run}BETA`], mode: "insensitive" } },
        { title: { notIn: [`${run}ALPHA`], mode: "insensitive" } },
        { title: { startsWith: `${run}é`, mode: "insensitive" } },
        { description: null },
        { description: { isNull: false } },
        { description: "some text" },
        { description: { ne: "some text" } },
        { NOT: { description: "some text" } },
        { description: { notIn: ["x"] } },
        { NOT: { description: { in: ["x", "some text"] } } },
        { description: { contains: "text", mode: "insensitive" } },
        { NOT: { description: { contains: "Text" } } },
        { level: 3 },
        { level: { gt: 2, lte: 4 } },
        { level: { notIn: [1, 5] } },
        { OR: [{ level: 1 }, { description: "x" }] },
        { OR: [{ description: "some text" }, { NOT: { description: "some text" } }] },
        { AND: [{ level: { gte: 2 } }, { OR: [{ isActive: true }, { description: null }] }] },
        { NOT: [{ level: 1 }, { isActive: false }] },
        { OR: [] },
        { AND: [] },
        { isActive: true },
        { isActive: { ne: false } },
        { layout: null },
        { layout: { isNull: false } },
        { id: mid.id },
        { id: { in: [created[0]!.id, created[3]!.id] } },
        { id: { gt: mid.id } },
        { createdAt: { lte: String(mid.createdAt) } },
        { createdAt: { gt: "2000-01-01T00:00:00+02:00" } },
        { updatedAt: { lt: "2000-01-01T00:00:00Z" } }
      ].map((f) => JSON.parse(JSON.stringify(f)) as Rec)

      const all = (await h.ok<{ data: Array<Rec> }>("list", ["PageView", { filter: scope, limit: 100 }])).data
      expect(all).toHaveLength(TITLES.length)
      for (const filter of filters) {
        const parsed = parseFilter(PageView, filter)
        if (Either.isLeft(parsed))
          throw new Error(`test filter ${JSON.stringify(filter)} is not valid: ${JSON.stringify(parsed.left.fields)}`)
        const inSql = (await h.ok<{ data: Array<Rec> }>("list", ["PageView", { filter: { AND: [scope, filter] }, limit: 100 }])).data
        const sqlIds = inSql.map((r) => r.id).sort()
        const memIds = all
          .filter((r) => matches(parsed.right, r))
          .map((r) => r.id)
          .sort()
        expect(memIds, `${dialect}: ${JSON.stringify(filter)}`).toEqual(sqlIds)
      }
    })
  })
}

describe("FilterMatch: unknown fields", () => {
  it("a field the record lacks is neither true nor false, even under NOT", () => {
    const f = parseFilter(PageView, { NOT: { level: 1 } })
    if (Either.isLeft(f)) throw new Error("invalid")
    const test = compileMatch(f.right)
    expect(test({ id: "x" })).toBe("M")
    expect(test({ id: "x", level: null })).toBe("N")
    expect(test({ id: "x", level: 2 })).toBe("T")
    const or = parseFilter(PageView, { OR: [{ level: 1 }, { title: "t" }] })
    if (Either.isLeft(or)) throw new Error("invalid")
    expect(compileMatch(or.right)({ title: "t" })).toBe("T")
    expect(compileMatch(or.right)({ title: "u" })).toBe("M")
    expect(compileMatch(or.right)({ title: "u", level: 2 })).toBe("F")
  })
})
