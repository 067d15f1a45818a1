/**
 * The default rules of the eight entities (their `acl:` blocks), for each user role, with no
 * rules file: every cell of the table below is exercised with a real request and checked for
 * 403 vs success; `self` cells check that the caller sees and changes only their own row.
 *
 * The table is written out here from config/entities/*.yaml, not computed from the code:
 *   User                 create public; read/update self or admin+; delete admin+
 *   Credential, Session  system only
 *   PageView             create/update/delete god+; read public
 *   ComponentHierarchy, Workflow, LuaScript: create/update/delete god+; read admin+
 *   Package              create/update/delete supergod; read god+
 * `list` is the read operation over many rows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { skipDialect } from "../support/services.js"
import {
  ACL_DIALECTS,
  type AclDaemon,
  allPrincipals,
  type EntityName,
  factories,
  KEY,
  type Principal,
  type Rec,
  startAclDaemon,
  type UserRole
} from "./acl-support.js"

type Cell = "allow" | "deny" | "self"
type Op = "create" | "read" | "update" | "delete" | "list"
type Row = Record<Op, Cell>

const all = (cell: Cell): Row => ({ create: cell, read: cell, update: cell, delete: cell, list: cell })

/** entity → role → operation → expected outcome. */
const TABLE: Record<EntityName, Record<UserRole, Row>> = {
  User: {
    user: { create: "allow", read: "self", update: "self", delete: "deny", list: "self" },
    admin: { create: "allow", read: "allow", update: "allow", delete: "allow", list: "allow" },
    god: { create: "allow", read: "allow", update: "allow", delete: "allow", list: "allow" },
    supergod: { create: "allow", read: "allow", update: "allow", delete: "allow", list: "allow" }
  },
  Credential: { user: all("deny"), admin: all("deny"), god: all("deny"), supergod: all("deny") },
  Session: { user: all("deny"), admin: all("deny"), god: all("deny"), supergod: all("deny") },
  PageView: {
    user: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    admin: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    god: all("allow"),
    supergod: all("allow")
  },
  ComponentHierarchy: {
    user: all("deny"),
    admin: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    god: all("allow"),
    supergod: all("allow")
  },
  Workflow: {
    user: all("deny"),
    admin: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    god: all("allow"),
    supergod: all("allow")
  },
  LuaScript: {
    user: all("deny"),
    admin: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    god: all("allow"),
    supergod: all("allow")
  },
  Package: {
    user: all("deny"),
    admin: all("deny"),
    god: { create: "deny", read: "allow", update: "deny", delete: "deny", list: "allow" },
    supergod: all("allow")
  }
}

