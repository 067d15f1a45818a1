/**
 * Reads entity definitions (the YAML format of metabuilder's entities, docs/entities.md) and
 * checks them: every problem is reported with its file and key path, so a broken definition
 * stops the daemon before it listens.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as YAML from "yaml"
import type { Dialect } from "./Ddl.js"
import {
  type AclDefault,
  type DefaultFn,
  DefaultFns,
  type AclOperation,
  camelToSnake,
  type EntityDef,
  type EntityRegistryShape,
  type FieldDef,
  FieldTypes,
  type FieldType,
  isAclOperation,
  type IndexDef,
  type OnDelete,
  snakeToCamel
} from "./Model.js"
import { isRecord } from "../Json.js"
import { isUserRole, UserRoles } from "../services/Principal.js"

const FIELD_KEYS = new Set([
  "type",
  "primary",
  "generated",
  "required",
  "optional",
  "nullable",
  "unique",
  "min_length",
  "max_length",
  "pattern",
  "min",
  "max",
  "values",
  "default",
  "immutable",
  "auto_update",
  "foreign_key",
  "description",
  "sensitive",
  "column",
  "auto_increment",
  "default_fn",
  "precision",
  "scale",
  "sqlite_datetime"
])
const ENTITY_KEYS = new Set([
  "entity",
  "table",
  "version",
  "description",
  "fields",
  "indexes",
  "acl",
  "security",
  "ttl",
  "owner_field",
  "client"
])
const IDENT = /^[a-z][a-z0-9_]{0,62}$/
/**
 * Table and column names given explicitly (`table:`, a field's `column:`, Prisma's names): also
 * upper-case letters, as in the tables Prisma makes ("Customer", "createdAt"). Always quoted in SQL.
 */
const NAMED_IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const ENTITY_NAME = /^[A-Z][A-Za-z0-9]{0,62}$/
/** Strings that take part in an index need a bounded length on MySQL; this is their default. */
const INDEXED_STRING_MAX = 255
const INT32 = { min: -2147483648, max: 2147483647 }
/** DECIMAL's precision and scale when a definition names none: Prisma's DECIMAL(65,30). */
const DECIMAL_DEFAULT = { precision: 65, scale: 30 }
/** The digits SQLite keeps of a DECIMAL that is not an integer (it stores a REAL). */
const SQLITE_DECIMAL_DIGITS = 15
const STRING_TYPES: ReadonlySet<FieldType> = new Set(["uuid", "string", "text"])

interface RawEntity {
  readonly file: string
  readonly doc: Record<string, unknown>
}

export class EntityLoadError extends Error {
  constructor(readonly problems: ReadonlyArray<string>) {
    super(problems.join("\n"))
    this.name = "EntityLoadError"
  }
}

/** The table of an entity whose definition names none: the snake_case plural of its name. */
export const pluralTable = (entity: string): string => {
  const snake = camelToSnake(entity)
  if (/[^aeiou]y$/.test(snake)) return snake.slice(0, -1) + "ies"
  if (/(s|x|z|ch|sh)$/.test(snake)) return snake + "es"
  return snake + "s"
}

/** Keeps generated constraint names within PostgreSQL's 63 and MySQL's 64 characters. */
const constraintName = (name: string): string => {
  if (name.length <= 63) return name
  let h = 0
  for (const c of name) h = (Math.imul(h, 31) + c.charCodeAt(0)) | 0
  return `${name.slice(0, 54)}_${(h >>> 0).toString(16).padStart(8, "0")}`
}

