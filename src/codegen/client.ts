/**
 * The typed client module of a set of entities (`dbal-daemon generate`): records, create and
 * update inputs, filters per field type, unique lookups, `include` relations, one accessor per
 * entity, and `createClient(config)`. Pure: the registry in, TypeScript text out (the same
 * registry always gives the same text, so a committed module can be compared with a fresh one).
 */
import type { EntityDef, EntityRegistryShape, FieldDef } from "../entity/Model.js"
import { reservedAccessors } from "../client/options.js"

export interface GenerateOptions {
  /** The module the generated code imports the client from (default "dbal-daemon/client"). */
  readonly importFrom?: string
  /** Where the entities came from, for the header (e.g. "config/entities"). */
  readonly source: string
}

// The client checks the same names at run time (ClientBase); here they are refused at generation.
const RESERVED = new Set(reservedAccessors)

const pascal = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)
const lowerFirst = (s: string): string => s.charAt(0).toLowerCase() + s.slice(1)

/** The lower-camel plural of an entity name: Invoice → invoices, ComponentHierarchy → componentHierarchies. */
export const defaultAccessor = (entity: string): string => {
  const base = lowerFirst(entity)
  if (/[^aeiouAEIOU]y$/.test(base)) return `${base.slice(0, -1)}ies`
  if (/(s|x|z|ch|sh)$/.test(base)) return `${base}es`
  return `${base}s`
}

export const accessorOf = (e: EntityDef): string => e.accessor ?? defaultAccessor(e.name)

const str = (s: string): string => JSON.stringify(s)
/** A property name as written in a type (quoted when it is not an identifier). */
const prop = (s: string): string => (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(s) ? s : str(s))

const enumName = (e: EntityDef, f: FieldDef): string => `${e.name}${pascal(f.name)}`

/** The TypeScript type of a field's value (without null). */
const valueType = (e: EntityDef, f: FieldDef): string => {
  switch (f.type) {
    case "uuid":
    case "string":
    case "text":
    case "email":
      return "string"
    case "enum":
      return enumName(e, f)
    case "integer":
    case "float":
      return "number"
    // Exact numbers beyond a double's 53 bits travel as strings.
    case "decimal":
    case "bigint":
      return "string"
    case "boolean":
      return "boolean"
    case "datetime":
      return "dbal.DateTime"
    case "string_list":
      return "ReadonlyArray<string>"
    case "json":
      return "dbal.JsonValue"
  }
}

const filterType = (e: EntityDef, f: FieldDef): string => {
  switch (f.type) {
    case "uuid":
      return "dbal.UuidFilter"
    case "string":
    case "text":
    case "email":
      return "dbal.StringFilter"
    case "enum":
      return `dbal.EnumFilter<${enumName(e, f)}>`
    case "integer":
    case "float":
      return "dbal.NumberFilter"
    case "decimal":
    case "bigint":
      return "dbal.ExactNumberFilter"
    case "boolean":
      return "dbal.BooleanFilter"
    case "datetime":
      return "dbal.DateTimeFilter"
    case "string_list":
      return "dbal.StringListFilter"
    case "json":
      return "dbal.JsonFilter"
  }
}

const orderable = (f: FieldDef): boolean => f.type !== "json" && f.type !== "string_list"

const nullable = (f: FieldDef, type: string): string => (f.nullable ? `${type} | null` : type)

/** Set by the daemon: never sent by a caller (ids, createdAt, updatedAt). */
const daemonSet = (f: FieldDef): boolean => f.generated || f.autoUpdate

const doc = (lines: ReadonlyArray<string>, indent = ""): Array<string> =>
  lines.length === 0
    ? []
    : lines.length === 1
      ? [`${indent}/** ${lines[0]} */`]
      : [`${indent}/**`, ...lines.map((l) => `${indent} * ${l}`), `${indent} */`]

const fieldNotes = (f: FieldDef): Array<string> => {
  const notes: Array<string> = []
  if (f.min !== undefined && f.max !== undefined && f.type === "integer" && !(f.min === -2147483648 && f.max === 2147483647))
    notes.push(`${f.min} … ${f.max}.`)
  if (f.minLength !== undefined || f.maxLength !== undefined) {
    if (f.type !== "enum") {
      notes.push(
        f.minLength === undefined
          ? `At most ${f.maxLength} characters.`
          : f.maxLength === undefined
            ? `At least ${f.minLength} characters.`
            : `${f.minLength} … ${f.maxLength} characters.`
      )
    }
  }
  if (f.default !== undefined && !f.generated) notes.push(`Default: ${JSON.stringify(f.default)}.`)
  return notes
}

