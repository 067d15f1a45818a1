/**
 * Writes docs/configuration.md from the configuration Schema (src/Config.ts): every key with its
 * type, its default (what decoding an empty file gives) and the `description` annotation of its
 * field. The prose before the reference is scripts/config-docs-intro.md.
 *
 *   npm run docs:config            rewrite docs/configuration.md
 *   npm run docs:config -- --check exit 1 when the committed file differs (test/unit/config-docs.test.ts does the same)
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Option, Redacted, Schema, SchemaAST as AST } from "effect"
import { ConfigFile } from "../src/Config.js"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const configDocsFile = path.join(root, "docs", "configuration.md")
const introFile = path.join(root, "scripts", "config-docs-intro.md")

/** A key of the configuration: its dotted path, its field (annotations, optionality), its schema. */
interface Key {
  readonly path: string
  readonly field: AST.PropertySignature
  readonly type: AST.AST
}

const unwrapSuspend = (ast: AST.AST): AST.AST => (ast._tag === "Suspend" ? unwrapSuspend(ast.f()) : ast)

/**
 * The fields of a struct, or undefined when `ast` is not one. A struct with defaults is a
 * Transformation: its decoded side holds the fields' annotations and optionality (a key with a
 * default is not optional there), its encoded side the fields' own schemas, which keep the
 * annotations of nested structs (SchemaAST.typeAST would drop them).
 */
const fieldsOf = (input: AST.AST): ReadonlyArray<{ readonly field: AST.PropertySignature; readonly type: AST.AST }> | undefined => {
  const ast = unwrapSuspend(input)
  if (ast._tag === "TypeLiteral") return ast.propertySignatures.map((field) => ({ field, type: unwrapSuspend(field.type) }))
  if (ast._tag === "Transformation" && ast.from._tag === "TypeLiteral" && ast.to._tag === "TypeLiteral") {
    const from = new Map(ast.from.propertySignatures.map((p) => [p.name, p.type]))
    return ast.to.propertySignatures.map((field) => ({ field, type: unwrapSuspend(from.get(field.name) ?? field.type) }))
  }
  return undefined
}

/**
 * The key's description: the annotation on its field, or one put on the field's own schema.
 * Effect's built-in schemas carry generic descriptions ("a positive number", "an integer",
 * "Redacted(<redacted>)"): those are not a key's description.
 */
