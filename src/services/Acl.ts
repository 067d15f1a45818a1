/**
 * Access decision contract: may this principal run this operation on this entity, on which rows,
 * seeing and writing which fields? Implemented by layers/Acl.ts.
 */
import { Context, type Effect, type Either } from "effect"
import type { Forbidden } from "../Errors.js"
import type { AclOperation, EntityDef, FieldDef } from "../entity/Model.js"
import type { Access } from "../query/Repository.js"
import type { Principal } from "./Principal.js"

export interface Decision extends Access {
  /** Fields the principal may set. */
  readonly writable: ReadonlyArray<FieldDef>
}

export interface AclShape {
  readonly decide: (principal: Principal, entity: EntityDef, operation: AclOperation) => Effect.Effect<Decision, Forbidden>
  /**
   * `decide` as a plain function (counted the same): the decision is pure once the rules are
   * loaded. Absent when spans are exported (`decide` then makes the `acl` span).
   */
  readonly decideNow?: (principal: Principal, entity: EntityDef, operation: AclOperation) => Either.Either<Decision, Forbidden>
  /**
   * The fields the principal may read of the entity (its `read` decision's: read_fields,
   * never_expose), whatever operation a request is decided under; undefined when the rules refuse
   * it `read` outright. Not an access check itself: not counted in dbal_acl_checks_total.
   */
  readonly readable: (principal: Principal, entity: EntityDef) => Effect.Effect<ReadonlyArray<FieldDef> | undefined>
}

export class Acl extends Context.Tag("dbal/Acl")<Acl, AclShape>() {}
