/**
 * The entity model the daemon serves. Entities are data: loaded from YAML definitions, they are
 * the only source of table and column identifiers the query builder may use.
 */
import * as Context from "effect/Context"

export const FieldTypes = [
  "uuid",
  "string",
  "text",
  "email",
  "enum",
  "integer",
  "bigint",
  "decimal",
  "float",
  "boolean",
  "datetime",
  "json",
  "string_list"
] as const
export type FieldType = (typeof FieldTypes)[number]

/** What makes a value the daemon fills in: a UUID v4, or a cuid (Prisma's `cuid()`, 25 characters). */
export const DefaultFns = ["uuid", "cuid"] as const
export type DefaultFn = (typeof DefaultFns)[number]

export type OnDelete = "cascade" | "restrict" | "set_null" | "no_action"

export interface ForeignKey {
  readonly entity: string
  /** Wire name of the referenced field. */
  readonly field: string
  readonly onDelete: OnDelete
  /** Name under which `include` returns the referenced record (e.g. pageId → page). */
  readonly relation: string
}

export interface FieldDef {
  /** camelCase, as on the wire. */
  readonly name: string
  /** snake_case, as in the database. */
  readonly column: string
  readonly type: FieldType
  readonly primary: boolean
  /**
   * An integer primary key the database assigns (SERIAL, AUTO_INCREMENT, SQLite's rowid): left
   * out of INSERT, read back after it.
   */
  readonly autoIncrement?: true
  /**
   * Values the daemon makes: on a primary key, how its ids are made (a uuid primary key without
   * it gets UUID v4); on another field, its value on create when the caller sends none.
   */
  readonly defaultFn?: DefaultFn
  /** Set by the daemon (ids, createdAt); a caller may not send it. */
  readonly generated: boolean
  /** Cannot be changed by update. */
  readonly immutable: boolean
  /** Set by the daemon on every update (a caller may also send a value). */
  readonly autoUpdate: boolean
  /** Must be present on create (after defaults). */
  readonly required: boolean
  /** The column allows NULL. */
  readonly nullable: boolean
  readonly unique: boolean
  readonly minLength?: number
  readonly maxLength?: number
  readonly pattern?: RegExp
  readonly min?: number
  readonly max?: number
  readonly values?: ReadonlyArray<string>
  /** decimal: digits in all (precision) and after the point (scale), as DECIMAL(p, s). */
  readonly precision?: number
  readonly scale?: number
  /**
   * decimal: significant digits the column keeps exactly (SQLite stores a DECIMAL as a REAL
   * when it is not an integer: 15); more is refused rather than rounded.
   */
  readonly significantDigits?: number
  /** datetime on SQLite: stored as integer milliseconds since the epoch (Prisma's format), not ISO-8601 text. */
  readonly epochMillis?: true
  readonly default?: unknown
  readonly foreignKey?: ForeignKey
  /** Never written to logs or audit records. */
  readonly sensitive: boolean
  /** Never returned to anyone (`security.never_expose`). */
  readonly neverExpose: boolean
}

export interface IndexDef {
  readonly name: string
  readonly fields: ReadonlyArray<FieldDef>
  readonly unique: boolean
}

/** One operation's default rule from the entity's `acl:` block. */
export interface AclDefault {
  readonly public: boolean
  readonly system: boolean
  readonly self: boolean
  /** Roles named (each admits itself and every role above it). */
  readonly roles: ReadonlyArray<string>
}

export const AclOperations = ["create", "read", "update", "delete"] as const
export type AclOperation = (typeof AclOperations)[number]

export const isAclOperation = (v: unknown): v is AclOperation =>
  typeof v === "string" && (AclOperations as ReadonlyArray<string>).includes(v)

export interface EntityDef {
  readonly name: string
  readonly table: string
  readonly description: string
  readonly fields: ReadonlyArray<FieldDef>
  readonly byName: ReadonlyMap<string, FieldDef>
  readonly primaryKey: FieldDef
  readonly indexes: ReadonlyArray<IndexDef>
  readonly acl: Partial<Record<AclOperation, AclDefault>>
  /** The field that names the owning user, for `self` rules (User: id; others: userId/createdBy). */
  readonly ownerField?: FieldDef
  /** Field the default order of lists uses before the primary key (createdAt when present). */
  readonly orderField?: FieldDef
  /** The generated client's accessor name (`client.accessor`; default: the lower-camel plural). */
  readonly accessor?: string
  /** Fields that may be returned (everything but never_expose). */
  readonly exposed: ReadonlyArray<FieldDef>
}

export interface EntityRegistryShape {
  readonly entities: ReadonlyMap<string, EntityDef>
  /** Entities ordered so that every referenced table comes before the tables referring to it. */
  readonly creationOrder: ReadonlyArray<EntityDef>
}

export class EntityRegistry extends Context.Tag("dbal/EntityRegistry")<EntityRegistry, EntityRegistryShape>() {}

export const snakeToCamel = (s: string): string => s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
export const camelToSnake = (s: string): string =>
  s
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z])([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()