export const descriptionOf = (key: Key): string | undefined => {
  const own = AST.getDescriptionAnnotation(key.field)
  if (Option.isSome(own)) return own.value
  const onType = AST.getDescriptionAnnotation(key.type)
  if (Option.isSome(onType) && !/^(an? |Redacted\(|Struct )/.test(onType.value)) return onType.value
  return undefined
}

/** A short type, in words: the refinement's own message when it has one ("a positive integer"). */
export const typeName = (input: AST.AST): string => {
  const ast = unwrapSuspend(input)
  if (fieldsOf(ast) !== undefined) return "section"
  switch (ast._tag) {
    case "Refinement": {
      const message = AST.getMessageAnnotation(ast)
      if (Option.isSome(message)) {
        const text: unknown = (message.value as (u: unknown) => unknown)(undefined)
        if (typeof text === "string") return text.replace(/^an? /, "")
      }
      return typeName(ast.from)
    }
    case "Literal":
      return `\`${String(ast.literal)}\``
    case "Union":
      return ast.types.map(typeName).join(" | ")
    case "BooleanKeyword":
      return "boolean"
    case "StringKeyword":
      return "string"
    case "NumberKeyword":
      return "number"
    case "Transformation":
      // Redacted(S) decodes S into a Redacted: a secret.
      return ast.to._tag === "Declaration" ? `secret (${typeName(ast.from)})` : typeName(ast.to)
    case "Declaration":
      return ast.typeParameters[0] === undefined ? "value" : `secret (${typeName(ast.typeParameters[0])})`
    case "TupleType": {
      const element = ast.rest[0]
      return element === undefined ? "list" : `list of ${fieldsOf(element.type) !== undefined ? "objects" : typeName(element.type)}`
    }
    default:
      return ast._tag
  }
}

/** The value at a dotted path of the defaults, `[]` stepping into the first list element (none). */
const at = (value: unknown, keyPath: ReadonlyArray<string>): unknown => {
  let v = value
  for (const k of keyPath) {
    if (v === null || typeof v !== "object" || Redacted.isRedacted(v)) return undefined
    v = (v as Record<string, unknown>)[k]
  }
  return v
}

/** The default, as decoding a file without the key gives it; a key without one is unset or required. */
const defaultText = (value: unknown, field: AST.PropertySignature): string => {
  if (value === undefined) return field.isOptional ? "—" : "**required**"
  if (Redacted.isRedacted(value)) return `\`${String(Redacted.value(value))}\``
  if (Array.isArray(value)) return `\`${JSON.stringify(value)}\``
  if (typeof value === "object") return "—"
  return `\`${String(value)}\``
}

const cell = (s: string): string => s.replace(/\n+/g, " ").replace(/\|/g, "\\|")

/** Every key of the configuration with no description: the reference must not have holes. */
export const undocumentedKeys = (): ReadonlyArray<string> => {
  const missing: Array<string> = []
  walk(ConfigFile.ast, [], (key) => {
    if (descriptionOf(key) === undefined) missing.push(key.path)
  })
  return missing
}

const walk = (ast: AST.AST, prefix: ReadonlyArray<string>, visit: (key: Key, keyPath: ReadonlyArray<string>) => void): void => {
  for (const { field, type } of fieldsOf(ast) ?? []) {
    const keyPath = [...prefix, String(field.name)]
    visit({ path: keyPath.join("."), type, field }, keyPath)
    if (fieldsOf(type) !== undefined) walk(type, keyPath, visit)
    else if (type._tag === "TupleType" && type.rest[0] !== undefined && fieldsOf(type.rest[0].type) !== undefined) {
      walk(type.rest[0].type, [...prefix, `${String(field.name)}[]`], visit)
    }
  }
}

/** The whole of docs/configuration.md. */
export const renderConfigDocs = (): string => {
  const defaults: unknown = Schema.decodeUnknownSync(ConfigFile)({})
  const out: Array<string> = [
    "<!-- Generated by scripts/gen-config-docs.ts from the Schema of src/Config.ts (npm run docs:config): edit those, not this file. -->",
    "",
    fs.readFileSync(introFile, "utf8").trimEnd(),
    ""
  ]
  const sections = fieldsOf(ConfigFile.ast)
  if (sections === undefined) throw new Error("ConfigFile is not a struct")
  for (const section of sections) {
    const name = String(section.field.name)
    const key: Key = { path: name, ...section }
    out.push(`## \`${name}\``, "", descriptionOf(key) ?? "", "", "| key | type | default | description |", "| --- | --- | --- | --- |")
    walk(key.type, [], (k, keyPath) => {
      const value = keyPath.some((p) => p.endsWith("[]")) ? undefined : at(defaults, [name, ...keyPath])
      out.push(`| \`${name}.${k.path}\` | ${cell(typeName(k.type))} | ${defaultText(value, k.field)} | ${cell(descriptionOf(k) ?? "")} |`)
    })
    out.push("")
  }
  return out.join("\n")
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const missing = undocumentedKeys()
  if (missing.length > 0) {
    process.stderr.write(`keys without a description annotation in src/Config.ts:\n  ${missing.join("\n  ")}\n`)
    process.exitCode = 1
  }
  const text = renderConfigDocs()
  if (process.argv.includes("--check")) {
    const committed = fs.existsSync(configDocsFile) ? fs.readFileSync(configDocsFile, "utf8") : ""
    if (committed !== text) {
      process.stderr.write(`${path.relative(root, configDocsFile)} is stale: run npm run docs:config\n`)
      process.exitCode = 1
    }
  } else {
    fs.mkdirSync(path.dirname(configDocsFile), { recursive: true })
    fs.writeFileSync(configDocsFile, text)
    process.stdout.write(`wrote ${path.relative(root, configDocsFile)}\n`)
  }
}
