/**
 * The expected access decision of every entity × principal × method under the shipped rules,
 * written out by hand from config/acl_rules.yaml and the entities' `acl:` blocks
 * (config/entities/*.yaml, summarised in docs/security.md, "Access rules"). Nothing here is computed
 * by the daemon's own access code: access.test.ts runs every cell through the real daemon and
 * compares.
 *
 * Entity defaults ("+" = that role and every role above it, user < admin < god < supergod):
 *   User                 create any; read self|admin+; update self|admin+; delete admin+
 *   Credential, Session  system only
 *   PageView             create/update/delete god+; read any
 *   ComponentHierarchy, Workflow, LuaScript: create/update/delete god+; read admin+
 *   Package              create/update/delete supergod; read god+
 * Shipped rules (config/acl_rules.yaml), which replace the default for the (role, entity,
 * operation) they match:
 *   R1 user  PageView read    filter {isActive: true}
 *   R2 admin Workflow read    filter {createdBy: $user.id}, read_fields without steps/triggerConfig
 *   R3 user  User     update  filter {id: $user.id}, write_fields [email]
 *   R4 user, admin, god Package delete → deny
 * The service role `system` passes every rule; a connection without credentials gets 401.
 * Methods map onto operations as documented: read = read, list, count, findFirst, findByField;
 * update = update, updateByField, updateMany, upsert's update; delete = delete, deleteByField,
 * deleteMany; create = create, createMany, upsert's create (an upsert needs both).
 */

/** Who asks: no credentials at all, a session of each user role, or a service token. */
export const KINDS = ["anonymous", "user", "admin", "god", "supergod", "system"] as const
export type Kind = (typeof KINDS)[number]

export const ENTITIES = ["User", "Credential", "Session", "PageView", "ComponentHierarchy", "Workflow", "LuaScript", "Package"] as const
export type Entity = (typeof ENTITIES)[number]

/** Every method of src/rpc/Protocol.ts that names an entity, in the table's column order. */
export const ENTITY_METHODS = [
  "create",
  "read",
  "update",
  "delete",
  "list",
  "findFirst",
  "findByField",
  "upsert",
  "updateByField",
  "deleteByField",
  "createMany",
  "updateMany",
  "deleteMany",
  "count"
] as const
export type EntityMethod = (typeof ENTITY_METHODS)[number]

/** The methods that name no entity: checked per principal (transaction also wraps every cell). */
export const OTHER_METHODS = ["authenticate", "getCapabilities", "getSchema", "transaction"] as const

/**
 * Live changes: `subscribe` is decided as `list` is, and each event against the subscriber's
 * access; their per-subscriber access table is test/e2e/realtime.test.ts's, over the wire.
 */
export const LIVE_METHODS = ["subscribe", "unsubscribe"] as const

/**
 * A: allowed, reaches any row.
 * F: allowed, but only on the rows the rule's filter (or `self`) admits: others are 404 / null /
 *    left out / 0.
 * D: refused, 403 "Insufficient permissions for operation …".
 * U: no credentials, 401.
 * W: allowed by the rules, but every field this method could set is refused: R3 lets a user
 *    write only `email`, which is unique, and updateMany cannot set unique fields — any other
 *    field is outside write_fields (403 naming the field).
 * X: the method cannot apply to the entity at all (upsert needs a unique field other than the
 *    id; ComponentHierarchy has none): 422, after the access decision (a refused principal gets
 *    its 403 first, as from every method).
 */
export type Code = "A" | "F" | "D" | "U" | "W" | "X"

// eslint-disable-next-line max-len -- the column names line up with the table below
//                                   create read update delete list findFirst findByField upsert updateByField deleteByField createMany updateMany deleteMany count
const HEADER = "cr rd up de li ff fb us ub db cm um dm co"
const NONE = "U  U  U  U  U  U  U  U  U  U  U  U  U  U"
const ALL_ALLOWED = "A  A  A  A  A  A  A  A  A  A  A  A  A  A"
const ALL_DENIED = "D  D  D  D  D  D  D  D  D  D  D  D  D  D"

