/**
 * No role escalation (docs/security.md, "Access rules"): nobody but `system` sets a role above their
 * own, on create, update, updateMany or upsert; and non-system principals cannot update or delete
 * a User ranked above them (those rows are outside what they may write: 404). System can.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import {
  ACL_DIALECTS,
  type AclDaemon,
  allPrincipals,
  factories,
  type Principal,
  type Rec,
  startAclDaemon,
  uid,
  type UserRole
} from "./acl-support.js"

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`no role escalation (${dialect})`, () => {
    let d: AclDaemon
    let who: Record<UserRole, Principal>

    beforeAll(async () => {
      d = await startAclDaemon(dialect)
      who = await allPrincipals(d)
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const newUser = (role: UserRole = "user") => factories(d, "").user(role)
    const roleOf = async (id: unknown) => (await d.ok<Rec>("read", ["User", id])).role

    it("a user creates a User (public) but not one with role admin or above", async () => {
      for (const role of ["admin", "god", "supergod"] as const) {
        const name = `esc_${uid()}`
        const e = await d.fail(403, "create", ["User", { username: name, email: `${name}@example.com`, role }], who.user.auth)
        expect(e.details?.reason).toMatch(/no_role_escalation/)
        expect(await d.ok<number>("count", ["User", { username: name }])).toBe(0)
      }
      const name = `esc_${uid()}`
      expect(
        await d.ok<Rec>("create", ["User", { username: name, email: `${name}@example.com`, role: "user" }], who.user.auth)
      ).toMatchObject({ role: "user" })
      const rows = [`esc_${uid()}`, `esc_${uid()}`].map((n, i) => ({
        username: n,
        email: `${n}@example.com`,
        role: i === 0 ? "user" : "admin"
      }))
      await d.fail(403, "createMany", ["User", rows], who.user.auth)
      expect(await d.ok<number>("count", ["User", { username: { in: rows.map((r) => r.username) } }])).toBe(0)
      const upName = `esc_${uid()}`
      await d.fail(
        403,
        "upsert",
        ["User", "username", upName, { email: `${upName}@example.com`, role: "god" }, { email: `x${upName}@example.com` }],
        who.user.auth
      )
      expect(await d.ok<number>("count", ["User", { username: upName }])).toBe(0)
    })

    it("a user cannot raise their own role", async () => {
      const me = await d.principal("user")
      for (const role of ["admin", "god", "supergod"]) {
        await d.fail(403, "update", ["User", me.id, { role }], me.auth)
        await d.fail(403, "updateByField", ["User", "username", me.username, { role }], me.auth)
        await d.fail(403, "updateMany", ["User", { id: me.id }, { role }], me.auth)
      }
      expect(await roleOf(me.id)).toBe("user")
      // Their own role unchanged is fine.
      expect(await d.ok<Rec>("update", ["User", me.id, { role: "user" }], me.auth)).toMatchObject({ role: "user" })
    })

    it("an admin cannot set anyone to god or supergod, themselves included; admin is their ceiling", async () => {
      const target = await newUser("user")
      for (const role of ["god", "supergod"]) {
        await d.fail(403, "update", ["User", target.id, { role }], who.admin.auth)
        await d.fail(403, "update", ["User", who.admin.id, { role }], who.admin.auth)
        const name = `esc_${uid()}`
        await d.fail(403, "create", ["User", { username: name, email: `${name}@example.com`, role }], who.admin.auth)
        expect(await d.ok<number>("count", ["User", { username: name }])).toBe(0)
      }
      expect(await roleOf(target.id)).toBe("user")
      expect(await roleOf(who.admin.id)).toBe("admin")
      expect(await d.ok<Rec>("update", ["User", target.id, { role: "admin" }], who.admin.auth)).toMatchObject({ role: "admin" })
    })

    it("updateMany setting a role above the caller's is 403 and changes nothing", async () => {
      const a = await newUser("user")
      const b = await newUser("user")
      const ids = { id: { in: [a.id, b.id] } }
      await d.fail(403, "updateMany", ["User", ids, { role: "god" }], who.admin.auth)
      await d.fail(403, "updateMany", ["User", ids, { role: "supergod" }], who.god.auth)
      expect([await roleOf(a.id), await roleOf(b.id)]).toEqual(["user", "user"])
      expect(await d.ok<number>("updateMany", ["User", ids, { role: "god" }], who.god.auth)).toBe(2)
      expect([await roleOf(a.id), await roleOf(b.id)]).toEqual(["god", "god"])
    })

    it("an admin cannot update or delete a god or supergod user (404: outside the rows they may write)", async () => {
      for (const role of ["god", "supergod"] as const) {
        const target = await newUser(role)
        await d.fail(404, "update", ["User", target.id, { email: `x_${uid()}@example.com` }], who.admin.auth)
        await d.fail(404, "update", ["User", target.id, { role: "user" }], who.admin.auth)
        await d.fail(404, "updateByField", ["User", "username", target.username, { email: `x_${uid()}@example.com` }], who.admin.auth)
        await d.fail(404, "delete", ["User", target.id], who.admin.auth)
        await d.fail(404, "deleteByField", ["User", "username", target.username], who.admin.auth)
        expect(await d.ok<number>("updateMany", ["User", { id: target.id }, { role: "user" }], who.admin.auth)).toBe(0)
        expect(await d.ok<number>("deleteMany", ["User", { id: target.id }], who.admin.auth)).toBe(0)
        expect(await d.ok<Rec>("read", ["User", target.id])).toEqual(target)
        // They may still read it (read has no rank guard; the default lets admin+ read users).
        expect((await d.ok<Rec>("read", ["User", target.id], who.admin.auth)).id).toBe(target.id)
      }
      // A supergod target is out of reach for a god too; a peer or lower rank is not.
      const sg = await newUser("supergod")
      await d.fail(404, "delete", ["User", sg.id], who.god.auth)
      const peer = await newUser("admin")
      expect(await d.ok("delete", ["User", peer.id], who.admin.auth)).toBe(true)
    })

    it("system can do all of these", async () => {
      const name = `sys_${uid()}`
      const created = await d.ok<Rec>("create", ["User", { username: name, email: `${name}@example.com`, role: "supergod" }])
      expect(created.role).toBe("supergod")
      const target = await newUser("user")
      expect(await d.ok<Rec>("update", ["User", target.id, { role: "supergod" }])).toMatchObject({ role: "supergod" })
      const a = await newUser("user")
      expect(await d.ok<number>("updateMany", ["User", { id: a.id }, { role: "god" }])).toBe(1)
      expect(await roleOf(a.id)).toBe("god")
      expect(await d.ok<Rec>("update", ["User", created.id, { email: `sys2_${uid()}@example.com` }])).toMatchObject({ id: created.id })
      expect(await d.ok("delete", ["User", created.id])).toBe(true)
      expect(await d.ok("delete", ["User", target.id])).toBe(true)
    })
  })
}