/** Reads every `*.yaml` / `*.yml` file under `dir` (recursively). */
export const readEntityFiles = (dir: string): { raws: Array<RawEntity>; problems: Array<string> } => {
  const problems: Array<string> = []
  const raws: Array<RawEntity> = []
  const walk = (d: string) => {
    let entries: Array<fs.Dirent>
    try {
      entries = fs.readdirSync(d, { withFileTypes: true })
    } catch (e) {
      problems.push(`${d}: cannot read the entities folder (${(e as NodeJS.ErrnoException).code ?? "error"})`)
      return
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(d, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (/\.ya?ml$/.test(entry.name)) {
        const parsed = YAML.parseDocument(fs.readFileSync(full, "utf8"))
        if (parsed.errors.length > 0) {
          for (const e of parsed.errors) problems.push(`${full}: line ${e.linePos?.[0].line ?? "?"}: YAML syntax error: ${e.code}`)
          continue
        }
        const doc: unknown = parsed.toJS()
        if (!isRecord(doc)) problems.push(`${full}: expected a mapping with entity, fields, ...`)
        else raws.push({ file: full, doc })
      }
    }
  }
  walk(dir)
  if (raws.length === 0 && problems.length === 0) problems.push(`${dir}: no entity definitions (*.yaml) found`)
  return { raws, problems }
}

const parseAcl = (raw: unknown, at: string, problems: Array<string>): Partial<Record<AclOperation, AclDefault>> => {
  const out: Partial<Record<AclOperation, AclDefault>> = {}
  if (raw === undefined) return out
  if (!isRecord(raw)) {
    problems.push(`${at}: expected a mapping of operations (create, read, update, delete)`)
    return out
  }
  for (const [op, rule] of Object.entries(raw)) {
    if (!isAclOperation(op)) {
      problems.push(`${at}.${op}: unknown operation (expected create, read, update or delete)`)
      continue
    }
    if (!isRecord(rule)) {
      problems.push(`${at}.${op}: expected a mapping such as {role: [admin]} or {public: true}`)
      continue
    }
    const roles: Array<string> = []
    let pub = false,
      system = false,
      self = false
    for (const [k, v] of Object.entries(rule)) {
      if (k === "role") {
        const list = Array.isArray(v) ? v : [v]
        for (const r of list) {
          if (typeof r === "string" && isUserRole(r)) roles.push(r)
          else problems.push(`${at}.${op}.role: unknown role ${JSON.stringify(r)} (expected one of ${UserRoles.join(", ")})`)
        }
      } else if (v !== true) {
        problems.push(`${at}.${op}.${k}: expected true`)
      } else if (k === "public") pub = true
      else if (k === "system") system = true
      else if (k === "self") self = true
      else if (isUserRole(k)) roles.push(k)
      else problems.push(`${at}.${op}.${k}: unknown rule (expected public, system, self, role or a role name)`)
    }
    out[op] = { public: pub, system, self, roles }
  }
  return out
}

interface PendingField extends Omit<FieldDef, "foreignKey"> {
  /** The field's key in the definition (snake_case), which indexes and owner_field name. */
  readonly key: string
  readonly fkRaw?: { entity: string; field: string; onDelete: OnDelete; relation?: string }
}

const parseField = (
  snake: string,
  raw: unknown,
  at: string,
  problems: Array<string>,
  neverExpose: ReadonlySet<string>
): PendingField | undefined => {
  if (!IDENT.test(snake)) {
    problems.push(`${at}: field names must be snake_case identifiers (a-z, 0-9, _), at most 63 characters`)
    return undefined
  }
  if (!isRecord(raw)) {
    problems.push(`${at}: expected a mapping with at least a type`)
    return undefined
  }
  for (const k of Object.keys(raw)) if (!FIELD_KEYS.has(k)) problems.push(`${at}.${k}: unknown key`)
  const type = raw.type
  if (typeof type !== "string" || !(FieldTypes as ReadonlyArray<string>).includes(type)) {
    problems.push(`${at}.type: expected one of ${FieldTypes.join(", ")}`)
    return undefined
  }
  const t = type as FieldType
  const bool = (k: string): boolean => {
    const v = raw[k]
    if (v === undefined) return false
    if (typeof v !== "boolean") problems.push(`${at}.${k}: expected true or false`)
    return v === true
  }
  const int = (k: string): number | undefined => {
    const v = raw[k]
    if (v === undefined) return undefined
    if (typeof v !== "number" || !Number.isSafeInteger(v)) {
      problems.push(`${at}.${k}: expected an integer`)
      return undefined
    }
    return v
  }
  const primary = bool("primary")
  const generated = bool("generated")
  const required = bool("required")
  const optional = bool("optional") || bool("nullable")
  if (required && optional) problems.push(`${at}: a field cannot be both required and optional`)
  const autoUpdate = bool("auto_update")
  const minLength = int("min_length")
  let maxLength = int("max_length")
  let min = int("min")
  let max = int("max")
  let pattern: RegExp | undefined
  if (raw.pattern !== undefined) {
    if (typeof raw.pattern !== "string") problems.push(`${at}.pattern: expected a regular expression string`)
    else {
      try {
        pattern = new RegExp(raw.pattern, "u")
      } catch {
        problems.push(`${at}.pattern: not a valid regular expression`)
      }
    }
  }
  let values: Array<string> | undefined
  if (t === "enum") {
    if (!Array.isArray(raw.values) || raw.values.length === 0 || !raw.values.every((v) => typeof v === "string")) {
      problems.push(`${at}.values: expected a non-empty list of strings for an enum`)
    } else values = raw.values as Array<string>
  } else if (raw.values !== undefined) problems.push(`${at}.values: only enum fields take values`)
  if (t === "integer") {
    min = min ?? INT32.min
    max = max ?? INT32.max
  } else if (raw.min !== undefined || raw.max !== undefined) problems.push(`${at}: min/max apply to integer fields only`)
  if (t === "email") maxLength = maxLength ?? 255
  if ((minLength !== undefined || maxLength !== undefined || pattern !== undefined) && !["string", "text", "email"].includes(t)) {
    problems.push(`${at}: min_length, max_length and pattern apply to string, text and email fields only`)
  }
  if (t === "enum") maxLength = Math.max(...(values ?? [""]).map((v) => [...v].length), 1)
  if (minLength !== undefined && maxLength !== undefined && minLength > maxLength) problems.push(`${at}: min_length exceeds max_length`)
  if (min !== undefined && max !== undefined && min > max) problems.push(`${at}: min exceeds max`)

  const autoIncrement = bool("auto_increment")
  if (autoIncrement && !(primary && t === "integer")) problems.push(`${at}.auto_increment: applies to an integer primary key only`)
  let defaultFn: DefaultFn | undefined
  if (raw.default_fn !== undefined) {
    if (typeof raw.default_fn !== "string" || !(DefaultFns as ReadonlyArray<string>).includes(raw.default_fn)) {
      problems.push(`${at}.default_fn: expected one of ${DefaultFns.join(", ")}`)
    } else if (!STRING_TYPES.has(t) || (t === "uuid" && raw.default_fn !== "uuid")) {
      problems.push(
        `${at}.default_fn: ${raw.default_fn} makes ${raw.default_fn === "uuid" ? "uuid, string or text" : "string or text"} values, not ${t}`
      )
    } else if (raw.default !== undefined) problems.push(`${at}: default and default_fn cannot both be given`)
    else defaultFn = raw.default_fn as DefaultFn
  }
  let precision: number | undefined
  let scale: number | undefined
  if (t === "decimal") {
    precision = int("precision") ?? DECIMAL_DEFAULT.precision
    scale = int("scale") ?? Math.min(DECIMAL_DEFAULT.scale, precision)
    if (precision < 1 || precision > 65) problems.push(`${at}.precision: expected 1 to 65 digits`)
    if (scale < 0 || scale > 30 || scale > precision) problems.push(`${at}.scale: expected 0 to 30 digits, at most the precision`)
  } else if (raw.precision !== undefined || raw.scale !== undefined)
    problems.push(`${at}: precision and scale apply to decimal fields only`)
  let epochMillis = false
  if (raw.sqlite_datetime !== undefined) {
    if (t !== "datetime") problems.push(`${at}.sqlite_datetime: applies to datetime fields only`)
    else if (raw.sqlite_datetime !== "iso" && raw.sqlite_datetime !== "epoch_ms")
      problems.push(`${at}.sqlite_datetime: expected iso or epoch_ms`)
    else epochMillis = raw.sqlite_datetime === "epoch_ms"
  }

  let fkRaw: PendingField["fkRaw"]
  if (raw.foreign_key !== undefined) {
    const fk = raw.foreign_key
    const onDelete = isRecord(fk) ? (fk.on_delete ?? "no_action") : undefined
    const relation = isRecord(fk) ? fk.relation : undefined
    if (
      !isRecord(fk) ||
      typeof fk.entity !== "string" ||
      typeof fk.field !== "string" ||
      !["cascade", "restrict", "set_null", "no_action"].includes(String(onDelete)) ||
      (relation !== undefined && (typeof relation !== "string" || !/^[a-z][A-Za-z0-9]{0,62}$/.test(relation)))
    ) {
      problems.push(
        `${at}.foreign_key: expected {entity, field, on_delete?: cascade|restrict|set_null|no_action, relation?: camelCaseName}`
      )
    } else
      fkRaw = { entity: fk.entity, field: fk.field, onDelete: onDelete as OnDelete, ...(typeof relation === "string" ? { relation } : {}) }
  }
  let column = snake
  if (raw.column !== undefined) {
    if (typeof raw.column !== "string" || !NAMED_IDENT.test(raw.column)) {
      problems.push(`${at}.column: expected an identifier (letters, digits, _), at most 63 characters`)
    } else column = raw.column
  }
  const nullable = !(required || primary || generated || autoUpdate || autoIncrement)
  if (fkRaw?.onDelete === "set_null" && !nullable) problems.push(`${at}.foreign_key.on_delete: set_null needs an optional field`)
  const field: PendingField = {
    key: snake,
    name: snakeToCamel(snake),
    column,
    type: t,
    primary,
    generated: generated || autoIncrement,
    ...(autoIncrement ? { autoIncrement: true as const } : {}),
    ...(defaultFn === undefined ? {} : { defaultFn }),
    ...(precision === undefined ? {} : { precision }),
    ...(scale === undefined ? {} : { scale }),
    ...(epochMillis ? { epochMillis: true as const } : {}),
    immutable: bool("immutable") || primary,
    autoUpdate,
    required: required && raw.default === undefined && defaultFn === undefined && !generated && !autoIncrement,
    nullable,
    unique: bool("unique") || primary,
    sensitive: bool("sensitive"),
    neverExpose: neverExpose.has(snake),
    ...(minLength === undefined ? {} : { minLength }),
    ...(maxLength === undefined ? {} : { maxLength }),
    ...(pattern === undefined ? {} : { pattern }),
    ...(min === undefined ? {} : { min }),
    ...(max === undefined ? {} : { max }),
    ...(values === undefined ? {} : { values }),
    ...(raw.default === undefined ? {} : { default: raw.default }),
    ...(fkRaw === undefined ? {} : { fkRaw })
  }
  if (primary && !(t === "uuid" || (t === "integer" && autoIncrement) || (t === "string" && defaultFn !== undefined))) {
    problems.push(
      `${at}.type: a primary key is a uuid (the daemon makes UUID v4 ids), an integer with auto_increment (the database numbers the rows) or a string with default_fn (uuid or cuid)`
    )
  }
  return field
}

export interface RegistryOptions {
  /**
   * The dialect the entities will be served on, when known: types a dialect cannot store are
   * refused (lists of strings outside PostgreSQL) and SQLite's DECIMAL precision is enforced.
   */
  readonly dialect?: Dialect
}

/** Builds the registry from already-read documents; returns every problem found. */
export const buildRegistry = (
  raws: ReadonlyArray<RawEntity>,
  options: RegistryOptions = {}
): { registry?: EntityRegistryShape; problems: Array<string> } => {
  const problems: Array<string> = []
  interface Pending {
    readonly file: string
    readonly name: string
    readonly table: string
    readonly description: string
    readonly fields: Array<PendingField>
    readonly indexesRaw: unknown
    readonly acl: Partial<Record<AclOperation, AclDefault>>
    readonly ownerRaw: unknown
    readonly accessor?: string
  }
  const pending: Array<Pending> = []
  for (const { file, doc } of raws) {
    for (const k of Object.keys(doc)) if (!ENTITY_KEYS.has(k)) problems.push(`${file}: ${k}: unknown key`)
    const name = doc.entity
    if (typeof name !== "string" || !ENTITY_NAME.test(name)) {
      problems.push(`${file}: entity: expected a PascalCase entity name (A-Z, a-z, 0-9)`)
      continue
    }
    const table = doc.table === undefined ? pluralTable(name) : doc.table
    if (typeof table !== "string" || !NAMED_IDENT.test(table)) {
      problems.push(`${file}: table: expected an identifier (letters, digits, _), at most 63 characters`)
      continue
    }
    const security = isRecord(doc.security) ? doc.security : {}
    const neverRaw = security.never_expose ?? []
    const never = new Set(Array.isArray(neverRaw) ? neverRaw.filter((s): s is string => typeof s === "string") : [])
    if (!isRecord(doc.fields)) {
      problems.push(`${file}: fields: expected a mapping of field definitions`)
      continue
    }
    const fields: Array<PendingField> = []
    for (const [snake, rawField] of Object.entries(doc.fields)) {
      const f = parseField(snake, rawField, `${file}: fields.${snake}`, problems, never)
      if (f === undefined) continue
      if (f.type === "string_list" && options.dialect !== undefined && options.dialect !== "pg") {
        problems.push(
          `${file}: fields.${snake}: lists of strings (string_list, Prisma's String[]) are stored on PostgreSQL only, not on ${options.dialect === "mysql" ? "MySQL/MariaDB" : "SQLite"}`
        )
        continue
      }
      fields.push(f.type === "decimal" && options.dialect === "sqlite" ? { ...f, significantDigits: SQLITE_DECIMAL_DIGITS } : f)
    }
    for (const n of never) if (!fields.some((f) => f.key === n)) problems.push(`${file}: security.never_expose: no field ${n}`)
    // `client: {accessor: name}`: the generated client's accessor for this entity (default: lower-camel plural).
    const clientRaw = doc.client
    const accessor = isRecord(clientRaw) ? clientRaw.accessor : undefined
    if (
      clientRaw !== undefined &&
      (!isRecord(clientRaw) ||
        Object.keys(clientRaw).some((k) => k !== "accessor") ||
        typeof accessor !== "string" ||
        !/^[a-z][A-Za-z0-9]{0,62}$/.test(accessor))
    ) {
      problems.push(`${file}: client: expected {accessor: camelCaseName}`)
    }
    const primaries = fields.filter((f) => f.primary)
    if (primaries.length !== 1) problems.push(`${file}: fields: expected exactly one primary field (found ${primaries.length})`)
    pending.push({
      file,
      name,
      table,
      description: typeof doc.description === "string" ? doc.description : "",
      fields,
      indexesRaw: doc.indexes,
      acl: parseAcl(doc.acl, `${file}: acl`, problems),
      ownerRaw: doc.owner_field,
      ...(typeof accessor === "string" ? { accessor } : {})
    })
  }
  const byName = new Map(pending.map((p) => [p.name, p]))
  for (const p of pending) {
    if (pending.filter((q) => q.name === p.name).length > 1) problems.push(`${p.file}: entity: ${p.name} is defined twice`)
    if (pending.filter((q) => q.table === p.table).length > 1) problems.push(`${p.file}: table: ${p.table} is used twice`)
  }

  const entities = new Map<string, EntityDef>()
  for (const p of pending) {
    const keyOf = new Map<string, string>()
    const fields: Array<FieldDef> = p.fields.map(({ fkRaw, key, ...f }) => {
      keyOf.set(f.name, key)
      if (fkRaw === undefined) return f
      const target = byName.get(fkRaw.entity)
      const targetField = target?.fields.find((tf) => tf.key === fkRaw.field || tf.name === fkRaw.field)
      if (target === undefined) problems.push(`${p.file}: fields.${key}.foreign_key.entity: no entity ${fkRaw.entity}`)
      else if (targetField === undefined)
        problems.push(`${p.file}: fields.${key}.foreign_key.field: ${fkRaw.entity} has no field ${fkRaw.field}`)
      else if (!targetField.unique)
        problems.push(`${p.file}: fields.${key}.foreign_key.field: ${fkRaw.entity}.${fkRaw.field} must be primary or unique`)
      else if (targetField.type !== f.type && !(f.type === "string" && targetField.type === "string")) {
        problems.push(
          `${p.file}: fields.${key}.foreign_key: type ${f.type} does not match ${fkRaw.entity}.${fkRaw.field} (${targetField.type})`
        )
      }
      // The relation's default name: the field without its Id suffix (pageId → page), else <field>Ref.
      const relation = fkRaw.relation ?? (/[a-z0-9]Id$/.test(f.name) ? f.name.slice(0, -2) : `${f.name}Ref`)
      return targetField === undefined
        ? f
        : { ...f, foreignKey: { entity: fkRaw.entity, field: targetField.name, onDelete: fkRaw.onDelete, relation } }
    })
    const relationNames = fields.flatMap((f) => (f.foreignKey === undefined ? [] : [f.foreignKey.relation]))
    relationNames.forEach((r, i) => {
      if (relationNames.indexOf(r) !== i) problems.push(`${p.file}: foreign_key.relation: two relations are named ${r}`)
      if (fields.some((f) => f.name === r))
        problems.push(`${p.file}: foreign_key.relation: ${r} is also a field name (set foreign_key.relation)`)
    })
    const fieldBySnake = new Map(fields.map((f) => [keyOf.get(f.name)!, f]))
    const indexes: Array<IndexDef> = []
    const addIndex = (cols: ReadonlyArray<FieldDef>, unique: boolean, given?: string) => {
      const key = cols.map((c) => c.column).join(",")
      const existing = indexes.findIndex((i) => i.fields.map((c) => c.column).join(",") === key)
      const name = given ?? constraintName(`${unique ? "uq" : "idx"}_${p.table}_${cols.map((c) => keyOf.get(c.name)!).join("_")}`)
      if (existing >= 0) {
        if ((unique && !indexes[existing]!.unique) || (given !== undefined && unique === indexes[existing]!.unique))
          indexes[existing] = { name, fields: cols, unique }
        return
      }
      indexes.push({ name, fields: cols, unique })
    }
    for (const f of fields) if (f.unique && !f.primary) addIndex([f], true)
    if (p.indexesRaw !== undefined) {
      if (!Array.isArray(p.indexesRaw)) problems.push(`${p.file}: indexes: expected a list of {fields: [...], unique?}`)
      else
        p.indexesRaw.forEach((ix: unknown, i) => {
          if (
            !isRecord(ix) ||
            !Array.isArray(ix.fields) ||
            ix.fields.length === 0 ||
            (ix.name !== undefined && (typeof ix.name !== "string" || !NAMED_IDENT.test(ix.name)))
          ) {
            problems.push(`${p.file}: indexes[${i}]: expected {fields: [...], unique?, name?}`)
            return
          }
          const cols = ix.fields.map((c) => (typeof c === "string" ? fieldBySnake.get(c) : undefined))
          if (cols.some((c) => c === undefined)) {
            problems.push(`${p.file}: indexes[${i}].fields: names a field the entity does not have`)
            return
          }
          addIndex(cols as Array<FieldDef>, ix.unique === true, typeof ix.name === "string" ? ix.name : undefined)
        })
    }
    // Strings in an index get a bounded length so that MySQL can index them; the bound is
    // enforced on every dialect so that behaviour stays identical.
    const indexed = new Set(indexes.flatMap((i) => i.fields.map((f) => f.column)))
    for (const f of fields) if (f.foreignKey !== undefined || f.primary) indexed.add(f.column)
    const bounded = fields.map((f) =>
      f.type === "string" && f.maxLength === undefined && indexed.has(f.column) ? { ...f, maxLength: INDEXED_STRING_MAX } : f
    )
    const finalIndexes = indexes.map((ix) => ({ ...ix, fields: ix.fields.map((f) => bounded.find((b) => b.column === f.column)!) }))
    const primaryKey = bounded.find((f) => f.primary)
    if (primaryKey === undefined) continue
    let ownerField: FieldDef | undefined
    if (p.ownerRaw !== undefined) {
      ownerField = typeof p.ownerRaw === "string" ? bounded.find((f) => keyOf.get(f.name) === p.ownerRaw) : undefined
      if (ownerField === undefined) problems.push(`${p.file}: owner_field: expected the name of one of the entity's fields`)
    } else if (p.name === "User") ownerField = primaryKey
    else ownerField = bounded.find((f) => ["userId", "createdBy", "ownerId"].includes(f.name) && f.foreignKey?.entity === "User")
    const acl = p.acl
    if (Object.values(acl).some((r) => r.self) && ownerField === undefined) {
      problems.push(`${p.file}: acl: a self rule needs an owner field (owner_field: <field>)`)
    }
    const entity: EntityDef = {
      name: p.name,
      table: p.table,
      description: p.description,
      fields: bounded,
      byName: new Map(bounded.map((f) => [f.name, f])),
      primaryKey,
      indexes: finalIndexes,
      acl,
      exposed: bounded.filter((f) => !f.neverExpose),
      ...(p.accessor === undefined ? {} : { accessor: p.accessor }),
      ...(ownerField === undefined ? {} : { ownerField }),
      ...(bounded.find((f) => f.name === "createdAt") === undefined ? {} : { orderField: bounded.find((f) => f.name === "createdAt")! })
    }
    entities.set(p.name, entity)
  }
  if (problems.length > 0) return { problems }

  // Referenced tables first; a self reference is no dependency.
  const order: Array<EntityDef> = []
  const state = new Map<string, "visiting" | "done">()
  const visit = (e: EntityDef, trail: Array<string>) => {
    if (state.get(e.name) === "done") return
    if (state.get(e.name) === "visiting") {
      problems.push(`foreign keys form a cycle: ${[...trail, e.name].join(" -> ")}`)
      return
    }
    state.set(e.name, "visiting")
    for (const f of e.fields) {
      const target = f.foreignKey === undefined ? undefined : entities.get(f.foreignKey.entity)
      if (target !== undefined && target.name !== e.name) visit(target, [...trail, e.name])
    }
    state.set(e.name, "done")
    order.push(e)
  }
  for (const e of [...entities.values()].sort((a, b) => a.name.localeCompare(b.name))) visit(e, [])
  if (problems.length > 0) return { problems }
  return { registry: { entities, creationOrder: order }, problems }
}

/**
 * The table each entity of a YAML folder is stored in (its `table:`, else `pluralTable`), read
 * without building the registry: what a schema.prisma in `snake_case` naming takes for its models.
 */
export const yamlTables = (dir: string): Map<string, string> => {
  const out = new Map<string, string>()
  for (const { doc } of readEntityFiles(dir).raws) {
    if (typeof doc.entity !== "string") continue
    out.set(doc.entity, typeof doc.table === "string" ? doc.table : pluralTable(doc.entity))
  }
  return out
}

export const loadRegistry = (dir: string, options: RegistryOptions = {}): EntityRegistryShape => {
  const { raws, problems } = readEntityFiles(dir)
  if (problems.length > 0) throw new EntityLoadError(problems)
  const built = buildRegistry(raws, options)
  if (built.registry === undefined) throw new EntityLoadError(built.problems)
  return built.registry
}
