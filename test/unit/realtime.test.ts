/**
 * The pure parts of realtime: announcements between replicas stay under PostgreSQL's NOTIFY
 * limit whatever the write (ids always kept, before images whole, shrunk or left out, private
 * fields never sent), the event each subscriber gets for each case of the decision table, the
 * keys under which subscriptions share a decision, and the frames laid out for one write.
 */
import { Either } from "effect"
import { randomUUID } from "node:crypto"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import * as ws from "ws"
import { loadRegistry } from "../../src/entity/Load.js"
import { parseFilter, TRUE } from "../../src/query/Filter.js"
import { compileMatch } from "../../src/query/FilterMatch.js"
import { decodeAnnouncement, encodeAnnouncements } from "../../src/realtime/Announce.js"
import { decide, project, type View } from "../../src/realtime/Deliver.js"
import { filterKey } from "../../src/realtime/Groups.js"
import { encodeTextFrames } from "../../src/realtime/PushSocket.js"
import type { RowChange } from "../../src/services/Changes.js"

const registry = loadRegistry(fileURLToPath(new URL("../../config/entities", import.meta.url)))
const PageView = registry.entities.get("PageView")!

const LIMIT = 7900
const bytes = (s: string) => Buffer.byteLength(s, "utf8")

describe("announcements", () => {
  it("a bulk write of 1,000 rows is cut into announcements under the limit, every id kept in order", () => {
    const rows: Array<RowChange> = Array.from({ length: 1000 }, (_, i) => ({
      op: "update",
      id: randomUUID(),
      before: { id: "x", title: `t${i}`, level: i % 5 }
    }))
    const out = encodeAnnouncements("origin", "PageView", rows, LIMIT)
    expect(out.length).toBeGreaterThan(1)
    for (const m of out) expect(bytes(m)).toBeLessThanOrEqual(LIMIT)
    const decoded = out.flatMap((m) => decodeAnnouncement(m)!.rows!)
    expect(decoded.map((r) => r.id)).toEqual(rows.map((r) => r.id))
    expect(decoded.every((r) => r.partial !== true && r.before !== undefined)).toBe(true)
  })

  it("a before image too large is shrunk (largest values first, marked partial); private fields never travel", () => {
    const id = randomUUID()
    const before = { id, title: "small", level: 2, description: "é".repeat(10_000), token: "secret-token" }
    const [m, ...rest] = encodeAnnouncements("o", "Session", [{ op: "delete", id, before }], LIMIT, new Set(["token"]))
    expect(rest).toEqual([])
    expect(bytes(m!)).toBeLessThanOrEqual(LIMIT)
    expect(m).not.toContain("secret-token")
    const r = decodeAnnouncement(m!)!.rows![0]!
    expect(r).toEqual({ op: "delete", id, before: { id, title: "small", level: 2 }, partial: true })
    // Whole when it fits, but still partial when a private field was left out.
    const small = decodeAnnouncement(
      encodeAnnouncements("o", "Session", [{ op: "update", id, before: { id, token: "t", level: 1 } }], LIMIT, new Set(["token"]))[0]!
    )!
    expect(small.rows![0]).toEqual({ op: "update", id, before: { id, level: 1 }, partial: true })
  })

  it("names alone without rows; foreign traffic on the channel is ignored", () => {
    expect(encodeAnnouncements("o", "User", undefined, LIMIT)).toEqual([JSON.stringify({ origin: "o", entity: "User" })])
    expect(decodeAnnouncement("not json")).toBeUndefined()
    expect(decodeAnnouncement(JSON.stringify({ origin: 1, entity: "User" }))).toBeUndefined()
    expect(
      decodeAnnouncement(
        JSON.stringify({
          origin: "o",
          entity: "User",
          rows: [
            ["drop", "x"],
            ["update", 3],
            ["create", "a"]
          ]
        })
      )!.rows
    ).toEqual([{ op: "create", id: "a" }])
  })
})

