/**
 * Prisma bridge: reads the `model`s of a schema.prisma and turns each into the same raw entity
 * document a YAML definition gives, so that `buildRegistry` does all the checking and DDL and
 * validation stay one code path. Parsing is done by @mrleebo/prisma-ast (pure JavaScript; no
 * Prisma engine, no generated client).
 *
 * Mapping (every case not listed is a problem line naming the file, line, model and field):
 *   entity      the model name
 *   table       `@@map("name")`, else by `PrismaNaming`: the model name (prisma) or the YAML
 *               table of the same entity / the snake_case plural of the name (snake_case)
 *   column      `@map("column")`, else by `PrismaNaming`: the field name or its snake_case; the
 *               wire name is the field name, which must be camelCase words (userId, not userID)
 *   String      string; uuid when the field has @db.Uuid or @default(uuid()), or is the
 *               scalar of a relation to a uuid field; text with @db.Text; max_length n with
 *               @db.VarChar(n) / @db.Char(n), and 191 on MySQL in `prisma` naming (Prisma's
 *               VARCHAR(191)). Names are not used to guess types (an `email`
 *               String stays a string: Prisma says nothing about its format), with one exception:
 *               User.role as a String becomes the enum of the daemon's roles (user, admin, god,
 *               supergod), because sessions, no_role_escalation and the rank guard rely on it
 *               and ignore a role field that is not an enum; and Session.userId as a String
 *               without a relation becomes a uuid (no foreign key is invented), because sessions
 *               are checked by joining it to User.id
 *   Int         integer (32-bit range)      BigInt   bigint (a string on the wire)
 *   Float       float                       Decimal  decimal (a string on the wire; DECIMAL(65,30)
 *                                                    or @db.Decimal(p, s))
 *   Boolean     boolean                     DateTime datetime (in `prisma` naming, stored on
 *                                                    SQLite as epoch milliseconds, as Prisma does)
 *   Json        json                        enum E   enum with E's values
 *   String[]    string_list: PostgreSQL only (Prisma has no scalar lists elsewhere); an omitted
 *               list is stored empty
 *   Bytes, Unsupported(...), composite types, other lists: not supported (problem)
 *   `?`         optional; otherwise required (a default makes it not required on create)
 *   @id         primary + generated: String @id @default(uuid()) → uuid, UUID v4 made by the
 *               daemon; String @id @default(cuid()) → string, a cuid made by the daemon; String
 *               @id without a default → string, UUID v4 made by the daemon; Int @id
 *               @default(autoincrement()) → integer numbered by the database (ids on the wire
 *               are numbers). Other ids, and @@id (composite ids), are not supported
 *   @unique     unique                      @@unique / @@index  indexes (unique or not)
 *   @default(now())   generated + immutable (set by the daemon on create, e.g. createdAt)
 *   @updatedAt        auto_update
 *   @default(uuid() | cuid()) on another field: made by the daemon when a create sends none
 *               (Prisma's client makes them, so the table has no default)
 *   @default(literal) default (strings, numbers, booleans, enum values, JSON text for Json, lists)
 *   @default(autoincrement() outside an Int @id | dbgenerated(...) | uuid(7) | ...): problem
 *   relation fields (whose type is another model) are no columns: @relation(fields: [x],
 *               references: [y], onDelete: ...) becomes x's foreign_key {entity, field: y,
 *               on_delete, relation: the relation field's name}; without onDelete, Prisma's default applies: SetNull when x is optional,
 *               Restrict when it is required. Composite relations and onDelete: SetDefault are not
 *               supported, nor implicit many-to-many relations (list on both sides: declare the
 *               join model); onUpdate is ignored (primary keys never change in the daemon).
 *   @db.* other native types are ignored (the daemon picks column types per dialect).
 *   `///` comments right above a model become its description.
 *
 * Access: Prisma has no place for rules, so Prisma-defined entities get no default `acl:` —
 * only the `system` role (service tokens) and the rules file (security.acl.rules_file) grant
 * access. Likewise nothing is `sensitive` or `never_expose` by itself: list such fields in
 * `security.never_expose` (e.g. Credential.passwordHash).
 */
