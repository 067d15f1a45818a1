/**
 * Access layer. Deny by default: in this version only the service role `system` is admitted,
 * and it passes every rule (all rows, every exposed field, every writable field). The per-role
 * defaults of the entities' `acl:` blocks and the rules file come with the security layers.
 */
import { Effect, Layer } from "effect"
import { Forbidden } from "../src/Errors.js"
import type { EntityDef } from "../src/entity/Model.js"
import { TRUE } from "../src/query/Filter.js"
import { Acl, type Decision } from "../src/services/Acl.js"

export const writableFields = (entity: EntityDef) => entity.fields.filter((f) => !f.generated && !f.primary)

export const systemDecision = (entity: EntityDef): Decision => ({
  rowFilter: TRUE,
  readable: entity.exposed,
  writable: writableFields(entity)
})

export const layer = Layer.succeed(Acl, {
  decide: (principal, entity, operation) =>
    principal.role === "system"
      ? Effect.succeed(systemDecision(entity))
      : Effect.fail(new Forbidden({ reason: `Insufficient permissions for operation '${operation}' on entity '${entity.name}'` }))
})
