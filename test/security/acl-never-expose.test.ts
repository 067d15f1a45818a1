/**
 * never_expose: Credential.passwordHash (the entity's own never_expose) and, configured with
 * security.never_expose: ["User.email"], User.email are left out of every answer, for every
 * principal, `system` included.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { ACL_DIALECTS, type AclDaemon, type Auth, type Principal, type Rec, startAclDaemon, uid } from "./acl-support.js"
import { serviceAuth } from "../support/services.js"

type Page = { data: Array<Rec>; total: number }

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`never_expose fields (${dialect})`, () => {
    let d: AclDaemon
    let user: Principal
    let admin: Principal

    beforeAll(async () => {
      d = await startAclDaemon(dialect, { neverExpose: ["User.email"] })
      user = await d.principal("user")
      admin = await d.principal("admin")
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const without = (field: string, records: ReadonlyArray<unknown>, what: string) => {
      expect(records.length, what).toBeGreaterThan(0)
      for (const r of records) {
        expect(r, what).toBeTypeOf("object")
        expect(r, what).not.toBeNull()
        expect(Object.keys(r as Rec), what).not.toContain(field)
        expect(JSON.stringify(r), what).not.toContain(`"${field}"`)
      }
    }

    it("Credential.passwordHash is never returned, even to system", async () => {
      const u = await d.ok<Rec>("create", ["User", { username: `ne_${uid()}`, email: `ne_${uid()}@example.com` }])
      const secret = `secret-hash-${uid()}`
      const created = await d.ok<Rec>("create", ["Credential", { username: u.username, passwordHash: secret }])
      const answers: Array<unknown> = [created]
      answers.push(await d.ok("read", ["Credential", created.id]))
      answers.push(await d.ok("update", ["Credential", created.id, { passwordHash: `${secret}-2` }]))
      answers.push(...(await d.ok<Page>("list", ["Credential", { filter: { id: created.id } }])).data)
      answers.push(await d.ok("findFirst", ["Credential", { id: created.id }]))
      answers.push(await d.ok("findByField", ["Credential", "username", u.username]))
      answers.push(await d.ok("updateByField", ["Credential", "username", u.username, { firstLogin: false }]))
      answers.push(await d.ok("upsert", ["Credential", "username", u.username, { passwordHash: secret }, { passwordHash: `${secret}-3` }]))
      without("passwordHash", answers, "Credential answers to system")
      for (const a of answers) expect(JSON.stringify(a)).not.toContain(secret)
      // Nor can it be probed through filters or sorting.
      await d.fail(422, "count", ["Credential", { passwordHash: secret }])
      await d.fail(422, "list", ["Credential", { sort: { passwordHash: "asc" } }])
    })

    it("security.never_expose hides User.email from every answer, system included", async () => {
      const name = `ne_${uid()}`
      const email = `${name}@example.com`
      const asEach: Array<[string, Auth]> = [
        ["system", serviceAuth],
        ["admin", admin.auth]
      ]
      const created = await d.ok<Rec>("create", ["User", { username: name, email }])
      const answers: Array<unknown> = [created]
      for (const [, auth] of asEach) {
        answers.push(await d.ok("read", ["User", created.id], auth))
        answers.push(...(await d.ok<Page>("list", ["User", { limit: 100 }], auth)).data)
        answers.push(await d.ok("findFirst", ["User", { id: created.id }], auth))
        answers.push(await d.ok("findByField", ["User", "username", name], auth))
        answers.push(await d.ok("update", ["User", created.id, { email: `u_${uid()}@example.com` }], auth))
        answers.push(await d.ok("updateByField", ["User", "username", name, { email: `v_${uid()}@example.com` }], auth))
      }
      answers.push(await d.ok("upsert", ["User", "username", name, { email }, { email: `w_${uid()}@example.com` }]))
      const other = `ne_${uid()}`
      answers.push(
        await d.ok("upsert", ["User", "username", other, { email: `${other}@example.com` }, { email: `x_${uid()}@example.com` }])
      )
      // A plain user: creating (public), reading and updating themselves.
      const mine = `ne_${uid()}`
      answers.push(await d.ok("create", ["User", { username: mine, email: `${mine}@example.com` }], user.auth))
      answers.push(await d.ok("read", ["User", user.id], user.auth))
      answers.push(...(await d.ok<Page>("list", ["User"], user.auth)).data)
      answers.push(await d.ok("update", ["User", user.id, { email: `y_${uid()}@example.com` }], user.auth))
      without("email", answers, "User answers")
      // The other fields are there, and the email is stored (writes of it succeeded above).
      expect(Object.keys(created).sort()).toEqual(["createdAt", "id", "role", "updatedAt", "username"])
      // Nor can the hidden email be probed through filters, sorting or lookups, by anyone.
      for (const [, auth] of [...asEach, ["user", user.auth] as [string, Auth]]) {
        await d.fail(403, "count", ["User", { email: { startsWith: "ne_" } }], auth)
        await d.fail(403, "list", ["User", { sort: { email: "asc" } }], auth)
        await d.fail(403, "findFirst", ["User", { email: `${mine}@example.com` }], auth)
        await d.fail(403, "findByField", ["User", "email", `${mine}@example.com`], auth)
      }
      await d.fail(403, "deleteMany", ["User", { email: { contains: "@" } }])
      await d.fail(403, "updateMany", ["User", { email: { contains: "@" } }, { role: "user" }])
      await d.fail(403, "deleteByField", ["User", "email", `${mine}@example.com`])
      expect(await d.ok<number>("count", ["User", { username: mine }])).toBe(1)
      // Authentication by session still works for users (the role comes from the User row).
      const auth = await d.ok<Rec>("authenticate", [user.auth], user.auth)
      expect(auth).toMatchObject({ authenticated: true, userId: user.id, role: "user" })
    })
  })
}