import * as fs from "node:fs"
import {
  type Attribute,
  type AttributeArgument,
  type Block,
  type Enum,
  type Field,
  type Func,
  getSchema,
  type KeyValue,
  type Model,
  PrismaParser,
  type Value,
  VisitorClassFactory
} from "@mrleebo/prisma-ast"
import type { Dialect } from "./Ddl.js"
import { buildRegistry, EntityLoadError } from "./Load.js"
import { canonicalBigInt, canonicalDecimal } from "./Numbers.js"
import { UserRoles } from "../services/Principal.js"
import { camelToSnake, type EntityRegistryShape, snakeToCamel } from "./Model.js"

/** The documents `buildRegistry` takes (the YAML loader's shape). */
export type RawEntity = Parameters<typeof buildRegistry>[0][number]

type OnDeleteRaw = "cascade" | "restrict" | "set_null" | "no_action"

const SCALARS = new Set(["String", "Int", "BigInt", "Float", "Decimal", "Boolean", "DateTime", "Json"])
const UNSUPPORTED_SCALARS = new Set(["Bytes"])
/** Prisma's String on MySQL: VARCHAR(191) unless a native type says otherwise. */
const MYSQL_STRING_MAX = 191
const ON_DELETE: Record<string, OnDeleteRaw> = { Cascade: "cascade", Restrict: "restrict", SetNull: "set_null", NoAction: "no_action" }

let parserPair: { parser: PrismaParser; visitor: InstanceType<ReturnType<typeof VisitorClassFactory>> } | undefined
/** One parser for the process (building a chevrotain parser is costly), with line numbers on. */
const parser = () => {
  if (parserPair === undefined) {
    const p = new PrismaParser({ nodeLocationTracking: "full" })
    const Visitor = VisitorClassFactory(p)
    parserPair = { parser: p, visitor: new Visitor() }
  }
  return parserPair
}

const isFunc = (v: unknown): v is Func =>
  typeof v === "object" && v !== null && !Array.isArray(v) && (v as { type?: unknown }).type === "function"
const isKeyValue = (v: unknown): v is KeyValue =>
  typeof v === "object" && v !== null && !Array.isArray(v) && (v as { type?: unknown }).type === "keyValue"

/** The values of an array argument: field names (a `name(sort: Desc)` entry gives `name`). */
const nameList = (v: Value | KeyValue | Func | undefined): Array<string> | undefined => {
  if (typeof v !== "object" || v === null) return undefined
  const items: ReadonlyArray<unknown> | undefined = Array.isArray(v)
    ? v
    : (v as { type?: unknown }).type === "array"
      ? (v as { args: ReadonlyArray<unknown> }).args
      : undefined
  if (items === undefined) return undefined
  const out: Array<string> = []
  for (const item of items) {
    if (typeof item === "string") out.push(item)
    else if (isFunc(item)) out.push(item.name)
    else return undefined
  }
  return out
}

/** Positional arguments of an attribute, then its named ones. */
const argsOf = (attr: { readonly args?: ReadonlyArray<AttributeArgument> }) => {
  const positional: Array<Value | Func> = []
  const named = new Map<string, Value>()
  for (const a of attr.args ?? []) {
    if (isKeyValue(a.value)) named.set(a.value.key, a.value.value)
    else positional.push(a.value)
  }
  return { positional, named }
}

/** A quoted Prisma string literal's text, or undefined when `v` is not one. */
const stringLiteral = (v: unknown): string | undefined => {
  if (typeof v !== "string" || !/^".*"$/s.test(v)) return undefined
  try {
    const s: unknown = JSON.parse(v)
    return typeof s === "string" ? s : undefined
  } catch {
    return undefined
  }
}