const OPS: ReadonlyArray<Op> = ["create", "read", "update", "delete", "list"]
const ROLES: ReadonlyArray<UserRole> = ["user", "admin", "god", "supergod"]

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`default access rules of the entities (${dialect})`, () => {
    let d: AclDaemon
    let who: Record<UserRole, Principal>

    beforeAll(async () => {
      d = await startAclDaemon(dialect)
      who = await allPrincipals(d)
    })
    afterAll(async () => {
      await d?.dispose()
    })

    const countAsSystem = (entity: EntityName, filter: Rec) => d.ok<number>("count", [entity, filter])

    /** Runs one cell: `op` on `entity` as `p`, expecting `cell`. */
    const exercise = async (entity: EntityName, p: Principal, op: Op, cell: Cell) => {
      const f = factories(d, p.id)
      const what = `${p.role} ${op} ${entity}`
      switch (op) {
        case "create": {
          const data = await f.data(entity)
          const key = { [KEY[entity]]: data[KEY[entity]] }
          if (cell === "deny") {
            await d.fail(403, "create", [entity, data], p.auth)
            expect(await countAsSystem(entity, key), `${what}: nothing created`).toBe(0)
          } else {
            const created = await d.ok<Rec>("create", [entity, data], p.auth)
            expect(created[KEY[entity]], what).toBe(data[KEY[entity]])
            expect(await countAsSystem(entity, { id: created.id }), `${what}: created`).toBe(1)
          }
          return
        }
        case "read": {
          const target = await f.record(entity)
          if (cell === "deny") await d.fail(403, "read", [entity, target.id], p.auth)
          else if (cell === "allow") expect((await d.ok<Rec>("read", [entity, target.id], p.auth)).id, what).toBe(target.id)
          else {
            // self: their own row is readable, another's is not there for them.
            expect((await d.ok<Rec>("read", [entity, p.id], p.auth)).id, what).toBe(p.id)
            await d.fail(404, "read", [entity, target.id], p.auth)
          }
          return
        }
        case "update": {
          const target = await f.record(entity)
          const change = f.change(entity)
          if (cell === "deny") {
            await d.fail(403, "update", [entity, target.id, change], p.auth)
            expect(await d.ok<Rec>("read", [entity, target.id]), `${what}: unchanged`).toEqual(target)
          } else if (cell === "allow") {
            const updated = await d.ok<Rec>("update", [entity, target.id, change], p.auth)
            expect(updated, what).toMatchObject(change)
            expect(await d.ok<Rec>("read", [entity, target.id]), what).toMatchObject(change)
          } else {
            const updated = await d.ok<Rec>("update", [entity, p.id, change], p.auth)
            expect(updated, what).toMatchObject({ id: p.id, ...change })
            const other = f.change(entity)
            await d.fail(404, "update", [entity, target.id, other], p.auth)
            expect(await d.ok<Rec>("read", [entity, target.id]), `${what}: another's row unchanged`).toEqual(target)
          }
          return
        }
        case "delete": {
          const target = await f.record(entity)
          if (cell === "deny") {
            await d.fail(403, "delete", [entity, target.id], p.auth)
            expect(await countAsSystem(entity, { id: target.id }), `${what}: still there`).toBe(1)
          } else {
            expect(await d.ok("delete", [entity, target.id], p.auth), what).toBe(true)
            expect(await countAsSystem(entity, { id: target.id }), `${what}: gone`).toBe(0)
          }
          return
        }
        case "list": {
          const target = await f.record(entity)
          if (cell === "deny") {
            await d.fail(403, "list", [entity], p.auth)
            await d.fail(403, "count", [entity], p.auth)
          } else if (cell === "allow") {
            const page = await d.ok<{ data: Array<Rec>; total: number }>("list", [entity, { filter: { id: target.id } }], p.auth)
            expect(
              page.data.map((r) => r.id),
              what
            ).toEqual([target.id])
            const everything = await d.ok<{ total: number }>("list", [entity], p.auth)
            expect(everything.total, what).toBe(await d.ok<number>("count", [entity]))
          } else {
            const page = await d.ok<{ data: Array<Rec>; total: number }>("list", [entity, { limit: 100 }], p.auth)
            expect(
              page.data.map((r) => r.id),
              `${what}: only themselves`
            ).toEqual([p.id])
            expect(page.total).toBe(1)
            expect(await d.ok<number>("count", [entity], p.auth)).toBe(1)
            expect(await d.ok<number>("count", [entity]), "system sees more").toBeGreaterThan(1)
            expect(await d.ok("findFirst", [entity, { id: target.id }], p.auth), `${what}: another's row is not found`).toBeNull()
          }
          return
        }
      }
    }

    for (const [entity, byRole] of Object.entries(TABLE) as Array<[EntityName, Record<UserRole, Row>]>) {
      for (const role of ROLES) {
        const row = byRole[role]
        it(`${entity} as ${role}: ${OPS.map((op) => `${op}=${row[op]}`).join(" ")}`, async () => {
          for (const op of OPS) await exercise(entity, who[role], op, row[op])
        })
      }
    }

    it("the service principal passes every default rule", async () => {
      for (const entity of Object.keys(TABLE) as Array<EntityName>) {
        const f = factories(d, who.user.id)
        const created = await d.ok<Rec>("create", [entity, await f.data(entity)])
        expect((await d.ok<Rec>("read", [entity, created.id])).id).toBe(created.id)
        await d.ok("update", [entity, created.id, f.change(entity)])
        expect((await d.ok<{ total: number }>("list", [entity, { filter: { id: created.id } }])).total).toBe(1)
        expect(await d.ok("delete", [entity, created.id])).toBe(true)
      }
    })
  })
}
