/**
 * A daemon whose entities come from metabuilder's schema.prisma (test/fixtures/metabuilder)
 * (`entities.prisma_schema`): it migrates the models' tables and serves them through the real
 * RpcHandler as the service principal, on each dialect whose server answers.
 */

import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startInProcess } from "../support/inprocess.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, tempDir, type TestDatabase, writeConfig } from "../support/services.js"
import { type Answer, DIALECTS, expectIsoUtc, expectUuidV4, type Rec, uid } from "./harness.js"

/** metabuilder's schema.prisma (a copy: the project reads nothing outside itself). */
const METABUILDER_PRISMA = fileURLToPath(new URL("../fixtures/metabuilder/backends/prisma/schema.prisma", import.meta.url))

interface ListResult {
  readonly data: ReadonlyArray<Rec>
  readonly total: number
}

for (const dialect of DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`${dialect}: entities from schema.prisma`, () => {
    let db: TestDatabase | undefined
    let dir: string | undefined
    let runtime: { dispose: () => Promise<void> } | undefined
    let handle: ((frame: string) => Promise<string>) | undefined
    let next = 0

    beforeAll(async () => {
      db = await createDatabase(dialect)
      const base = daemonConfig(db)
      dir = tempDir("prisma-config")
      // Prisma-defined entities have no default rules: only system and this file grant access.
      fs.writeFileSync(path.join(dir, "rules.yaml"), "rules:\n  - roles: admin\n    entities: PageView\n    operations: read\n")
      const file = writeConfig(
        {
          ...base,
          entities: { prisma_schema: METABUILDER_PRISMA },
          security: { ...(base.security as Rec), never_expose: ["Credential.passwordHash"], acl: { rules_file: "rules.yaml" } }
        },
        dir
      )
      ;({ runtime, handle } = await startInProcess(file))
    })

    afterAll(async () => {
      await runtime?.dispose()
      await db?.drop()
      if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
    })

    const call = async (method: string, params: ReadonlyArray<unknown>, auth: Rec = serviceAuth): Promise<Answer> => {
      if (handle === undefined) throw new Error("the daemon is not started")
      const id = `p${++next}`
      const a = JSON.parse(await handle(JSON.stringify({ id, method, params, auth }))) as Answer
      expect(a.id).toBe(id)
      return a
    }
    const ok = async <T = unknown>(method: string, params: ReadonlyArray<unknown>): Promise<T> => {
      const a = await call(method, params)
      expect(a.error, `${method} failed: ${JSON.stringify(a.error)}`).toBeUndefined()
      return a.result as T
    }
    const fail = async (code: number, method: string, params: ReadonlyArray<unknown>) => {
      const a = await call(method, params)
      expect(a.error?.code, JSON.stringify(a)).toBe(code)
      return a.error!
    }
    const user = () => {
      const s = uid()
      return ok<Rec>("create", ["User", { username: `p_${s}`, email: `p_${s}@example.com`, role: "user" }])
    }

    it("migrates every model and serves create, read and list", async () => {
      for (const e of ["User", "Credential", "Session", "PageView", "ComponentHierarchy", "Workflow", "LuaScript", "Package"]) {
        expect(await ok<number>("count", [e]), e).toBeGreaterThanOrEqual(0)
      }
      const u = await user()
      expect(Object.keys(u).sort()).toEqual(["createdAt", "email", "id", "role", "updatedAt", "username"])
      expectUuidV4(u.id)
      expectIsoUtc(u.createdAt)
      expect(await ok<Rec>("read", ["User", u.id])).toEqual(u)

      const s = uid()
      const page = await ok<Rec>("create", ["PageView", { slug: `pp-${s}`, title: `T${s}`, level: 2, layout: '{"cols":2}' }])
      expect(page).toMatchObject({ slug: `pp-${s}`, level: 2, layout: '{"cols":2}', isActive: true, description: null })
      const list = await ok<ListResult>("list", ["PageView", { filter: { slug: `pp-${s}` } }])
      expect(list.total).toBe(1)
      expect(list.data[0]).toEqual(page)
    })

    it("checks what the schema says: required fields, unique fields, the daemon's roles", async () => {
      const u = await user()
      const e = await fail(422, "create", ["User", { username: `x_${uid()}`, email: "x@example.com" }])
      expect(JSON.stringify(e.details)).toContain("role")
      await fail(422, "create", ["User", { username: `x_${uid()}`, email: "y@example.com", role: "root" }])
      await fail(409, "create", ["User", { username: u.username, email: `z_${uid()}@example.com`, role: "user" }])
      await fail(422, "create", ["PageView", { slug: `q-${uid()}`, title: "t", level: 1, layout: { not: "a string" } }])
    })

    it("keeps the relations' foreign keys: cascade, set null", async () => {
      const s = uid()
      const page = await ok<Rec>("create", ["PageView", { slug: `c-${s}`, title: "c", level: 1, layout: "{}" }])
      const root = await ok<Rec>("create", ["ComponentHierarchy", { pageId: page.id, componentType: "Grid", props: "{}" }])
      const child = await ok<Rec>("create", [
        "ComponentHierarchy",
        { pageId: page.id, parentId: root.id, componentType: "Text", props: "{}", order: 1 }
      ])
      expect(root).toMatchObject({ order: 0, parentId: null })
      expect(await ok<number>("count", ["ComponentHierarchy", { pageId: page.id }])).toBe(2)
      await fail(422, "create", ["ComponentHierarchy", { pageId: "0f8fad5b-d9cb-469f-a165-70867728950e", componentType: "X", props: "{}" }])
      expect(await ok("delete", ["PageView", page.id])).toBe(true)
      expect(await ok<number>("count", ["ComponentHierarchy", { pageId: page.id }])).toBe(0)
      await fail(404, "read", ["ComponentHierarchy", child.id])

      const u = await user()
      const pkg = await ok<Rec>("create", [
        "Package",
        { name: `pkg-${s}`, version: "1.0.0", author: "a", manifest: "{}", installedBy: u.id }
      ])
      expect(pkg).toMatchObject({ isInstalled: false, installedBy: u.id })
      expect(await ok("delete", ["User", u.id])).toBe(true)
      expect(await ok<Rec>("read", ["Package", pkg.id])).toMatchObject({ installedBy: null })
    })

    it("never returns a field listed in security.never_expose", async () => {
      const u = await user()
      const c = await ok<Rec>("create", ["Credential", { username: u.username, passwordHash: "$argon2id$not-a-real-hash" }])
      expect(c).toMatchObject({ username: u.username, firstLogin: true })
      expect(c).not.toHaveProperty("passwordHash")
      expect(await ok<Rec>("read", ["Credential", c.id])).not.toHaveProperty("passwordHash")
    })

    it("authenticates sessions of the Prisma Session/User models; access comes from system and the rules file only", async () => {
      const s = uid()
      const admin = await ok<Rec>("create", ["User", { username: `a_${s}`, email: `a_${s}@example.com`, role: "admin" }])
      const token = `session-${s}-0123456789abcdefghijklmnop`
      await ok("create", ["Session", { userId: admin.id, token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }])
      const asAdmin = { token }
      // allowed by the rules file
      const pages = await call("list", ["PageView", {}], asAdmin)
      expect(pages.error, JSON.stringify(pages.error)).toBeUndefined()
      // no default rules: everything else is refused, the admin's own User record included
      for (const [method, params] of [
        ["read", ["User", admin.id]],
        ["count", ["Workflow"]],
        ["create", ["PageView", { slug: `n-${s}`, title: "n", level: 1, layout: "{}" }]]
      ] as const) {
        const a = await call(method, params, asAdmin)
        expect(a.error?.code, `${method} ${JSON.stringify(a)}`).toBe(403)
      }
    })
  })
}
