/**
 * The pure decisions behind one-statement writes (src/query/WritePlan.ts): an update skips its
 * post-condition only when it writes no field its row filter tests, and a create is admitted in
 * memory only when the answer cannot depend on the database (otherwise the database decides).
 */
import { Either } from "effect"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { loadRegistry } from "../../src/entity/Load.js"
import type { EntityDef, FieldDef } from "../../src/entity/Model.js"
import type { Values } from "../../src/entity/Validate.js"
import { type FilterNode, parseFilter, TRUE } from "../../src/query/Filter.js"
import { admitsNewRecord, touchesFilter } from "../../src/query/WritePlan.js"

const registry = loadRegistry(fileURLToPath(new URL("../../config/entities", import.meta.url)))
const PageView = registry.entities.get("PageView") as EntityDef
const field = (name: string): FieldDef => PageView.byName.get(name) as FieldDef

const filter = (spec: unknown): FilterNode => {
  const r = parseFilter(PageView, spec)
  if (Either.isLeft(r)) throw new Error(JSON.stringify(r.left))
  return r.right
}

const record = (values: Record<string, unknown>): Values => new Map(Object.entries(values).map(([k, v]) => [field(k), v]))

describe("touchesFilter", () => {
  it("is false without a row filter, or when no written field is tested", () => {
    expect(touchesFilter(TRUE, [field("isActive")])).toBe(false)
    expect(touchesFilter(filter({ isActive: true }), [field("title"), field("updatedAt")])).toBe(false)
  })
  it("is true when a written field is tested, at any depth", () => {
    expect(touchesFilter(filter({ isActive: true }), [field("title"), field("isActive")])).toBe(true)
    expect(touchesFilter(filter({ OR: [{ level: { lt: 3 } }, { NOT: { slug: "x" } }] }), [field("slug")])).toBe(true)
  })
})

describe("admitsNewRecord", () => {
  const full = { slug: "a", title: "Title", level: 2, isActive: true, createdAt: new Date("2026-01-01T00:00:00Z") }

  it("admits a record the filter surely admits (equality, numbers, instants, NULL tests)", () => {
    expect(admitsNewRecord(filter({ isActive: true }), record(full))).toBe(true)
    expect(admitsNewRecord(filter({ level: { lte: 3 }, title: { in: ["Title", "Other"] } }), record(full))).toBe(true)
    expect(admitsNewRecord(filter({ createdAt: { gte: "2025-12-31T00:00:00Z" } }), record(full))).toBe(true)
    expect(admitsNewRecord(filter({ description: null }), record({ ...full, description: null }))).toBe(true)
  })
  it("does not admit a record the filter refuses, or where SQL would answer NULL", () => {
    expect(admitsNewRecord(filter({ isActive: true }), record({ ...full, isActive: false }))).toBe(false)
    expect(admitsNewRecord(filter({ NOT: { description: "x" } }), record({ ...full, description: null }))).toBe(false)
  })
  it("leaves to the database what depends on collation or on values it assigns", () => {
    expect(admitsNewRecord(filter({ title: { gt: "A" } }), record(full))).toBe(false)
    expect(admitsNewRecord(filter({ title: { contains: "it" } }), record(full))).toBe(false)
    expect(admitsNewRecord(filter({ title: { eq: "title", mode: "insensitive" } }), record(full))).toBe(false)
    expect(admitsNewRecord(filter({ level: 2 }), record({ slug: "a" }))).toBe(false)
  })
})
