/**
 * getSchema: what the daemon serves, as the caller may see it. The description is computed from
 * the caller's own access decisions (the Acl layer), so it can never show more than a request
 * could reach: an entity with no allowed operation is absent (which also hides system-only
 * entities from users), a field is listed only when the caller may read or set it, and
 * never_expose fields are never readable.
 */
import { Effect, Either } from "effect"
import type { Forbidden } from "../Errors.js"
import { type AclOperation, AclOperations, type EntityDef, type EntityRegistryShape, type FieldDef } from "../entity/Model.js"
import type { AclShape, Decision } from "../services/Acl.js"
import type { Principal } from "../services/Principal.js"

/** The caller's decision for each operation on one entity: allowed (with its fields) or refused. */
export type EntityDecisions = Readonly<Record<AclOperation, Decision | Forbidden>>

export interface SchemaField {
  readonly name: string
  readonly type: string
  /** Must be sent on create (no default, not generated). */
  readonly required: boolean
  readonly unique: boolean
  readonly nullable: boolean
  readonly primary: boolean
  /** Set by the daemon (ids, createdAt): never sent by a caller. */
  readonly generated: boolean
  /** Returned to this caller. */
  readonly readable: boolean
  /** This caller may set it on create or update. */
  readonly writable: boolean
  /** This caller may set it on create. */
  readonly creatable: boolean
  /** This caller may change it with update. */
  readonly updatable: boolean
  readonly values?: ReadonlyArray<string>
  readonly default?: unknown
  readonly minLength?: number
  readonly maxLength?: number
  readonly min?: number
  readonly max?: number
}

export interface SchemaRelation {
  /** The name `include` takes (e.g. `page`). */
  readonly name: string
  /** The referenced entity. */
  readonly entity: string
  /** The field of this entity that holds the reference (e.g. `pageId`). */
  readonly field: string
  /** The referenced field of the other entity (its id, or a unique field). */
  readonly references: string
  readonly onDelete: string
}

export interface SchemaEntity {
  readonly name: string
  readonly description: string
  /** The operations this caller may run. */
  readonly operations: ReadonlyArray<AclOperation>
  readonly fields: ReadonlyArray<SchemaField>
  readonly relations: ReadonlyArray<SchemaRelation>
}

export interface SchemaResult {
  readonly entities: ReadonlyArray<SchemaEntity>
}

const allowed = (d: Decision | Forbidden): d is Decision => !("_tag" in d && d._tag === "Forbidden")

const describeField = (f: FieldDef, readable: boolean, creatable: boolean, updatable: boolean): SchemaField => ({
  name: f.name,
  type: f.type,
  required: f.required,
  unique: f.unique,
  nullable: f.nullable,
  primary: f.primary,
  generated: f.generated,
  readable,
  writable: creatable || updatable,
  creatable,
  updatable,
  ...(f.values === undefined ? {} : { values: f.values }),
  ...(f.default === undefined ? {} : { default: f.default }),
  ...(f.minLength === undefined ? {} : { minLength: f.minLength }),
  ...(f.maxLength === undefined ? {} : { maxLength: f.maxLength }),
  ...(f.min === undefined ? {} : { min: f.min }),
  ...(f.max === undefined ? {} : { max: f.max })
})

/**
 * The schema a caller sees, from the registry and the caller's decisions per entity (an entity
 * without decisions counts as refused everything). Entities come in name order, fields and
 * relations in definition order.
 */
export const describeSchema = (registry: EntityRegistryShape, decisions: ReadonlyMap<string, EntityDecisions>): SchemaResult => {
  const visible = new Map<string, { entity: EntityDef; ops: Partial<Record<AclOperation, Decision>> }>()
  for (const entity of registry.entities.values()) {
    const d = decisions.get(entity.name)
    if (d === undefined) continue
    const ops: Partial<Record<AclOperation, Decision>> = {}
    for (const op of AclOperations) {
      const x = d[op]
      if (allowed(x)) ops[op] = x
    }
    if (Object.keys(ops).length > 0) visible.set(entity.name, { entity, ops })
  }
  const readableEntity = (name: string) => visible.get(name)?.ops.read !== undefined
  const entities = [...visible.values()]
    .sort((a, b) => a.entity.name.localeCompare(b.entity.name))
    .map(({ entity, ops }): SchemaEntity => {
      const readable = new Set(ops.read?.readable ?? [])
      const creatable = new Set(ops.create?.writable ?? [])
      // Immutable fields are set on create only.
      const updatable = new Set((ops.update?.writable ?? []).filter((f) => !f.immutable))
      const fields = entity.fields
        .map((f) => ({ f, r: readable.has(f) && !f.neverExpose, c: creatable.has(f), u: updatable.has(f) }))
        .filter(({ r, c, u }) => r || c || u)
      const relations = fields.flatMap(({ f, r }): Array<SchemaRelation> =>
        r && f.foreignKey !== undefined && readableEntity(f.foreignKey.entity)
          ? [
              {
                name: f.foreignKey.relation,
                entity: f.foreignKey.entity,
                field: f.name,
                references: f.foreignKey.field,
                onDelete: f.foreignKey.onDelete
              }
            ]
          : []
      )
      return {
        name: entity.name,
        description: entity.description,
        operations: AclOperations.filter((op) => ops[op] !== undefined),
        fields: fields.map(({ f, r, c, u }) => describeField(f, r, c, u)),
        relations
      }
    })
  return { entities }
}

/** The principal's decisions for every entity of the registry (a refusal is a value here, not a failure). */
export const decisionsOf = (acl: AclShape, registry: EntityRegistryShape, principal: Principal) =>
  Effect.gen(function* () {
    const out = new Map<string, EntityDecisions>()
    for (const entity of registry.entities.values()) {
      const pairs: Array<readonly [AclOperation, Decision | Forbidden]> = []
      for (const op of AclOperations) {
        const d = yield* Effect.either(acl.decide(principal, entity, op))
        pairs.push([op, Either.isRight(d) ? d.right : d.left])
      }
      out.set(entity.name, Object.fromEntries(pairs) as Record<AclOperation, Decision | Forbidden>)
    }
    return out
  })

/** The answer of the `getSchema` method (params `[]`) for this principal. */
export const getSchema = (acl: AclShape, registry: EntityRegistryShape, principal: Principal) =>
  Effect.map(decisionsOf(acl, registry, principal), (decisions) => describeSchema(registry, decisions))