const lineOf = (node: { readonly location?: { readonly startLine?: number } }): string =>
  node.location?.startLine === undefined ? "" : `:${node.location.startLine}`

const attrLabel = (a: Attribute): string => `@${a.group === undefined ? "" : `${a.group}.`}${a.name}`

interface ScalarInfo {
  readonly field: Field
  /** The field's key in the raw document (snake_case of its name: the wire name comes from it). */
  readonly key: string
  readonly column: string
  /** Type before relations are looked at. */
  readonly baseType: string
  readonly attrs: ReadonlyArray<Attribute>
}

/**
 * How the models' tables and columns are named when @@map / @map say nothing:
 * - `prisma`: as `prisma migrate` names them, the model's and the field's own names ("User",
 *   "createdAt"); unique indexes `<table>_<columns>_key`, plain ones `<table>_<columns>_idx`;
 * - `snake_case`: as the daemon's YAML entities name them: snake_case columns, and the table the
 *   YAML definition of the same entity gives (`tables`), else the snake_case plural of the name.
 */
export type PrismaNaming = "prisma" | "snake_case"

export interface PrismaOptions {
  readonly naming?: PrismaNaming
  /**
   * The dialect served, when known: in `prisma` naming the columns are taken as `prisma migrate`
   * makes them there (MySQL: String is VARCHAR(191); SQLite: DateTime holds epoch milliseconds),
   * and what the dialect cannot store is refused (String[] outside PostgreSQL).
   */
  readonly dialect?: Dialect
  /** Entity name → table, for models without @@map in `snake_case` naming (see `yamlTables`). */
  readonly tables?: ReadonlyMap<string, string>
}

/**
 * Turns a schema.prisma's text into raw entity documents (one per model). `file` names the
 * source in problem lines.
 */
