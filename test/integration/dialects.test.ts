/**
 * What the three databases would naturally do differently, made identical by the daemon: JSON
 * values, booleans, timestamps, case-sensitive comparison, literal LIKE wildcards, hidden fields
 * and values that look like SQL.
 */
import { describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { DIALECTS, expectIsoUtc, fieldNames, fixtures, type Rec, uid, useDaemon } from "./harness.js"

interface ListResult {
  readonly data: ReadonlyArray<Rec>
  readonly total: number
}

const NESTED = {
  title: "héllo wörld — 日本語 🌍 \"quoted\" 'single' back\\slash",
  n: 0,
  neg: -3,
  float: 1.5,
  big: 12345678901234,
  small: 0.000125,
  yes: true,
  no: false,
  nothing: null,
  empty: {},
  list: [1, "two", null, false, { deep: [[], [{}], { ключ: "значение" }] }],
  "key with spaces": "v",
  "": "empty key"
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(dialect, () => {
    const h = useDaemon(dialect)
    const { ok, fail, count } = h
    const fx = fixtures(h)

    it("JSON fields round-trip as JSON values on every entity", async () => {
      const page = await fx.page({ layout: NESTED })
      expect(page.layout).toEqual(NESTED)
      expect(typeof page.layout).toBe("object")
      expect((await ok<Rec>("read", ["PageView", page.id])).layout).toEqual(NESTED)
      expect((await ok<ListResult>("list", ["PageView", { filter: { id: page.id } }])).data[0]!.layout).toEqual(NESTED)
      expect((await ok<Rec>("findByField", ["PageView", "slug", page.slug])).layout).toEqual(NESTED)

      const comp = await ok<Rec>("create", [
        "ComponentHierarchy",
        { pageId: page.id, componentType: "Box", props: { a: [1, { b: null }], ok: true } }
      ])
      expect(comp.props).toEqual({ a: [1, { b: null }], ok: true })
      const defaults = await ok<Rec>("create", ["ComponentHierarchy", { pageId: page.id, componentType: "Box" }])
      expect(defaults.props).toEqual({})
      expect(defaults.order).toBe(0)

      const u = await fx.user()
      const steps = [
        { id: 1, action: "send", args: ["a", 2, true, null] },
        { id: 2, action: "wait", ms: 1000 }
      ]
      const w = await fx.workflow(String(u.id), { steps, triggerConfig: { cron: "*/5 * * * *", tz: "UTC", enabled: false } })
      expect(w.steps).toEqual(steps)
      expect(w.triggerConfig).toEqual({ cron: "*/5 * * * *", tz: "UTC", enabled: false })

      const lua = await ok<Rec>("create", [
        "LuaScript",
        { name: `lua-${uid()}`, code: "return 1", createdBy: u.id, allowedGlobals: ["print", "math", "string.format"] }
      ])
      expect(lua.allowedGlobals).toEqual(["print", "math", "string.format"])
      expect(lua.isSandboxed).toBe(true)
      expect(lua.timeoutMs).toBe(5000)
      const luaDefault = await ok<Rec>("create", ["LuaScript", { name: `lua-${uid()}`, code: "return 2", createdBy: u.id }])
      expect(luaDefault.allowedGlobals).toEqual([])

      const manifest = { deps: { "a-b": "^1.2.3" }, files: ["x.lua"], size: 1024, beta: false, license: null }
      const pkg = await ok<Rec>("create", ["Package", { name: `pkg-${uid()}`, version: "1.2.3", author: "Zoë", manifest }])
      expect(pkg.manifest).toEqual(manifest)
      expect(pkg.isInstalled).toBe(false)
      expect(pkg.installedAt).toBeNull()
      expect(pkg.installedBy).toBeNull()
      expect(pkg.description).toBeNull()

      // update replaces a JSON value
      const updated = await ok<Rec>("update", ["PageView", page.id, { layout: [1, [2, [3]], "x"] }])
      expect(updated.layout).toEqual([1, [2, [3]], "x"])
    })

    it("JSON numbers keep their exact values", async () => {
      const numbers = [
        0.1,
        0.30000000000000004,
        1e300,
        -1e-7,
        2 ** 53 - 1,
        -(2 ** 53) + 1,
        123.456e10,
        5e-324,
        1.7976931348623157e308,
        100,
        1e21
      ]
      const u = await fx.user()
      const w = await fx.workflow(String(u.id), { steps: numbers, triggerConfig: { n: numbers } })
      expect(w.steps).toEqual(numbers)
      expect(w.triggerConfig).toEqual({ n: numbers })
      expect((await ok<Rec>("read", ["Workflow", w.id])).steps).toEqual(numbers)
      const text = { s: '\u2028\u2029 \\ " / \b\f\n\r\t \u0001 \u007f \uFFFF', ключ: "😀" }
      const w2 = await fx.workflow(String(u.id), { triggerConfig: text, steps: [text] })
      expect(w2.triggerConfig).toEqual(text)
      expect((await ok<Rec>("read", ["Workflow", w2.id])).steps).toEqual([text])
      await fail(422, "create", [
        "Workflow",
        { name: `bad-${uid()}`, trigger: "manual", triggerConfig: { s: "\u0000" }, steps: [], createdBy: u.id }
      ])
    })

    it("JSON scalars and strings that look like JSON stay what they were", async () => {
      const u = await fx.user()
      for (const value of ['{"a":1}', "plain", "", 42, -0.5, true, false, [], {}, ["[]"], { s: "{}" }]) {
        const w = await fx.workflow(String(u.id), { triggerConfig: value, steps: [value] })
        expect(w.triggerConfig, JSON.stringify(value)).toEqual(value)
        expect(w.steps).toEqual([value])
        const back = await ok<Rec>("read", ["Workflow", w.id])
        expect(back.triggerConfig).toEqual(value)
        expect(typeof back.triggerConfig).toBe(typeof value)
      }
      // JSON fields can only be tested for null, and not sorted
      await fail(422, "list", ["Workflow", { filter: { steps: { contains: "x" } } }])
      await fail(422, "list", ["Workflow", { sort: { steps: "asc" } }])
      expect(await count("Workflow", { steps: { isNull: false }, createdBy: u.id })).toBe(11)
    })

    it("booleans come back as booleans and filter as booleans", async () => {
      const tag = uid()
      const a = await fx.page({ title: `B${tag}`, isActive: true })
      const b = await fx.page({ title: `B${tag}`, isActive: false })
      const c = await fx.page({ title: `B${tag}` })
      expect([a.isActive, b.isActive, c.isActive]).toEqual([true, false, true])
      const rows = (
        await ok<ListResult>("list", ["PageView", { filter: { title: `B${tag}` }, sort: [{ isActive: "asc" }, { slug: "asc" }] }])
      ).data
      expect(rows.map((r) => r.isActive)).toEqual([false, true, true])
      for (const r of rows) expect(typeof r.isActive).toBe("boolean")
      expect(await count("PageView", { title: `B${tag}`, isActive: false })).toBe(1)
      expect(await count("PageView", { title: `B${tag}`, isActive: { ne: false } })).toBe(2)
      expect(await count("PageView", { title: `B${tag}`, isActive: { in: [true, false] } })).toBe(3)
      expect((await ok<Rec>("update", ["PageView", b.id, { isActive: true }])).isActive).toBe(true)
      expect(await ok("updateMany", ["PageView", { title: `B${tag}` }, { isActive: false }])).toBe(3)
      expect(await count("PageView", { title: `B${tag}`, isActive: true })).toBe(0)
    })

    it("timestamps are ISO-8601 UTC; date-time input with an offset is stored as the same instant", async () => {
      const u = await fx.user()
      const pkg = await ok<Rec>("create", [
        "Package",
        {
          name: `ts-${uid()}`,
          version: "0.0.1",
          author: "a",
          manifest: {},
          installedAt: "2024-01-15T10:30:00+02:00",
          installedBy: u.id,
          isInstalled: true
        }
      ])
      expect(pkg.installedAt).toBe("2024-01-15T08:30:00.000Z")
      expectIsoUtc(pkg.createdAt)
      expectIsoUtc(pkg.updatedAt)
      const again = await ok<Rec>("read", ["Package", pkg.id])
      expect(again.installedAt).toBe("2024-01-15T08:30:00.000Z")
      expect(again.installedBy).toBe(u.id)
      const frac = await ok<Rec>("update", ["Package", pkg.id, { installedAt: "2024-06-30T23:59:59.987Z" }])
      expect(frac.installedAt).toBe("2024-06-30T23:59:59.987Z")
      const early = await ok<Rec>("update", ["Package", pkg.id, { installedAt: "1999-12-31T23:00:00-01:00" }])
      expect(early.installedAt).toBe("2000-01-01T00:00:00.000Z")
      // filters compare instants, whatever the offset of the operand
      expect(await count("Package", { id: pkg.id, installedAt: "2000-01-01T01:00:00+01:00" })).toBe(1)
      expect(await count("Package", { id: pkg.id, installedAt: { gt: "1999-12-31T23:59:59.999Z" } })).toBe(1)
      expect(await count("Package", { id: pkg.id, installedAt: { gte: "2000-01-01T00:00:00.001Z" } })).toBe(0)
      expect(await count("Package", { id: pkg.id, installedAt: { lt: "2000-01-01T00:00:00.001Z" } })).toBe(1)
      expect((await ok<Rec>("update", ["Package", pkg.id, { installedAt: null }])).installedAt).toBeNull()
      // createdAt of a user is the stored one
      expect((await ok<Rec>("read", ["User", u.id])).createdAt).toBe(u.createdAt)
    })

    it("Credential.passwordHash is never returned, nor usable in filters or sorts", async () => {
      const u = await fx.user()
      const cred = await ok<Rec>("create", ["Credential", { username: u.username, passwordHash: "$argon2id$v=19$secret-hash" }])
      expect(cred).not.toHaveProperty("passwordHash")
      expect(Object.keys(cred).sort()).toEqual(["createdAt", "firstLogin", "id", "updatedAt", "username"])
      expect(cred.firstLogin).toBe(true)
      const read = await ok<Rec>("read", ["Credential", cred.id])
      expect(read).toEqual(cred)
      const listed = await ok<ListResult>("list", ["Credential", { filter: { username: u.username } }])
      expect(listed.data).toEqual([cred])
      const byField = await ok<Rec>("findByField", ["Credential", "username", u.username])
      expect(byField).toEqual(cred)
      const first = await ok<Rec>("findFirst", ["Credential", { id: cred.id }])
      expect(first).toEqual(cred)
      const updated = await ok<Rec>("update", ["Credential", cred.id, { passwordHash: "$argon2id$new", firstLogin: false }])
      expect(updated).not.toHaveProperty("passwordHash")
      expect(updated.firstLogin).toBe(false)
      const up = await ok<Rec>("upsert", ["Credential", "username", u.username, { passwordHash: "x" }, { passwordHash: "y" }])
      expect(up).not.toHaveProperty("passwordHash")
      expect(JSON.stringify([cred, read, listed, byField, first, updated, up])).not.toMatch(/argon|secret-hash|passwordHash|password_hash/)

      let e = await fail(422, "list", ["Credential", { filter: { passwordHash: "$argon2id$new" } }])
      expect(fieldNames(e)).toEqual(["filter.passwordHash"])
      e = await fail(422, "list", ["Credential", { sort: { passwordHash: "asc" } }])
      expect(fieldNames(e)).toEqual(["sort.passwordHash"])
      await fail(422, "count", ["Credential", { passwordHash: { startsWith: "$" } }])
      await fail(422, "findFirst", ["Credential", { OR: [{ passwordHash: "y" }] }])
      await fail(422, "findByField", ["Credential", "passwordHash", "y"])
      await fail(422, "deleteMany", ["Credential", { passwordHash: "y" }])
      await fail(422, "updateMany", ["Credential", { passwordHash: "y" }, { firstLogin: true }])
      expect(await count("Credential", { id: cred.id })).toBe(1)
    })

    it("string comparison is case-sensitive: equality, unique values, contains/startsWith/endsWith, in", async () => {
      const tag = uid()
      const lower = await fx.user({ username: `case_${tag}`, email: `case_${tag}@example.com` })
      const upper = await fx.user({ username: `CASE_${tag}`, email: `CASE_${tag}@example.com` })
      expect(upper.id).not.toBe(lower.id)
      expect(await ok("findByField", ["User", "username", `Case_${tag}`])).toBeNull()
      expect(await ok<Rec>("findByField", ["User", "username", `CASE_${tag}`])).toEqual(upper)
      expect(await ok<Rec>("findByField", ["User", "email", `case_${tag}@example.com`])).toEqual(lower)
      expect(await count("User", { username: `case_${tag}` })).toBe(1)
      expect(await count("User", { username: { in: [`case_${tag}`, `Case_${tag}`] } })).toBe(1)
      expect(await count("User", { username: { contains: `ase_${tag}` } })).toBe(1)
      expect(await count("User", { username: { contains: `ASE_${tag}` } })).toBe(1)
      expect(await count("User", { username: { startsWith: "case_" }, email: { endsWith: `${tag}@example.com` } })).toBe(1)
      expect(await count("User", { username: { startsWith: "Case_" }, email: { endsWith: `${tag}@example.com` } })).toBe(0)
      expect(await count("User", { username: { endsWith: `SE_${tag}` } })).toBe(1)
      expect(await count("User", { username: { endsWith: `Se_${tag}` } })).toBe(0)
      expect(await count("User", { email: { endsWith: `${tag}@EXAMPLE.COM` } })).toBe(0)
      expect(await count("User", { username: { gte: `CASE_${tag}`, lte: `case_${tag}` }, email: { endsWith: `${tag}@example.com` } })).toBe(
        2
      )
      expect(await count("User", { username: { gt: `CASE_${tag}`, lt: `case_${tag}` }, email: { endsWith: `${tag}@example.com` } })).toBe(0)
      const p = await fx.page({ title: `Straße ${tag}`, description: `ÄÖÜ ${tag}` })
      expect(await count("PageView", { id: p.id, description: { contains: "äöü" } })).toBe(0)
      expect(await count("PageView", { id: p.id, description: { contains: "ÄÖÜ" } })).toBe(1)
      expect(await count("PageView", { id: p.id, title: `STRASSE ${tag}` })).toBe(0)
      expect(await count("PageView", { id: p.id, title: `Straße ${tag}` })).toBe(1)
      // updateByField/deleteByField follow the same rule
      await fail(404, "updateByField", ["User", "username", `Case_${tag}`, { role: "admin" }])
      await fail(404, "deleteByField", ["User", "username", `Case_${tag}`])
      expect(await count("User", { id: { in: [lower.id, upper.id] } })).toBe(2)
    })

    it('mode "insensitive" folds A-Z (and nothing else) in eq, ne, in, notIn, contains, startsWith, endsWith', async () => {
      const tag = uid()
      const TAG = tag.toUpperCase()
      const scope = { description: `ci-${tag}` }
      const titles = [
        `Mixed ${tag}`,
        `MIXED ${TAG}`,
        `mixed ${tag}`,
        `mixed ${tag} `,
        `Émile ${tag}`,
        `émile ${tag}`,
        `Straße ${tag}`,
        `STRASSE ${tag}`,
        `50%_OFF ${tag}`
      ]
      const ids = new Map<string, unknown>()
      for (const t of titles) ids.set(t, (await fx.page({ title: t, ...scope })).id)
      const titlesOf = async (title: Rec) =>
        (await ok<ListResult>("list", ["PageView", { filter: { ...scope, title }, sort: { title: "asc" }, limit: 100 }])).data
          .map((r) => r.title)
          .sort()
      const ci = (over: Rec) => titlesOf({ ...over, mode: "insensitive" })
      const sorted = (...t: Array<string>) => [...t].sort()
      expect(await ci({ eq: `mixed ${tag}` })).toEqual(sorted(`Mixed ${tag}`, `MIXED ${TAG}`, `mixed ${tag}`))
      expect(await ci({ eq: `MiXeD ${TAG}` })).toEqual(sorted(`Mixed ${tag}`, `MIXED ${TAG}`, `mixed ${tag}`))
      expect(await ci({ ne: `mixed ${tag}` })).toHaveLength(titles.length - 3)
      expect(await ci({ in: [`MIXED ${tag}`, `émile ${TAG}`] })).toEqual(
        sorted(`Mixed ${tag}`, `MIXED ${TAG}`, `mixed ${tag}`, `émile ${tag}`)
      )
      expect(await ci({ notIn: [`MIXED ${tag}`, `émile ${TAG}`] })).toHaveLength(titles.length - 4)
      expect(await ci({ contains: "IXED" })).toEqual(sorted(`Mixed ${tag}`, `MIXED ${TAG}`, `mixed ${tag}`, `mixed ${tag} `))
      expect(await ci({ startsWith: "mIx", endsWith: ` ${TAG}` })).toEqual(sorted(`Mixed ${tag}`, `MIXED ${TAG}`, `mixed ${tag}`))
      // only A-Z fold: É/é, ß/SS stay different on every dialect
      expect(await ci({ startsWith: "émile" })).toEqual([`émile ${tag}`])
      expect(await ci({ startsWith: "ÉMILE" })).toEqual([`Émile ${tag}`])
      expect(await ci({ contains: "straße" })).toEqual([`Straße ${tag}`])
      expect(await ci({ contains: "strasse" })).toEqual([`STRASSE ${tag}`])
      // wildcards stay literal, trailing spaces significant
      expect(await ci({ contains: "%_off" })).toEqual([`50%_OFF ${tag}`])
      expect(await ci({ contains: "%x" })).toEqual([])
      expect(await ci({ eq: `MIXED ${tag} ` })).toEqual([`mixed ${tag} `])
      // the default mode (said or not) stays case-sensitive
      expect(await titlesOf({ contains: "IXED" })).toEqual([`MIXED ${TAG}`])
      expect(await titlesOf({ contains: "IXED", mode: "default" })).toEqual([`MIXED ${TAG}`])
      expect(await titlesOf({ eq: `mixed ${tag}` })).toEqual([`mixed ${tag}`])
      // the folded pattern combines with other conditions and with NOT / OR
      expect(
        (await ok<ListResult>("list", ["PageView", { filter: { ...scope, NOT: { title: { contains: "mixed", mode: "insensitive" } } } }]))
          .total
      ).toBe(titles.length - 4)
      expect(
        await count("PageView", {
          ...scope,
          OR: [{ title: { startsWith: "STRA", mode: "insensitive" } }, { title: { endsWith: "OFF " + TAG, mode: "insensitive" } }]
        })
      ).toBe(3)
      // mode only on free text, only with the operators it applies to, only its two values
      for (const bad of [
        { level: { eq: 1, mode: "insensitive" } },
        { id: { eq: ids.get(`Mixed ${tag}`), mode: "insensitive" } },
        { title: { gt: "a", mode: "insensitive" } },
        { title: { mode: "insensitive" } },
        { title: { eq: "a", mode: "INSENSITIVE" } }
      ]) {
        const e = await fail(422, "list", ["PageView", { filter: bad }])
        expect(
          fieldNames(e).some((f) => /^filter\.(level|id|title)\.(mode|gt)$/.test(f)),
          JSON.stringify(e)
        ).toBe(true)
      }
      await fail(422, "list", ["Workflow", { filter: { trigger: { eq: "manual", mode: "insensitive" } } }])
    })

    it("trailing spaces are significant in equality, uniqueness and order", async () => {
      const tag = uid()
      const a = await fx.page({ title: `pad${tag}`, description: "pad" })
      const b = await fx.page({ title: `pad${tag}`, description: "pad " })
      const c = await fx.page({ title: `pad${tag}`, description: "pad\t" })
      const d = await fx.page({ title: `pad${tag} ` })
      expect(b.description).toBe("pad ")
      expect(d.title).toBe(`pad${tag} `)
      expect(await count("PageView", { title: `pad${tag}`, description: "pad" })).toBe(1)
      expect(await count("PageView", { title: `pad${tag}`, description: "pad " })).toBe(1)
      expect(await count("PageView", { title: `pad${tag}`, description: { in: ["pad  "] } })).toBe(0)
      expect(await count("PageView", { title: `pad${tag}` })).toBe(3)
      expect(await count("PageView", { title: `pad${tag} ` })).toBe(1)
      // code point order: "pad" < "pad\t" < "pad "
      const sorted = (
        await ok<ListResult>("list", ["PageView", { filter: { title: `pad${tag}` }, sort: { description: "asc" } }])
      ).data.map((r) => r.id)
      expect(sorted).toEqual([a.id, c.id, b.id])
      expect(await count("PageView", { title: `pad${tag}`, description: { gt: "pad" } })).toBe(2)
      // unique values that differ only by trailing spaces are different values
      const u = await fx.user()
      const w1 = await fx.workflow(String(u.id), { name: `wf${tag}` })
      const w2 = await fx.workflow(String(u.id), { name: `wf${tag} ` })
      expect(w2.name).toBe(`wf${tag} `)
      expect(await ok("findByField", ["Workflow", "name", `wf${tag}`])).toEqual(w1)
      expect(await ok("findByField", ["Workflow", "name", `wf${tag} `])).toEqual(w2)
    })

    it("strings sort by code point, also beyond the Basic Multilingual Plane", async () => {
      const tag = uid()
      const values = ["😀", "\uFFFD", "é", "z", "Z", "", "0", "\u00A0", "日本", "𝔘"]
      for (const description of values) await fx.page({ title: `U${tag}`, description })
      const byCodePoint = [...values].sort((a, b) => {
        const x = [...a].map((c) => c.codePointAt(0)!)
        const y = [...b].map((c) => c.codePointAt(0)!)
        for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!
        return x.length - y.length
      })
      const asc = (await ok<ListResult>("list", ["PageView", { filter: { title: `U${tag}` }, sort: { description: "asc" } }])).data.map(
        (d) => d.description
      )
      expect(asc).toEqual(byCodePoint)
      const desc = (await ok<ListResult>("list", ["PageView", { filter: { title: `U${tag}` }, sort: { description: "desc" } }])).data.map(
        (d) => d.description
      )
      expect(desc).toEqual([...byCodePoint].reverse())
      expect(await count("PageView", { title: `U${tag}`, description: { gt: "\uFFFD" } })).toBe(2)
      expect(await count("PageView", { title: `U${tag}`, description: "" })).toBe(1)
    })

    it("LIKE wildcards and the escape character in values are literal", async () => {
      const tag = uid()
      const values = ["100% sure", "100 percent", "a_b", "axb", "back\\slash", "backslash", "bang!", "bang", "x!%y", "x!zy", "[ab]", "a"]
      for (const description of values) await fx.page({ title: `W${tag}`, description })
      const match = async (op: string, v: string) =>
        (
          await ok<ListResult>("list", [
            "PageView",
            { filter: { title: `W${tag}`, description: { [op]: v } }, sort: { description: "asc" } }
          ])
        ).data
          .map((d) => d.description)
          .sort()
      expect(await match("contains", "%")).toEqual(["100% sure", "x!%y"])
      expect(await match("contains", "0%")).toEqual(["100% sure"])
      expect(await match("contains", "_")).toEqual(["a_b"])
      expect(await match("startsWith", "a_")).toEqual(["a_b"])
      expect(await match("endsWith", "_b")).toEqual(["a_b"])
      expect(await match("contains", "\\")).toEqual(["back\\slash"])
      expect(await match("contains", "k\\s")).toEqual(["back\\slash"])
      expect(await match("contains", "!")).toEqual(["bang!", "x!%y", "x!zy"])
      expect(await match("endsWith", "g!")).toEqual(["bang!"])
      expect(await match("contains", "!%")).toEqual(["x!%y"])
      expect(await match("contains", "[a")).toEqual(["[ab]"])
      expect(await match("contains", "%%")).toEqual([])
      expect(await match("startsWith", "")).toHaveLength(values.length)
      expect(await count("PageView", { title: `W${tag}`, description: "a_b" })).toBe(1)
      expect(await count("PageView", { title: `W${tag}`, description: "a%" })).toBe(0)
    })

    it("values that look like SQL are stored and read back verbatim; the tables survive", async () => {
      const tag = uid()
      const nasty = [
        "x' OR '1'='1",
        "'; DROP TABLE users; --",
        '"; DROP TABLE "users"; --',
        "`; DROP TABLE `users`; --",
        "back\\slash\\' \\\" \\\\ \\n \\0 \\%",
        "O'Brien \"quoted\" 'single'",
        "1; DELETE FROM page_views WHERE 1=1",
        "$1 ? :name @p1 %s {0}",
        "\t tab \n newline \r cr",
        "emoji 😀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
      ]
      const made: Array<Rec> = []
      for (const [i, v] of nasty.entries()) {
        const p = await fx.page({ slug: `inj-${tag}-${i}`, title: v, description: v, layout: { v, [v]: [v] } })
        expect(p.title).toBe(v)
        expect(p.description).toBe(v)
        expect(p.layout).toEqual({ v, [v]: [v] })
        made.push(p)
      }
      for (const [i, v] of nasty.entries()) {
        const back = await ok<Rec>("read", ["PageView", made[i]!.id])
        expect(back).toEqual(made[i])
        const found = await ok<ListResult>("list", ["PageView", { filter: { title: v, slug: { startsWith: `inj-${tag}-` } } }])
        expect(found.data.map((d) => d.id)).toEqual([made[i]!.id])
        expect(await count("PageView", { slug: { startsWith: `inj-${tag}-` }, description: { contains: v } })).toBe(1)
      }
      // in an update, updateMany filter and deleteMany filter too
      const v = await ok<Rec>("update", ["PageView", made[0]!.id, { title: nasty[1], description: nasty[4] }])
      expect([v.title, v.description]).toEqual([nasty[1], nasty[4]])
      expect(await ok("updateMany", ["PageView", { title: "' OR 1=1 --" }, { isActive: false }])).toBe(0)
      expect(await ok("deleteMany", ["PageView", { title: { in: ["' OR ''='", "1' OR '1'='1' --"] } }])).toBe(0)
      expect(await ok("findByField", ["User", "username", "admin' --"])).toBeNull()
      await fail(422, "create", ["User", { username: "x' OR '1'='1", email: "a@b.cd" }])
      // the tables are all still there
      const u = await fx.user()
      expect(await count("User", { id: u.id })).toBe(1)
      expect(await count("PageView", { slug: { startsWith: `inj-${tag}-` } })).toBe(nasty.length)
      for (const entity of ["User", "PageView", "Credential", "Session", "Workflow", "LuaScript", "Package", "ComponentHierarchy"]) {
        expect(typeof (await ok("count", [entity]))).toBe("number")
      }
    })

    it("integers and unicode strings keep their values at the limits", async () => {
      const u = await fx.user()
      const lo = await ok<Rec>("create", [
        "LuaScript",
        { name: `lim-${uid()}`, code: "x", createdBy: u.id, timeoutMs: 100, isSandboxed: false }
      ])
      const hi = await ok<Rec>("create", [
        "LuaScript",
        { name: `lim-${uid()}`, code: "x".repeat(70_000), createdBy: u.id, timeoutMs: 30000 }
      ])
      expect([lo.timeoutMs, hi.timeoutMs, lo.isSandboxed, hi.isSandboxed]).toEqual([100, 30000, false, true])
      expect(String(hi.code)).toHaveLength(70_000)
      await fail(422, "create", ["LuaScript", { name: `lim-${uid()}`, code: "x", createdBy: u.id, timeoutMs: 30001 }])
      const title = "日".repeat(255)
      const p = await fx.page({ title })
      expect(p.title).toBe(title)
      await fail(422, "create", ["PageView", { slug: `lim-${uid()}`, title: `${title}x`, level: 1, layout: {} }])
      const emoji = "😀".repeat(255)
      expect((await fx.page({ title: emoji })).title).toBe(emoji)
    })
  })
}
