/**
 * The types every client shares, whatever its entities: JSON values, filter operators per field
 * type, list options and results, capabilities, and the shape of an entity's types that a
 * generated module (`dbal-daemon generate`, see src/codegen/client.ts) fills in per entity.
 *
 * Conventions: ids the daemon generates are UUID v4 strings (integer ids for autoincrement
 * models); date-times are ISO-8601 strings in UTC; optional fields come back as `null` when
 * unset; JSON fields come back as JSON values.
 */

export type JsonPrimitive = string | number | boolean | null
export type JsonValue = JsonPrimitive | ReadonlyArray<JsonValue> | { readonly [key: string]: JsonValue }
export type JsonObject = { readonly [key: string]: JsonValue }

/** An ISO-8601 date-time (the daemon answers in UTC, e.g. `2025-01-31T12:00:00.000Z`). */
export type DateTime = string
/** A UUID (v4 for the ids the daemon generates). */
export type Uuid = string

// ---------------------------------------------------------------------------------------------
// Filters: one type per field type (a generated `<Entity>Where` names one per field)

interface Equality<V> {
  readonly eq?: V | null
  readonly ne?: V | null
  readonly in?: ReadonlyArray<V>
  readonly notIn?: ReadonlyArray<V>
  readonly isNull?: boolean
}
interface Ordered<V> extends Equality<V> {
  readonly gt?: V
  readonly gte?: V
  readonly lt?: V
  readonly lte?: V
}
interface TextOperators<V> extends Ordered<V> {
  readonly contains?: string
  readonly startsWith?: string
  readonly endsWith?: string
}
/**
 * Free text also matches without regard to case (A-Z as a-z) with `mode: "insensitive"`, on
 * eq, ne, in, notIn, contains, startsWith and endsWith.
 */
interface StringOperators extends TextOperators<string> {
  readonly mode?: "insensitive" | "default"
}

/**
 * A condition on one field: a plain value means equality, `null` means "is null", an object
 * holds operators (several in one object are ANDed).
 */
export type StringFilter = string | null | StringOperators
export type EnumFilter<V extends string> = V | null | TextOperators<V>
export type UuidFilter = string | null | Ordered<string>
export type NumberFilter = number | null | Ordered<number>
export type BooleanFilter = boolean | null | Equality<boolean>
export type DateTimeFilter = DateTime | null | Ordered<DateTime>
/** BigInt and Decimal values: strings of digits ("9007199254740993", "12.50"), compared as numbers. */
export type ExactNumberFilter = string | null | Ordered<string>
/** A list of strings (PostgreSQL): has one value, has every one, has at least one, is empty. */
export type StringListFilter = null | {
  readonly has?: string
  readonly hasEvery?: ReadonlyArray<string>
  readonly hasSome?: ReadonlyArray<string>
  readonly isEmpty?: boolean
  readonly isNull?: boolean
}
/** JSON fields can only be tested for null. */
export type JsonFilter = null | { readonly isNull?: boolean }

/** The combinators every filter has. */
export interface WhereCombinators<W> {
  readonly AND?: ReadonlyArray<W>
  readonly OR?: ReadonlyArray<W>
  readonly NOT?: W | ReadonlyArray<W>
}

/** A filter on any entity (the untyped `client.entity(name)`). */
export interface AnyWhere extends WhereCombinators<AnyWhere> {
  readonly [field: string]: unknown
}

export type SortDirection = "asc" | "desc"
/** `{field: "asc"}`, or a list of them for several keys (first key first). */
export type Sort<F extends string> = { readonly [K in F]?: SortDirection } | ReadonlyArray<{ readonly [K in F]?: SortDirection }>

// ---------------------------------------------------------------------------------------------
// An entity's types, as a generated module declares them

export interface EntityTypes {
  /** A record as the daemon returns it. */
  readonly record: object
  /** What create accepts (generated fields left out; fields with a default optional). */
  readonly create: object
  /** What update accepts. */
  readonly update: object
  /** The filter on this entity's fields. */
  readonly where: object
  /** Fields a list can be sorted by (not JSON fields). */
  readonly sortable: string
  /** Unique fields usable for lookups besides the id (findByField, upsert, updateByField, deleteByField). */
  readonly unique: string
  /** The id's type: string (UUID) or number (autoincrement). */
  readonly id: string | number
  /** Relation name → the related record (what `include` adds). */
  readonly relations: object
}