/** entity → principal → one code per column of HEADER. */
const TABLE: Record<Entity, Record<Kind, string>> = {
  User: {
    anonymous: NONE,
    //         cr rd up de li ff fb us ub db cm um dm co
    user: "A  F  F  D  F  F  F  F  F  D  A  W  D  F", // create: any; read: self (default); update: R3; delete: admin+
    admin: ALL_ALLOWED,
    god: ALL_ALLOWED,
    supergod: ALL_ALLOWED,
    system: ALL_ALLOWED
  },
  Credential: { anonymous: NONE, user: ALL_DENIED, admin: ALL_DENIED, god: ALL_DENIED, supergod: ALL_DENIED, system: ALL_ALLOWED },
  Session: { anonymous: NONE, user: ALL_DENIED, admin: ALL_DENIED, god: ALL_DENIED, supergod: ALL_DENIED, system: ALL_ALLOWED },
  PageView: {
    anonymous: NONE,
    //         cr rd up de li ff fb us ub db cm um dm co
    user: "D  F  D  D  F  F  F  D  D  D  D  D  D  F", // read: R1 (active pages only)
    admin: "D  A  D  D  A  A  A  D  D  D  D  D  D  A", // read: any; writes: god+
    god: ALL_ALLOWED,
    supergod: ALL_ALLOWED,
    system: ALL_ALLOWED
  },
  ComponentHierarchy: {
    anonymous: NONE,
    //         cr rd up de li ff fb us ub db cm um dm co
    user: "D  D  D  D  D  D  D  D  D  D  D  D  D  D",
    admin: "D  A  D  D  A  A  A  D  D  D  D  D  D  A", // read: admin+
    god: "A  A  A  A  A  A  A  X  A  A  A  A  A  A",
    supergod: "A  A  A  A  A  A  A  X  A  A  A  A  A  A",
    system: "A  A  A  A  A  A  A  X  A  A  A  A  A  A"
  },
  Workflow: {
    anonymous: NONE,
    user: ALL_DENIED,
    //         cr rd up de li ff fb us ub db cm um dm co
    admin: "D  F  D  D  F  F  F  D  D  D  D  D  D  F", // read: R2 (their own, without steps/triggerConfig)
    god: ALL_ALLOWED,
    supergod: ALL_ALLOWED,
    system: ALL_ALLOWED
  },
  LuaScript: {
    anonymous: NONE,
    user: ALL_DENIED,
    //         cr rd up de li ff fb us ub db cm um dm co
    admin: "D  A  D  D  A  A  A  D  D  D  D  D  D  A", // read: admin+
    god: ALL_ALLOWED,
    supergod: ALL_ALLOWED,
    system: ALL_ALLOWED
  },
  Package: {
    anonymous: NONE,
    user: ALL_DENIED,
    admin: ALL_DENIED, // read: god+
    //         cr rd up de li ff fb us ub db cm um dm co
    god: "D  A  D  D  A  A  A  D  D  D  D  D  D  A", // read: god+; delete: R4 deny (and supergod by default)
    supergod: ALL_ALLOWED,
    system: ALL_ALLOWED
  }
}

const parseRow = (row: string, at: string): Record<EntityMethod, Code> => {
  const codes = row.trim().split(/\s+/)
  if (codes.length !== ENTITY_METHODS.length || HEADER.split(" ").length !== ENTITY_METHODS.length) {
    throw new Error(`${at}: expected ${ENTITY_METHODS.length} codes, got ${codes.length}`)
  }
  for (const c of codes) if (!["A", "F", "D", "U", "W", "X"].includes(c)) throw new Error(`${at}: unknown code ${c}`)
  return Object.fromEntries(ENTITY_METHODS.map((m, i) => [m, codes[i] as Code])) as Record<EntityMethod, Code>
}

export const EXPECTED: Record<Entity, Record<Kind, Record<EntityMethod, Code>>> = Object.fromEntries(
  ENTITIES.map((e) => [e, Object.fromEntries(KINDS.map((k) => [k, parseRow(TABLE[e][k], `${e}.${k}`)]))])
) as Record<Entity, Record<Kind, Record<EntityMethod, Code>>>

/** The operation(s) each method is decided under (docs/security.md, "Access rules": Operations). */
export const OPERATIONS_OF: Record<EntityMethod, ReadonlyArray<"create" | "read" | "update" | "delete">> = {
  create: ["create"],
  createMany: ["create"],
  read: ["read"],
  list: ["read"],
  count: ["read"],
  findFirst: ["read"],
  findByField: ["read"],
  update: ["update"],
  updateByField: ["update"],
  updateMany: ["update"],
  delete: ["delete"],
  deleteByField: ["delete"],
  deleteMany: ["delete"],
  upsert: ["create", "update"]
}

/** Every cell, flattened. */
export const CELLS: ReadonlyArray<{ entity: Entity; kind: Kind; method: EntityMethod; code: Code }> = ENTITIES.flatMap((entity) =>
  KINDS.flatMap((kind) => ENTITY_METHODS.map((method) => ({ entity, kind, method, code: EXPECTED[entity][kind][method] })))
)
