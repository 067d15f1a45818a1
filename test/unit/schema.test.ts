/**
 * getSchema's description (src/rpc/Schema.ts) through the real Acl layer, over the shipped
 * entities and rules (config/development.yaml: config/entities, config/acl_rules.yaml), for a
 * user, an admin and a service principal.
 */
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import * as AclLayer from "../../layers/Acl.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import { EntityRegistry } from "../../src/entity/Model.js"
import { Acl } from "../../src/services/Acl.js"
import { getSchema, type SchemaEntity, type SchemaResult } from "../../src/rpc/Schema.js"
import type { Principal } from "../../src/services/Principal.js"
import { root } from "../support/daemon.js"

const config = ConfigLayer.layer(path.join(root, "config", "development.yaml"), {})
const layer = AclLayer.layer.pipe(Layer.provideMerge(EntitiesLayer.layer), Layer.provide(config))

const schemaFor = (principal: Principal): Promise<SchemaResult> =>
  Effect.runPromise(
    Effect.flatMap(Effect.all([Acl, EntityRegistry]), ([acl, registry]) => getSchema(acl, registry, principal)).pipe(Effect.provide(layer))
  )

const who = {
  user: { userId: "00000000-0000-4000-8000-000000000001", role: "user", via: "session" },
  admin: { userId: "00000000-0000-4000-8000-000000000002", role: "admin", via: "session" },
  service: { userId: "tests", role: "system", via: "service-token" }
} as const satisfies Record<string, Principal>

const entity = (s: SchemaResult, name: string): SchemaEntity => {
  const e = s.entities.find((x) => x.name === name)
  if (e === undefined) throw new Error(`${name} is not in the schema`)
  return e
}
const names = (s: SchemaResult) => s.entities.map((e) => e.name)

describe("getSchema", () => {
  it("a service principal sees every entity and every operation, never the never_expose fields", async () => {
    const s = await schemaFor(who.service)
    expect(names(s)).toEqual(["ComponentHierarchy", "Credential", "LuaScript", "Package", "PageView", "Session", "User", "Workflow"])
    for (const e of s.entities) expect(e.operations).toEqual(["create", "read", "update", "delete"])
    const cred = entity(s, "Credential")
    const hash = cred.fields.find((f) => f.name === "passwordHash")
    // Settable (the service stores it), never returned.
    expect(hash).toMatchObject({ readable: false, writable: true, creatable: true })
    expect(cred.fields.find((f) => f.name === "username")).toMatchObject({ readable: true, unique: true, type: "string" })
    expect(cred.relations).toEqual([{ name: "user", entity: "User", field: "username", references: "username", onDelete: "cascade" }])
    const id = entity(s, "User").fields.find((f) => f.name === "id")
    expect(id).toMatchObject({ primary: true, generated: true, readable: true, writable: false })
    expect(entity(s, "User").fields.find((f) => f.name === "role")).toMatchObject({
      type: "enum",
      values: ["user", "admin", "god", "supergod"],
      required: false
    })
    const created = entity(s, "User").fields.find((f) => f.name === "createdAt")
    expect(created).toMatchObject({ readable: true, writable: false })
  })

  it("a user sees no system-only or admin-only entity, and the fields the rules allow", async () => {
    const s = await schemaFor(who.user)
    expect(names(s)).not.toContain("Credential")
    expect(names(s)).not.toContain("Session")
    expect(names(s)).not.toContain("ComponentHierarchy")
    expect(names(s)).toContain("User")
    expect(names(s)).toContain("PageView")
    const user = entity(s, "User")
    expect(user.operations).toEqual(["create", "read", "update"])
    // acl_rules.yaml: users change only their own email.
    expect(user.fields.find((f) => f.name === "email")).toMatchObject({ readable: true, updatable: true, creatable: true })
    expect(user.fields.find((f) => f.name === "username")).toMatchObject({ readable: true, updatable: false, creatable: true })
    const pages = entity(s, "PageView")
    expect(pages.operations).toEqual(["read"])
    expect(pages.fields.every((f) => f.readable && !f.writable)).toBe(true)
  })

  it("an admin sees the rules' field lists and the relations to entities it may read", async () => {
    const s = await schemaFor(who.admin)
    expect(names(s)).toEqual(["ComponentHierarchy", "LuaScript", "PageView", "User", "Workflow"])
    const wf = entity(s, "Workflow")
    expect(wf.operations).toEqual(["read"])
    // acl_rules.yaml: admins read workflows without their steps and trigger configuration.
    expect(wf.fields.map((f) => f.name)).toEqual([
      "id",
      "name",
      "description",
      "trigger",
      "isActive",
      "createdBy",
      "createdAt",
      "updatedAt"
    ])
    expect(wf.relations).toEqual([{ name: "creator", entity: "User", field: "createdBy", references: "id", onDelete: "no_action" }])
    expect(entity(s, "ComponentHierarchy").relations.map((r) => r.name)).toEqual(["page", "parent"])
    expect(entity(s, "User").operations).toEqual(["create", "read", "update", "delete"])
  })
})
