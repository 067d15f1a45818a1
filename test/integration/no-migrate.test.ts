/**
 * `database.auto_migrate: false`: the daemon creates and alters nothing, and a request on an
 * entity whose table is missing answers a clear 503 (not a 500), on each dialect.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type InProcess, startInProcess } from "../support/inprocess.js"
import { rawDb, type RawDb } from "../support/rawdb.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, writeConfig } from "../support/services.js"
import { type Answer, DIALECTS, expectNoLeak } from "./harness.js"

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: auto_migrate false`, () => {
    let db: TestDatabase | undefined
    let raw: RawDb | undefined
    let daemon: InProcess | undefined
    let file: string | undefined

    beforeAll(async () => {
      db = await createDatabase(dialect)
      raw = await rawDb(db)
      file = writeConfig(daemonConfig(db, { database: { ...db.databaseConfig, auto_migrate: false } }))
      daemon = await startInProcess(file)
    })
    afterAll(async () => {
      await daemon?.runtime.dispose()
      await raw?.close()
      await db?.drop()
      if (file !== undefined) fs.rmSync(path.dirname(file), { recursive: true, force: true })
    })

    let next = 0
    const call = async (method: string, params: ReadonlyArray<unknown>): Promise<Answer> =>
      JSON.parse(await daemon!.handle(JSON.stringify({ id: ++next, method, params, auth: serviceAuth }))) as Answer

    it("creates no table at start, nor when requests come", async () => {
      expect(await raw!.tables()).toEqual([])
      for (const [method, params] of [
        ["list", ["User"]],
        ["create", ["PageView", { slug: "a", title: "A", level: 1, layout: {} }]],
        ["count", ["Session"]]
      ] as const) {
        const a = await call(method, params)
        expect(a.error?.code, JSON.stringify(a)).toBe(503)
        expect(String(a.error?.details?.reason)).toMatch(
          /has no table or column for (User|PageView|Session) yet: run `dbal-daemon migrate`/
        )
        expectNoLeak(a.error)
      }
      expect(await raw!.tables()).toEqual([])
    })

    it("alters no table that lacks a column, and says so for that entity", async () => {
      const q = dialect === "mysql" ? "`" : '"'
      await raw!.exec(`CREATE TABLE ${q}lua_scripts${q} (${q}id${q} VARCHAR(36) PRIMARY KEY, ${q}name${q} VARCHAR(200))`)
      const a = await call("list", ["LuaScript"])
      expect(a.error?.code, JSON.stringify(a)).toBe(503)
      expect(String(a.error?.details?.reason)).toContain("LuaScript")
      expect(await raw!.tables()).toEqual(["lua_scripts"])
    })
  })
}
