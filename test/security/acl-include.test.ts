/**
 * `include` applies the included entity's own access decision: an entity the caller may not
 * read refuses the whole request (403), its row filter turns a record the caller may not see into
 * null, and its field list hides fields; a transaction decides each operation as if sent alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import { ACL_DIALECTS, type AclDaemon, type Principal, type Rec, startAclDaemon, uid } from "./acl-support.js"

const RULES = `
rules:
  # Users may list workflows (the default only admits admin and above)...
  - roles: user
    entities: Workflow
    operations: read
  # ...and see only themselves among users, without their email.
  - roles: user
    entities: User
    operations: read
    filter: { id: "$user.id" }
    read_fields: [id, username, role]
`

type Page = { data: Array<Rec>; total: number }

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`include and transaction under the access rules (${dialect})`, () => {
    let d: AclDaemon
    let alice: Principal
    let bob: Principal
    let admin: Principal

    beforeAll(async () => {
      d = await startAclDaemon(dialect, { rules: RULES })
      alice = await d.principal("user")
      bob = await d.principal("user")
      admin = await d.principal("admin")
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const workflow = (createdBy: string, tag: string) =>
      d.ok<Rec>("create", [
        "Workflow",
        { name: `wf-${uid()}`, description: tag, trigger: "manual", triggerConfig: {}, steps: [], createdBy }
      ])

    it("hides an included record outside the caller's row filter (null) and its hidden fields", async () => {
      const tag = `t-${uid()}`
      await workflow(alice.id, tag)
      await workflow(bob.id, tag)
      const page = await d.ok<Page>("list", ["Workflow", { filter: { description: tag }, include: ["creator"] }], alice.auth)
      expect(page.total).toBe(2)
      const byCreator = new Map(page.data.map((w) => [w.createdBy, w.creator]))
      expect(byCreator.get(alice.id)).toEqual({ id: alice.id, username: alice.username, role: "user" })
      expect(byCreator.get(bob.id)).toBeNull()
      expect(JSON.stringify(page)).not.toContain("@")
    })

    it("refuses the request when the included entity may not be read at all", async () => {
      const user = await d.ok<Rec>("create", ["User", { username: `c${uid()}`, email: `c${uid()}@example.com` }])
      await d.ok("create", ["Credential", { username: user.username, passwordHash: "x" }])
      // Admins read users but never credentials (system only): include of a Credential's user is
      // fine for system, while listing Credential at all is refused for the admin.
      await d.fail(403, "list", ["Credential", { include: ["user"] }], admin.auth)
      const page = await d.ok<Page>("list", ["Workflow", { include: ["creator"], limit: 1 }], admin.auth)
      expect(page.data.length).toBeLessThanOrEqual(1)
      // A user may list Workflow here, and include its creator (User read is allowed by the rule).
      await d.ok("list", ["Workflow", { include: ["creator"], limit: 1 }], alice.auth)
    })

    it("decides each operation of a transaction as if sent alone, and rolls back on a denial", async () => {
      const tag = `tx-${uid()}`
      const e = await d.fail(
        403,
        "transaction",
        [
          [
            { method: "update", params: ["User", alice.id, { email: `${tag}@example.com` }] },
            { method: "create", params: ["PageView", { slug: tag, title: "T", level: 1, layout: {} }] }
          ]
        ],
        alice.auth
      )
      expect(e.details).toMatchObject({ operation: 1, rolledBack: true })
      // The first operation (allowed alone) was rolled back with the transaction.
      expect((await d.ok<Rec>("read", ["User", alice.id])).email).not.toBe(`${tag}@example.com`)
      expect(await d.ok<number>("count", ["PageView", { slug: tag }])).toBe(0)
    })
  })
}
