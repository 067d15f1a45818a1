/**
 * The shipped config/acl_rules.yaml: it loads without problems against config/entities, and its
 * examples do what their comments say, on a daemon configured with that very file.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as YAML from "yaml"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseRules } from "../../src/access/Policy.js"
import { loadRegistry } from "../../src/entity/Load.js"
import { root } from "../support/daemon.js"
import { skipDialect } from "../support/services.js"
import { ACL_DIALECTS, type AclDaemon, allPrincipals, type Principal, type Rec, startAclDaemon, uid, type UserRole } from "./acl-support.js"

const RULES_FILE = path.join(root, "config", "acl_rules.yaml")
const ENTITIES_DIR = path.join(root, "config", "entities")

type Page = { data: Array<Rec>; total: number }

describe("config/acl_rules.yaml", () => {
  it("parses without problems against config/entities", () => {
    const doc = YAML.parseDocument(fs.readFileSync(RULES_FILE, "utf8"))
    expect(doc.errors).toEqual([])
    const { rules, problems } = parseRules(doc.toJS(), loadRegistry(ENTITIES_DIR))
    expect(problems).toEqual([])
    expect(rules).toHaveLength(4)
  })
})

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`the shipped rules' examples (${dialect})`, () => {
    let d: AclDaemon
    let who: Record<UserRole, Principal>

    beforeAll(async () => {
      d = await startAclDaemon(dialect, { rules: { file: RULES_FILE } })
      who = await allPrincipals(d)
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const page = (isActive: boolean) => {
      const s = uid()
      return d.ok<Rec>("create", ["PageView", { slug: `p-${s}`, title: `Page ${s}`, level: 1, layout: {}, isActive }])
    }
    const workflow = (createdBy: string) =>
      d.ok<Rec>("create", ["Workflow", { name: `wf-${uid()}`, trigger: "manual", triggerConfig: { a: 1 }, steps: [{ s: 1 }], createdBy }])

    it("users may read the active pages only; admins still read every page", async () => {
      const active = await page(true)
      const inactive = await page(false)
      const seen = await d.ok<Page>("list", ["PageView", { limit: 100 }], who.user.auth)
      expect(seen.data.every((p) => p.isActive === true)).toBe(true)
      expect(seen.data.map((p) => p.id)).toContain(active.id)
      expect(seen.data.map((p) => p.id)).not.toContain(inactive.id)
      await d.fail(404, "read", ["PageView", inactive.id], who.user.auth)
      expect(await d.ok<number>("count", ["PageView", { isActive: false }], who.user.auth)).toBe(0)
      expect((await d.ok<Rec>("read", ["PageView", inactive.id], who.admin.auth)).id).toBe(inactive.id)
    })

    it("admins list only their own workflows, without the step definitions", async () => {
      const mine = await workflow(who.admin.id)
      const theirs = await workflow(who.god.id)
      const seen = await d.ok<Page>("list", ["Workflow", { limit: 100 }], who.admin.auth)
      expect(seen.data.map((w) => w.id)).toEqual([mine.id])
      expect(Object.keys(seen.data[0]!).sort()).toEqual([
        "createdAt",
        "createdBy",
        "description",
        "id",
        "isActive",
        "name",
        "trigger",
        "updatedAt"
      ])
      await d.fail(404, "read", ["Workflow", theirs.id], who.admin.auth)
      // Gods keep the default: every workflow, every field.
      const god = await d.ok<Page>("list", ["Workflow", { limit: 100 }], who.god.auth)
      expect(god.data.map((w) => w.id)).toEqual(expect.arrayContaining([mine.id, theirs.id]))
      expect(god.data[0]).toHaveProperty("steps")
    })

    it("users may change only their own email, never their username or role", async () => {
      const email = `mine_${uid()}@example.com`
      expect(await d.ok<Rec>("update", ["User", who.user.id, { email }], who.user.auth)).toMatchObject({ id: who.user.id, email })
      await d.fail(403, "update", ["User", who.user.id, { username: `renamed_${uid()}` }], who.user.auth)
      await d.fail(403, "update", ["User", who.user.id, { role: "user" }], who.user.auth)
      const other = await d.principal("user")
      await d.fail(404, "update", ["User", other.id, { email: `theirs_${uid()}@example.com` }], who.user.auth)
      expect(await d.ok<Rec>("read", ["User", who.user.id])).toMatchObject({ username: who.user.username, role: "user", email })
    })

    it("nobody below supergod deletes packages", async () => {
      const pkg = await d.ok<Rec>("create", ["Package", { name: `pkg-${uid()}`, version: "1.0.0", author: "t", manifest: {} }])
      for (const role of ["user", "admin", "god"] as const) await d.fail(403, "delete", ["Package", pkg.id], who[role].auth)
      expect(await d.ok("delete", ["Package", pkg.id], who.supergod.auth)).toBe(true)
    })
  })
}