const entityCode = (e: EntityDef, registry: EntityRegistryShape): Array<string> => {
  const out: Array<string> = []
  const exposed = e.fields.filter((f) => !f.neverExpose)
  const hidden = e.fields.filter((f) => f.neverExpose)
  out.push(`// ${e.name} (table ${e.table})`, "")
  for (const f of e.fields) {
    if (f.type === "enum") out.push(`export type ${enumName(e, f)} = ${(f.values ?? []).map(str).join(" | ")}`)
  }
  if (e.fields.some((f) => f.type === "enum")) out.push("")

  out.push(
    ...doc([
      ...(e.description === "" ? [] : [e.description]),
      ...(hidden.length === 0
        ? []
        : [`${hidden.map((f) => `\`${f.name}\``).join(", ")} ${hidden.length === 1 ? "is" : "are"} never returned (never_expose).`])
    ])
  )
  out.push(`export interface ${e.name} {`)
  for (const f of exposed) {
    out.push(
      ...doc(
        fieldNotes(f).filter((n) => !n.startsWith("Default")),
        "  "
      )
    )
    out.push(`  readonly ${prop(f.name)}: ${nullable(f, valueType(e, f))}`)
  }
  out.push("}", "")

  const creatable = e.fields.filter((f) => !daemonSet(f))
  out.push(...doc(["What create accepts: the daemon sets the generated fields; fields with a default may be left out."]))
  out.push(`export interface ${e.name}Create {`)
  for (const f of creatable) {
    const notes = fieldNotes(f)
    out.push(...doc(notes, "  "))
    out.push(`  readonly ${prop(f.name)}${f.required ? "" : "?"}: ${nullable(f, valueType(e, f))}`)
  }
  out.push("}", "")

  const updatable = creatable.filter((f) => !f.immutable && !f.primary)
  out.push(...doc(["What update accepts: any of the fields that may change."]))
  out.push(`export interface ${e.name}Update {`)
  for (const f of updatable) out.push(`  readonly ${prop(f.name)}?: ${nullable(f, valueType(e, f))}`)
  out.push("}", "")

  out.push(...doc([`A filter on ${e.name}: a value means equality, an object holds operators.`]))
  out.push(`export interface ${e.name}Where extends dbal.WhereCombinators<${e.name}Where> {`)
  for (const f of exposed) out.push(`  readonly ${prop(f.name)}?: ${filterType(e, f)}`)
  out.push("}", "")

  const relations = exposed.flatMap((f) => {
    const fk = f.foreignKey
    if (fk === undefined || !registry.entities.has(fk.entity)) return []
    return [`readonly ${prop(fk.relation)}: ${fk.entity}`]
  })
  out.push(`export interface ${e.name}Relations {${relations.length === 0 ? "}" : ""}`)
  if (relations.length > 0) out.push(...relations.map((r) => `  ${r}`), "}")
  out.push("")

  const union = (fs: ReadonlyArray<FieldDef>) => (fs.length === 0 ? "never" : fs.map((f) => str(f.name)).join(" | "))
  const unique = exposed.filter((f) => f.unique && !f.primary)
  const pk = e.primaryKey
  out.push(`export interface ${e.name}Types {`)
  out.push(`  readonly record: ${e.name}`)
  out.push(`  readonly create: ${e.name}Create`)
  out.push(`  readonly update: ${e.name}Update`)
  out.push(`  readonly where: ${e.name}Where`)
  out.push(`  readonly sortable: ${union(exposed.filter(orderable))}`)
  out.push(`  readonly unique: ${union(unique)}`)
  out.push(`  readonly id: ${valueType(e, pk) === "number" ? "number" : "string"}`)
  out.push(`  readonly relations: ${e.name}Relations`)
  out.push("}", "")
  return out
}

/** The module's text, or the problems (accessor names that clash) when there are any. */
export const generateClientModule = (
  registry: EntityRegistryShape,
  options: GenerateOptions
): { code: string } | { problems: ReadonlyArray<string> } => {
  const entities = [...registry.entities.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const problems: Array<string> = []
  const seen = new Map<string, string>()
  for (const e of entities) {
    const a = accessorOf(e)
    if (RESERVED.has(a)) problems.push(`${e.name}: accessor ${a} is a member of the client: set client.accessor to another name`)
    const other = seen.get(a)
    if (other !== undefined) problems.push(`${e.name}: accessor ${a} is also ${other}'s: set client.accessor on one of them`)
    seen.set(a, e.name)
  }
  if (problems.length > 0) return { problems }
  const from = options.importFrom ?? "dbal-daemon/client"
  const lines: Array<string> = [
    `// Generated by \`dbal-daemon generate\` from ${options.source}. Do not edit: change the entity`,
    "// definitions and generate again.",
    "",
    `import * as dbal from ${str(from)}`,
    "",
    "export type { DBALClientConfig } from " + str(from),
    ""
  ]
  for (const e of entities) lines.push(...entityCode(e, registry))
  lines.push("/** Entity name → its types. */", "export interface Entities {")
  for (const e of entities) lines.push(`  readonly ${e.name}: ${e.name}Types`)
  lines.push("}", "")
  lines.push("/** The client's accessor of each entity. */", "export const accessors = {")
  entities.forEach((e, i) => lines.push(`  ${prop(accessorOf(e))}: ${str(e.name)}${i === entities.length - 1 ? "" : ","}`))
  lines.push("} as const", "")
  lines.push("export type Accessors = typeof accessors")
  lines.push("export type Client = dbal.Client<Entities, Accessors>", "")
  lines.push(
    ...doc([
      "A client of these entities: `development` mode runs the daemon in this process, `production` mode talks",
      "to a daemon over WebSocket. `client.entity(name)` reaches any other entity, untyped."
    ])
  )
  lines.push(
    "export const createClient = (config: dbal.DBALClientConfig): Client => dbal.makeClient<Entities, Accessors>(config, accessors)",
    ""
  )
  return { code: lines.join("\n") }
}