describe("which event a subscriber gets", () => {
  const compiled = (spec: unknown) => {
    const f = parseFilter(PageView, spec)
    if (Either.isLeft(f)) throw new Error("invalid filter")
    return compileMatch(f.right)
  }
  const user: View = {
    access: compiled({ level: { lte: 2 } }),
    readable: ["id", "title", "level"].map((n) => PageView.byName.get(n)!),
    allRows: false
  }
  const everyone: View = { access: compileMatch(TRUE), readable: PageView.exposed, allRows: true }
  const all = compileMatch(TRUE)
  const id = randomUUID()
  const row = (level: number) => ({ id, title: "t", level, layout: {} })

  it("creates: only when the new row is in view", () => {
    expect(decide(user, all, { op: "create", id }, row(1))).toEqual({ event: "create", from: "after" })
    expect(decide(user, all, { op: "create", id }, row(3))).toBeUndefined()
    expect(decide(user, all, { op: "create", id }, undefined)).toBeUndefined()
  })

  it("updates: into view is a create, out of view a delete, neither nothing", () => {
    expect(decide(user, all, { op: "update", id, before: row(3) }, row(1))).toEqual({ event: "create", from: "after" })
    expect(decide(user, all, { op: "update", id, before: row(1) }, row(2))).toEqual({ event: "update", from: "after" })
    expect(decide(user, all, { op: "update", id, before: row(1) }, row(4))).toEqual({ event: "delete", from: "before" })
    expect(decide(user, all, { op: "update", id, before: row(4) }, row(5))).toBeUndefined()
    // The subscription's own filter counts as much as the access.
    expect(decide(everyone, compiled({ title: "t" }), { op: "update", id, before: row(1) }, { ...row(1), title: "u" })).toEqual({
      event: "delete",
      from: "before"
    })
  })

  it("deletes: against the row as it was; a row still there gives nothing", () => {
    expect(decide(user, all, { op: "delete", id, before: row(2) }, undefined)).toEqual({ event: "delete", from: "before" })
    expect(decide(user, all, { op: "delete", id, before: row(3) }, undefined)).toBeUndefined()
    expect(decide(user, all, { op: "delete", id, before: row(2) }, row(2))).toBeUndefined()
  })

  it("an unknown before image: an update is an upsert; a delete carries the id alone, and only to those who may have read the row", () => {
    expect(decide(user, all, { op: "update", id }, row(1))).toEqual({ event: "update", from: "after" })
    expect(decide(user, all, { op: "update", id }, row(3))).toEqual({ event: "delete", from: "id" })
    expect(decide(user, all, { op: "delete", id }, undefined)).toEqual({ event: "delete", from: "id" })
    // Partial, but the access test's field travelled: decided, and nothing for a row never in view.
    expect(decide(user, all, { op: "delete", id, before: { id, level: 4 }, partial: true }, undefined)).toBeUndefined()
    expect(decide(user, all, { op: "delete", id, before: { id, level: 1 }, partial: true }, undefined)).toEqual({
      event: "delete",
      from: "id"
    })
    // The subscription filter's field did not travel: the id alone, to a subscriber whose access admitted it.
    expect(decide(user, compiled({ title: "t" }), { op: "delete", id, before: { id, level: 1 }, partial: true }, undefined)).toEqual({
      event: "delete",
      from: "id"
    })
  })

  it("a record holds the readable fields and the id", () => {
    const noId: View = { ...user, readable: ["title"].map((n) => PageView.byName.get(n)!) }
    expect(project(PageView, noId, { ...row(1), description: "hidden" })).toEqual({ id, title: "t" })
    expect(project(PageView, user, { ...row(1), description: "hidden" })).toEqual({ id, title: "t", level: 1 })
  })
})

describe("what subscriptions share", () => {
  const parsed = (spec: unknown) => {
    const f = parseFilter(PageView, spec)
    if (Either.isLeft(f)) throw new Error("invalid filter")
    return f.right
  }

  it("filters built apart with the same meaning share a key; values of different types never do", () => {
    const spec = { AND: [{ title: { startsWith: "rt-" } }, { level: { gte: 1 } }] }
    expect(filterKey(parsed(spec))).toBe(filterKey(parsed(structuredClone(spec))))
    const keys = [
      filterKey(parsed({ title: "5" })),
      filterKey(parsed({ level: 5 })),
      filterKey(parsed({ title: "6" })),
      filterKey({ _tag: "Cmp", field: PageView.byName.get("level")!, op: "eq", value: 5n }),
      filterKey({ _tag: "Cmp", field: PageView.byName.get("level")!, op: "eq", value: new Date(5) }),
      filterKey({ _tag: "Cmp", field: PageView.byName.get("level")!, op: "eq", value: new Date(5).toISOString() }),
      filterKey({ _tag: "In", field: PageView.byName.get("level")!, values: [new Date(5)], negate: false }),
      filterKey({ _tag: "In", field: PageView.byName.get("level")!, values: [new Date(5).toISOString()], negate: false })
    ]
    expect(new Set(keys).size).toBe(keys.length)
  })

  it("frames laid out in one buffer read back, in order, as the text frames they were pushed as (every length encoding)", () => {
    const texts = ["{}", "x".repeat(200), `{"a":"${"é".repeat(40_000)}"}`]
    const parts = texts.flatMap((t) => [Buffer.from(t.slice(0, 1)), Buffer.from(t.slice(1))])
    const size = texts.reduce(
      (n, t) => n + Buffer.byteLength(t) + (Buffer.byteLength(t) < 126 ? 2 : Buffer.byteLength(t) < 65536 ? 4 : 10),
      0
    )
    const received: Array<string> = []
    // ws's own frame parser, as a client runs it (its type declarations leave it out).
    const { Receiver } = ws as unknown as {
      Receiver: new (o: { isServer: boolean }) => {
        on: (e: "message", f: (data: Buffer, isBinary: boolean) => void) => void
        write: (b: Buffer) => void
      }
    }
    const receiver = new Receiver({ isServer: false })
    receiver.on("message", (data: Buffer, isBinary: boolean) => received.push(`${isBinary ? "binary " : ""}${String(data)}`))
    receiver.write(encodeTextFrames(parts, size))
    expect(received).toEqual(texts)
  })
})