export const prismaToRaws = (
  source: string,
  file: string,
  options: PrismaOptions = {}
): { raws: Array<RawEntity>; problems: Array<string> } => {
  const naming = options.naming ?? "prisma"
  const problems: Array<string> = []
  // The parser wants a line break right after `{`; trailing blanks (harmless to Prisma) would
  // fail it. No Prisma token spans lines, so removing them changes nothing else.
  const text = source.replace(/\r\n?/g, "\n").replace(/[ \t]+$/gm, "")
  let list: ReadonlyArray<Block>
  try {
    const { parser: p, visitor } = parser()
    list = getSchema(text, { parser: p, visitor }).list
  } catch (e) {
    const token = (e as { token?: { startLine?: number; startColumn?: number; image?: string } }).token
    const where = token?.startLine === undefined || Number.isNaN(token.startLine) ? "" : `:${token.startLine}:${token.startColumn ?? 0}`
    const near = token?.image === undefined || token.image === "" ? "" : ` near ${JSON.stringify(token.image.slice(0, 40))}`
    problems.push(`${file}${where}: Prisma syntax error${near}`)
    return { raws: [], problems }
  }

  const models = new Map<string, Model>()
  const enums = new Map<string, Enum>()
  const composite = new Set<string>()
  const descriptions = new Map<string, string>()
  let docLines: Array<string> = []
  for (const b of list) {
    if (b.type === "comment") {
      if (b.text.startsWith("///")) docLines.push(b.text.replace(/^\/\/\/\s?/, ""))
      continue
    }
    if (b.type === "model") {
      if (models.has(b.name)) problems.push(`${file}${lineOf(b)}: model ${b.name} is defined twice`)
      models.set(b.name, b)
      if (docLines.length > 0) descriptions.set(b.name, docLines.join("\n").trim())
    } else if (b.type === "enum") enums.set(b.name, b)
    else if (b.type === "type") composite.add(b.name)
    else if (b.type === "view") problems.push(`${file}${lineOf(b)}: view ${b.name}: views are not supported (use a model)`)
    docLines = []
  }
  if (models.size === 0) problems.push(`${file}: no model found`)

  const enumValues = (e: Enum, at: string): Array<string> => {
    const values: Array<string> = []
    for (const item of e.enumerators) {
      if (item.type !== "enumerator") continue
      if ((item.attributes ?? []).length > 0)
        problems.push(`${at}: enum ${e.name}.${item.name}: attributes on enum values (@map) are not supported`)
      values.push(item.name)
    }
    if (values.length === 0) problems.push(`${at}: enum ${e.name} has no values`)
    return values
  }

  // First pass: the scalar fields of every model with their columns and base types, so that
  // relations can look at their targets.
  const scalarsOf = new Map<string, Map<string, ScalarInfo>>()
  for (const [name, model] of models) {
    const scalars = new Map<string, ScalarInfo>()
    for (const prop of model.properties) {
      if (prop.type !== "field") continue
      const at = `${file}${lineOf(prop)}: ${name}.${prop.name}`
      if (isFunc(prop.fieldType)) {
        problems.push(`${at}: type ${prop.fieldType.name}(...) is not supported`)
        continue
      }
      const ft = prop.fieldType
      if (models.has(ft)) continue // a relation field, handled below
      const attrs = (prop.attributes ?? []).filter((a): a is Attribute => a.type === "attribute")
      if (composite.has(ft)) {
        problems.push(`${at}: composite type ${ft} is not supported`)
        continue
      }
      if (UNSUPPORTED_SCALARS.has(ft)) {
        problems.push(
          `${at}: type ${ft} is not supported (supported: String, Int, BigInt, Float, Decimal, Boolean, DateTime, Json, enums and String[])`
        )
        continue
      }
      if (!SCALARS.has(ft) && !enums.has(ft)) {
        problems.push(`${at}: unknown type ${ft}`)
        continue
      }
      if (prop.array === true && ft !== "String") {
        problems.push(`${at}: lists of scalars or enums other than String[] (${ft}[]) are not supported (use Json)`)
        continue
      }
      if (prop.array === true && options.dialect !== undefined && options.dialect !== "pg") {
        problems.push(
          `${at}: String[] is supported on PostgreSQL only (Prisma has no scalar lists on ${options.dialect === "mysql" ? "MySQL" : "SQLite"}; use Json)`
        )
        continue
      }
      const mapAttr = attrs.find((a) => a.group === undefined && a.name === "map")
      let column = naming === "prisma" ? prop.name : camelToSnake(prop.name)
      if (mapAttr !== undefined) {
        const mapped = stringLiteral(argsOf(mapAttr).positional[0] ?? argsOf(mapAttr).named.get("name"))
        if (mapped === undefined) problems.push(`${at}: @map: expected a string`)
        else column = mapped
      }
      const key = camelToSnake(prop.name)
      if (snakeToCamel(key) !== prop.name) {
        problems.push(
          `${at}: field names must be camelCase words (lower-case first letter, no runs of capitals: ${JSON.stringify(snakeToCamel(key))} rather than ${JSON.stringify(prop.name)}); keep the column with @map`
        )
        continue
      }
      scalars.set(prop.name, { field: prop, key, column, baseType: ft, attrs })
    }
    scalarsOf.set(name, scalars)
  }

  const isUuidScalar = (s: ScalarInfo): boolean =>
    s.baseType === "String" &&
    s.field.array !== true &&
    s.attrs.some(
      (a) =>
        (a.group === "db" && a.name === "Uuid") ||
        (a.group === undefined &&
          a.name === "default" &&
          isFunc(argsOf(a).positional[0]) &&
          (argsOf(a).positional[0] as Func).name === "uuid")
    )

  // Relations: the scalar field that holds the key, and what it references.
  interface Fk {
    readonly entity: string
    /** The Prisma relation field's name: what `include` calls the referenced record. */
    readonly relation: string
    readonly target: ScalarInfo
    readonly onDelete: OnDeleteRaw
  }
  const relationOf = (f: Field) =>
    (f.attributes ?? []).find((a) => a.type === "attribute" && a.group === undefined && a.name === "relation")
  const relationName = (f: Field): string | undefined => {
    const rel = relationOf(f)
    return rel === undefined ? undefined : stringLiteral(argsOf(rel).positional[0] ?? argsOf(rel).named.get("name"))
  }
  /** A list relation field whose opposite field (same relation name) is a list too. */
  const isImplicitManyToMany = (model: string, f: Field): boolean => {
    const other = models.get(f.fieldType as string)
    const opposite = other?.properties.filter(
      (q): q is Field => q.type === "field" && q.fieldType === model && q !== f && relationName(q) === relationName(f)
    )
    return opposite !== undefined && opposite.length > 0 && opposite.every((q) => q.array === true)
  }
  const fksOf = new Map<string, Map<string, Fk>>()
  for (const [name, model] of models) {
    const fks = new Map<string, Fk>()
    fksOf.set(name, fks)
    const scalars = scalarsOf.get(name)!
    for (const prop of model.properties) {
      if (prop.type !== "field" || typeof prop.fieldType !== "string" || !models.has(prop.fieldType)) continue
      const at = `${file}${lineOf(prop)}: ${name}.${prop.name}`
      const rel = relationOf(prop)
      const { named } = argsOf(rel ?? { args: [] })
      if (!named.has("fields")) {
        // The other side of a relation: no column here — unless both sides are lists, which
        // Prisma stores in a hidden join table the daemon would not have.
        if (prop.array === true && isImplicitManyToMany(name, prop)) {
          problems.push(`${at}: implicit many-to-many relations are not supported (declare the join model)`)
        }
        continue
      }
      const fields = nameList(named.get("fields"))
      const refs = nameList(named.get("references"))
      if (fields === undefined || refs === undefined || fields.length !== refs.length || fields.length === 0) {
        problems.push(`${at}: @relation: expected fields: [...] and references: [...] of the same length`)
        continue
      }
      if (fields.length > 1) {
        problems.push(`${at}: @relation: composite foreign keys (${fields.join(", ")}) are not supported`)
        continue
      }
      const local = scalars.get(fields[0]!)
      const target = scalarsOf.get(prop.fieldType)?.get(refs[0]!)
      if (local === undefined) {
        problems.push(`${at}: @relation: fields: ${name} has no scalar field ${fields[0]!}`)
        continue
      }
      if (target === undefined) {
        problems.push(`${at}: @relation: references: ${prop.fieldType} has no scalar field ${refs[0]!}`)
        continue
      }
      let onDelete: OnDeleteRaw = local.field.optional === true ? "set_null" : "restrict"
      const od = named.get("onDelete")
      if (od !== undefined) {
        const mapped = typeof od === "string" && Object.hasOwn(ON_DELETE, od) ? ON_DELETE[od] : undefined
        if (mapped === undefined) {
          problems.push(`${at}: @relation: onDelete: ${JSON.stringify(od)} is not supported (Cascade, Restrict, SetNull or NoAction)`)
          continue
        }
        onDelete = mapped
      }
      if (fks.has(local.field.name)) {
        problems.push(`${at}: @relation: ${name}.${local.field.name} is already the key of another relation`)
        continue
      }
      fks.set(local.field.name, { entity: prop.fieldType, relation: prop.name, target, onDelete })
    }
  }

  /** uuid when the field is one by itself or holds the key of a uuid field (followed a few hops). */
  const isUuid = (model: string, s: ScalarInfo, hops = 0): boolean => {
    if (isUuidScalar(s)) return true
    const fk = fksOf.get(model)?.get(s.field.name)
    return fk !== undefined && hops < 8 && s.baseType === "String" && isUuid(fk.entity, fk.target, hops + 1)
  }

  const raws: Array<RawEntity> = []
  for (const [name, model] of models) {
    const modelAt = `${file}${lineOf(model)}`
    const scalars = scalarsOf.get(name)!
    const fks = fksOf.get(name)!
    const doc: Record<string, unknown> = { entity: name }
    const givenTable = naming === "prisma" ? name : options.tables?.get(name)
    if (givenTable !== undefined) doc.table = givenTable
    let table = givenTable
    for (const q of model.properties) {
      if (q.type === "attribute" && q.group === undefined && q.name === "map")
        table = stringLiteral(argsOf(q).positional[0] ?? argsOf(q).named.get("name")) ?? table
    }
    /** Prisma's index names, in `prisma` naming (else the loader names indexes). */
    const indexName = (columns: ReadonlyArray<string>, unique: boolean): Record<string, string> =>
      naming === "prisma" && table !== undefined ? { name: `${table}_${columns.join("_")}_${unique ? "key" : "idx"}`.slice(0, 63) } : {}
    const description = descriptions.get(name)
    if (description !== undefined && description !== "") doc.description = description
    const fields: Record<string, Record<string, unknown>> = {}
    const indexes: Array<Record<string, unknown>> = []
    let ok = true

    for (const s of scalars.values()) {
      const at = `${file}${lineOf(s.field)}: ${name}.${s.field.name}`
      const def: Record<string, unknown> = {}
      const attr = (n: string, group?: string) => s.attrs.find((a) => a.name === n && a.group === group)
      const isId = attr("id") !== undefined
      const defaultFunc = ((): Func | undefined => {
        const d = attr("default")
        const v = d === undefined ? undefined : argsOf(d).positional[0]
        return isFunc(v) ? v : undefined
      })()
      let type: string
      switch (s.baseType) {
        case "String":
          if (s.field.array === true) type = "string_list"
          else if (name === "User" && s.field.name === "role" && !isUuid(name, s)) {
            // The daemon's own contract: User.role is what sessions authenticate with and what
            // no_role_escalation and the rank guard compare, and those only act on an enum.
            type = "enum"
            def.values = [...UserRoles]
          } else if (name === "Session" && s.field.name === "userId" && !fks.has("userId")) {
            // Also the daemon's contract: sessions authenticate by joining Session.userId to
            // User.id, which is a uuid; a String there breaks that join on PostgreSQL.
            type = "uuid"
          } else type = isUuid(name, s) ? "uuid" : attr("Text", "db") !== undefined ? "text" : "string"
          break
        case "Int":
          type = "integer"
          break
        case "BigInt":
          type = "bigint"
          break
        case "Float":
          type = "float"
          break
        case "Decimal":
          type = "decimal"
          break
        case "Boolean":
          type = "boolean"
          break
        case "DateTime":
          type = "datetime"
          // Prisma's SQLite connector writes DateTime as integer milliseconds; tables named as
          // Prisma names them are taken to be Prisma's (snake_case tables are the daemon's own).
          if (naming === "prisma") def.sqlite_datetime = "epoch_ms"
          break
        case "Json":
          type = "json"
          break
        default:
          type = "enum"
          def.values = enumValues(enums.get(s.baseType)!, at)
      }
      def.type = type
      if (type === "string" && naming === "prisma" && options.dialect === "mysql") def.max_length = MYSQL_STRING_MAX
      if (isId) {
        def.primary = true
        def.generated = true
        if (s.baseType === "Int") {
          if (defaultFunc?.name === "autoincrement") def.auto_increment = true
          else {
            problems.push(`${at}: an Int @id needs @default(autoincrement()) (the daemon does not take ids from callers)`)
            ok = false
          }
        } else if (s.baseType !== "String") {
          problems.push(`${at}: @id must be a String or an Int @default(autoincrement()) (${s.baseType} ids are not supported)`)
          ok = false
        } else if (type === "string") def.default_fn = defaultFunc?.name === "cuid" ? "cuid" : "uuid"
      } else if (s.field.optional === true || type === "string_list") def.optional = true
      else def.required = true
      // Prisma's client fills an omitted list with nothing: an empty list, not NULL.
      if (type === "string_list" && attr("default") === undefined) def.default = []
      for (const a of s.attrs) {
        const label = attrLabel(a)
        if (a.group === "db") {
          if ((a.name === "VarChar" || a.name === "Char") && type === "string") {
            const n = Number(argsOf(a).positional[0])
            if (!Number.isSafeInteger(n) || n <= 0) problems.push(`${at}: ${label}: expected a positive length`)
            else def.max_length = n
          } else if (a.name === "Decimal" && type === "decimal") {
            const [p, q] = argsOf(a).positional.map(Number)
            if (!Number.isSafeInteger(p) || !Number.isSafeInteger(q)) problems.push(`${at}: ${label}: expected (precision, scale)`)
            else {
              def.precision = p
              def.scale = q
            }
          } else if (a.name === "Text" && type === "string" && naming === "prisma") delete def.max_length
          continue // other native types: the daemon picks column types itself
        }
        if (a.group !== undefined) {
          problems.push(`${at}: ${label} is not supported`)
          continue
        }
        switch (a.name) {
          case "id":
          case "map":
            break
          case "unique":
            if (!isId) {
              def.unique = true
              if (naming === "prisma") indexes.push({ fields: [s.key], unique: true, ...indexName([s.column], true) })
            }
            break
          case "updatedAt":
            if (type !== "datetime") problems.push(`${at}: @updatedAt applies to DateTime fields only`)
            def.auto_update = true
            delete def.required
            delete def.optional
            break
          case "default": {
            const v = argsOf(a).positional[0]
            if (isFunc(v)) {
              const noArgs = (v.params ?? []).length === 0
              if (v.name === "now" && type === "datetime") {
                def.generated = true
                def.immutable = true
                delete def.required
                delete def.optional
              } else if (
                isId &&
                noArgs &&
                (v.name === "uuid" || v.name === "cuid" || (v.name === "autoincrement" && s.baseType === "Int"))
              ) {
                // the id: made by the daemon (uuid, cuid) or by the database (autoincrement)
              } else if (
                !isId &&
                noArgs &&
                (v.name === "uuid" || v.name === "cuid") &&
                (type === "string" || type === "uuid" || type === "text")
              ) {
                // Made by Prisma's client, not the database: the daemon makes it when none is sent.
                def.default_fn = v.name
                delete def.required
              } else {
                problems.push(
                  `${at}: @default(${v.name}(${noArgs ? "" : "..."})) is not supported${v.name === "autoincrement" ? " on a field that is not an Int @id" : ""}`
                )
              }
              break
            }
            const value = defaultValue(v, type, def.values as ReadonlyArray<string> | undefined)
            if (typeof value === "string") problems.push(`${at}: @default: ${value}`)
            else def.default = value.ok
            break
          }
          default:
            problems.push(`${at}: ${label} is not supported`)
        }
      }
      const fk = fks.get(s.field.name)
      if (fk !== undefined) {
        def.foreign_key = { entity: fk.entity, field: fk.target.field.name, on_delete: fk.onDelete, relation: fk.relation }
      }
      if (s.column !== s.key) def.column = s.column
      fields[s.key] = def
    }

    for (const prop of model.properties) {
      if (prop.type !== "attribute") continue
      const at = `${modelAt}: ${name}: @@${prop.group === undefined ? "" : `${prop.group}.`}${prop.name}`
      const { positional } = argsOf(prop)
      switch (prop.group === undefined ? prop.name : "") {
        case "map": {
          const table = stringLiteral(positional[0] ?? argsOf(prop).named.get("name"))
          if (table === undefined) problems.push(`${at}: expected a string`)
          else doc.table = table
          break
        }
        case "index":
        case "unique": {
          const names = nameList(positional[0] ?? argsOf(prop).named.get("fields"))
          if (names === undefined || names.length === 0) {
            problems.push(`${at}: expected a list of fields`)
            break
          }
          const keys: Array<string> = []
          const cols: Array<string> = []
          for (const n of names) {
            const s = scalars.get(n)
            if (s === undefined) problems.push(`${at}: ${name} has no scalar field ${n}`)
            else {
              keys.push(s.key)
              cols.push(s.column)
            }
          }
          const unique = prop.name === "unique"
          if (keys.length === names.length) indexes.push({ fields: keys, ...(unique ? { unique } : {}), ...indexName(cols, unique) })
          break
        }
        case "id":
          problems.push(`${at}: composite ids are not supported (use a String @id and @@unique)`)
          ok = false
          break
        default:
          problems.push(`${at}: not supported`)
      }
    }
    doc.fields = fields
    if (indexes.length > 0) doc.indexes = indexes
    if (ok) raws.push({ file: `${modelAt} (model ${name})`, doc })
  }
  return { raws, problems }
}