/** What `client.entity(name)` serves for a name the client was not generated with. */
export interface AnyEntity extends EntityTypes {
  readonly record: { readonly [field: string]: JsonValue }
  readonly create: { readonly [field: string]: unknown }
  readonly update: { readonly [field: string]: unknown }
  readonly where: AnyWhere
  readonly sortable: string
  readonly unique: string
  readonly id: string | number
  readonly relations: { readonly [relation: string]: { readonly [field: string]: JsonValue } }
}

/** Relation names of an entity. */
export type RelationName<T extends EntityTypes> = keyof T["relations"] & string

/** A record with the relations named in `include` (null where the related record is missing or not readable). */
export type WithIncludes<T extends EntityTypes, I extends RelationName<T>> = T["record"] & {
  readonly [K in I]: T["relations"][K] | null
}

export interface ListOptions<T extends EntityTypes, I extends RelationName<T> = never> {
  readonly filter?: T["where"]
  readonly sort?: Sort<T["sortable"]>
  /** From 1 (default 1). */
  readonly page?: number
  /** Default 20, at most the daemon's `performance.max_page_size` (100 by default). */
  readonly limit?: number
  /**
   * Relations to return with each record (one level, e.g. ["page"] on components), under the
   * relation's name; null where the referenced record is missing or not readable by the caller.
   */
  readonly include?: ReadonlyArray<I>
}

/** One operation of `client.transaction`: a method of the protocol and its positional params. */
export interface TransactionOp {
  readonly method:
    | "create"
    | "read"
    | "update"
    | "delete"
    | "list"
    | "findFirst"
    | "findByField"
    | "upsert"
    | "updateByField"
    | "deleteByField"
    | "createMany"
    | "updateMany"
    | "deleteMany"
    | "count"
  readonly params: ReadonlyArray<unknown>
}

export interface ListResult<T> {
  readonly data: ReadonlyArray<T>
  readonly total: number
  readonly page: number
  readonly limit: number
  /** More rows after this page. */
  readonly hasMore: boolean
}

// ---------------------------------------------------------------------------------------------
// getCapabilities

export interface Capabilities {
  readonly adapter: string
  readonly dialect: "sqlite" | "postgresql" | "mysql"
  readonly features: {
    readonly transactions: boolean
    readonly joins: boolean
    readonly fullTextSearch: boolean
    readonly ttl: boolean
    readonly jsonQueries: boolean
    readonly aggregations: boolean
    readonly relations: boolean
  }
  readonly methods: ReadonlyArray<string>
  readonly limits: Readonly<Record<string, number>>
}

// ---------------------------------------------------------------------------------------------
// getSchema

/** One field as `getSchema` describes it to this caller. */
export interface SchemaField {
  readonly name: string
  readonly type: string
  /** Must be sent on create. */
  readonly required: boolean
  readonly unique: boolean
  readonly nullable: boolean
  readonly primary: boolean
  /** Set by the daemon (ids, createdAt). */
  readonly generated: boolean
  /** Returned to this caller. */
  readonly readable: boolean
  /** This caller may set it (on create or update). */
  readonly writable: boolean
  readonly creatable: boolean
  readonly updatable: boolean
  readonly values?: ReadonlyArray<string>
  readonly default?: JsonValue
  readonly minLength?: number
  readonly maxLength?: number
  readonly min?: number
  readonly max?: number
}

export interface SchemaRelation {
  /** The name `include` takes. */
  readonly name: string
  /** The referenced entity. */
  readonly entity: string
  /** This entity's field holding the reference. */
  readonly field: string
  /** The referenced entity's field. */
  readonly references: string
  readonly onDelete: string
}

export interface SchemaEntity {
  readonly name: string
  readonly description: string
  readonly operations: ReadonlyArray<"create" | "read" | "update" | "delete">
  readonly fields: ReadonlyArray<SchemaField>
  readonly relations: ReadonlyArray<SchemaRelation>
}

/** The answer of `getSchema`: only what this caller may read or write. */
export interface SchemaResult {
  readonly entities: ReadonlyArray<SchemaEntity>
}
