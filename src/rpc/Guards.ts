/**
 * Rules on written values that hold for every principal but `system`, whatever the access rules
 * say: no role can be raised above the caller's own (`no_role_escalation`).
 */
import { Either } from "effect"
import { Forbidden } from "../Errors.js"
import type { EntityDef } from "../entity/Model.js"
import type { Values } from "../entity/Validate.js"
import { isUserRole, type Principal, roleRank } from "../services/Principal.js"

export const checkNoRoleEscalation = (
  principal: Principal,
  entity: EntityDef,
  records: ReadonlyArray<Values>
): Either.Either<void, Forbidden> => {
  if (principal.role === "system") return Either.right(undefined)
  const field = entity.byName.get("role")
  if (field === undefined || field.type !== "enum") return Either.right(undefined)
  for (const values of records) {
    const v = values.get(field)
    if (isUserRole(v) && roleRank(v) > roleRank(principal.role)) {
      return Either.left(new Forbidden({ reason: `no_role_escalation: cannot set role '${v}' above your own ('${principal.role}')` }))
    }
  }
  return Either.right(undefined)
}