/** A default literal for a field of `type`: `{ok: value}` or "why". */
const defaultValue = (v: Value | Func | undefined, type: string, values: ReadonlyArray<string> | undefined): { ok: unknown } | string => {
  if (type === "string_list") {
    const items: ReadonlyArray<unknown> | undefined = Array.isArray(v)
      ? v
      : typeof v === "object" && v !== null && (v as { type?: unknown }).type === "array"
        ? (v as { args: ReadonlyArray<unknown> }).args
        : undefined
    const strings = items?.map(stringLiteral)
    return strings === undefined || strings.some((x) => x === undefined) ? "expected a list of strings" : { ok: strings }
  }
  if (typeof v !== "string") return "expected a literal value"
  const str = stringLiteral(v)
  switch (type) {
    case "string":
    case "text":
    case "uuid":
      return str === undefined ? "expected a string" : { ok: str }
    case "integer": {
      const n = Number(v)
      return /^-?\d+$/.test(v) && Number.isSafeInteger(n) ? { ok: n } : "expected an integer"
    }
    case "bigint": {
      const r = canonicalBigInt(str ?? v)
      return "ok" in r ? { ok: r.ok } : `expected an integer (${r.error})`
    }
    case "decimal": {
      const r = canonicalDecimal(str ?? v, {})
      return "ok" in r ? { ok: r.ok } : "expected a decimal number"
    }
    case "float": {
      const n = Number(v)
      return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v) && Number.isFinite(n) ? { ok: n } : "expected a number"
    }
    case "boolean":
      return v === "true" ? { ok: true } : v === "false" ? { ok: false } : "expected true or false"
    case "enum": {
      const e = str ?? v
      return values?.includes(e) === true ? { ok: e } : `${JSON.stringify(e)} is not one of the enum's values`
    }
    case "datetime": {
      const d = str === undefined ? NaN : Date.parse(str)
      return Number.isNaN(d) ? "expected an ISO date-time string" : { ok: new Date(d).toISOString() }
    }
    case "json":
      if (str === undefined) return "expected a string of JSON"
      try {
        return { ok: JSON.parse(str) as unknown }
      } catch {
        return "not valid JSON"
      }
    default:
      return "not supported"
  }
}

/** Reads a schema.prisma file into raw entity documents. */
export const readPrismaSchema = (file: string, options: PrismaOptions = {}): { raws: Array<RawEntity>; problems: Array<string> } => {
  let source: string
  try {
    source = fs.readFileSync(file, "utf8")
  } catch (e) {
    return { raws: [], problems: [`${file}: cannot read the Prisma schema (${(e as NodeJS.ErrnoException).code ?? "error"})`] }
  }
  return prismaToRaws(source, file, options)
}

/** The registry of a schema.prisma's models; throws EntityLoadError with every problem. */
export const loadPrismaRegistry = (file: string, options: PrismaOptions = {}): EntityRegistryShape => {
  const { raws, problems } = readPrismaSchema(file, options)
  if (problems.length > 0) throw new EntityLoadError(problems)
  const built = buildRegistry(raws, options.dialect === undefined ? {} : { dialect: options.dialect })
  if (built.registry === undefined) throw new EntityLoadError(built.problems)
  return built.registry
}
