/**
 * `check-config`: everything the daemon reads at start, checked without connecting to the
 * database — the configuration file, the entity definitions it names (YAML folder or Prisma
 * schema) and the access rules file (checked against those entities). Every problem is one line
 * starting with the file it is in.
 *
 * When the configuration itself has problems, the entities and rules it names are still checked
 * (their paths as written in the file, `${VAR}` placeholders and DBAL_ overrides applied), so that
 * one run reports everything.
 */
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { PrismaNaming } from "../../src/entity/Prisma.js"
import * as YAML from "yaml"
import type { Adapter, DaemonConfig } from "../../src/Config.js"
import type { EntityRegistryShape } from "../../src/entity/Model.js"
import { isSandboxed, sandboxProblem } from "../../src/Sandbox.js"
import { parseRules, type Rule } from "../../src/access/Policy.js"
import * as ConfigLayer from "../../layers/Config.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import { isRecord } from "../../src/Json.js"
import { CliFailure } from "./errors.js"
import { out } from "./output.js"

export interface CheckReport {
  readonly problems: ReadonlyArray<string>
  /** What is allowed but probably not meant (printed to stderr; the check still passes). */
  readonly warnings?: ReadonlyArray<string>
  /** Present when there are no problems. */
  readonly summary?: {
    readonly file: string
    readonly adapter: DaemonConfig["database"]["adapter"]
    readonly entities: number
    readonly entitiesFrom: string
    readonly rules: number
    readonly rulesFile?: string
  }
}

interface Targets {
  readonly entitiesDir: string
  readonly prismaSchema?: string
  readonly entities?: { readonly prisma_naming?: PrismaNaming }
  /** The adapter, when the whole configuration decoded: the entities are checked for its dialect. */
  readonly database?: { readonly adapter: Adapter }
  readonly rulesFile?: string
}

const emptyRegistry: EntityRegistryShape = { entities: new Map(), creationOrder: [] }

/**
 * The entity and rules paths a configuration file names, read leniently (for a file that does not
 * load): undefined where the value cannot be known.
 */
const rawTargets = (file: string, env: Record<string, string | undefined>): Targets | undefined => {
  let doc: unknown
  try {
    const parsed = YAML.parseDocument(fs.readFileSync(file, "utf8"))
    if (parsed.errors.length > 0) return undefined
    doc = parsed.toJS()
  } catch {
    return undefined
  }
  if (!isRecord(doc)) return undefined
  const base = path.dirname(file)
  /** A string value with its placeholders filled, the override of `envKey` first. */
  const value = (raw: unknown, envKey: string): string | undefined => {
    const override = env[envKey]
    const text = override !== undefined && override !== "" ? override : raw
    if (typeof text !== "string" || text === "") return undefined
    let unresolved = false
    const filled = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined && v !== "") return v
      if (fallback !== undefined) return fallback
      unresolved = true
      return ""
    })
    return unresolved || filled === "" ? undefined : path.resolve(base, filled)
  }
  const entities = isRecord(doc.entities) ? doc.entities : {}
  const acl = isRecord(doc.security) && isRecord(doc.security.acl) ? doc.security.acl : {}
  const entitiesDir = value(entities.dir, "DBAL_ENTITIES__DIR") ?? ConfigLayer.defaultEntitiesDir
  const prismaSchema = value(entities.prisma_schema, "DBAL_ENTITIES__PRISMA_SCHEMA")
  const rulesFile = value(acl.rules_file, "DBAL_SECURITY__ACL__RULES_FILE")
  return {
    entitiesDir,
    ...(prismaSchema === undefined ? {} : { prismaSchema }),
    ...(rulesFile === undefined ? {} : { rulesFile })
  }
}

/**
 * The rules file as the daemon reads it at start (layers/Acl.ts). Without a registry (the entities
 * did not load) only what does not depend on the entities is checked.
 */
export const checkRulesFile = (
  file: string,
  registry: EntityRegistryShape | undefined
): { readonly rules: number; readonly problems: ReadonlyArray<string>; readonly parsed?: ReadonlyArray<Rule> } => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    return { rules: 0, problems: [`${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`] }
  }
  const doc = YAML.parseDocument(text)
  if (doc.errors.length > 0) {
    return { rules: 0, problems: doc.errors.map((e) => `${file}: line ${e.linePos?.[0].line ?? "?"}: YAML syntax error: ${e.code}`) }
  }
  const parsed = parseRules(doc.toJS(), registry ?? emptyRegistry)
  const problems = registry === undefined ? parsed.problems.filter((p) => !/\.entities: unknown entity /.test(p)) : parsed.problems
  return { rules: parsed.rules.length, problems: problems.map((p) => `${file}: ${p}`), parsed: parsed.rules }
}

/**
 * Entities without access rules: no `acl:` block (or an empty one) and no allow rule of the rules
 * file that names them. Deny by default leaves them to service tokens (the `system` role): meant
 * when said (`acl: {read: {system: true}}` is a rule), a surprise when not (every entity of a
 * schema.prisma starts that way).
 */
export const serviceOnlyEntities = (registry: EntityRegistryShape, rules: ReadonlyArray<Rule>): Array<string> =>
  [...registry.entities.values()]
    .filter((e) => Object.keys(e.acl).length === 0)
    .filter((e) => !rules.some((r) => r.effect === "allow" && (r.entities === "*" || r.entities.has(e.name))))
    .map((e) => e.name)
    .sort()

/** `security.never_expose` entries must name fields of the entities (the Acl layer refuses others). */
const neverExposeProblems = (cfg: DaemonConfig, registry: EntityRegistryShape): Array<string> =>
  cfg.security.never_expose.flatMap((ref, i) => {
    const [entityName, fieldName] = ref.split(".") as [string, string]
    const entity = registry.entities.get(entityName)
    if (entity === undefined) return [`${cfg.sourcePath}: security.never_expose[${i}]: no entity ${entityName}`]
    return entity.byName.has(fieldName) ? [] : [`${cfg.sourcePath}: security.never_expose[${i}]: ${entityName} has no field ${fieldName}`]
  })

/** Checks a configuration and what it names; never fails, never connects to the database. */
export const checkConfig = (file: string, env: Record<string, string | undefined> = process.env): Effect.Effect<CheckReport> =>
  Effect.gen(function* () {
    const sourcePath = path.resolve(file)
    const problems: Array<string> = []
    const loaded = yield* Effect.either(ConfigLayer.loadConfig(file, env))
    const cfg = Either.getOrUndefined(loaded)
    if (Either.isLeft(loaded)) problems.push(...loaded.left.problems.map((p) => `${loaded.left.file}: ${p}`))

    const targets: Targets | undefined =
      cfg === undefined
        ? rawTargets(sourcePath, env)
        : {
            entitiesDir: cfg.entitiesDir,
            ...(cfg.prismaSchema === undefined ? {} : { prismaSchema: cfg.prismaSchema }),
            entities: cfg.entities,
            database: cfg.database,
            ...(cfg.security.acl.rules_file === undefined ? {} : { rulesFile: cfg.security.acl.rules_file })
          }
    if (targets === undefined) return { problems }

    const loadedRegistry = yield* Effect.either(EntitiesLayer.fromConfig(targets))
    const registry = Either.getOrUndefined(loadedRegistry)
    if (Either.isLeft(loadedRegistry)) problems.push(...loadedRegistry.left.problems)
    if (cfg !== undefined && registry !== undefined) problems.push(...neverExposeProblems(cfg, registry))

    const rules = targets.rulesFile === undefined ? { rules: 0, problems: [] } : checkRulesFile(targets.rulesFile, registry)
    problems.push(...rules.problems)

    if (cfg !== undefined && cfg.security.sandbox === "strict" && !isSandboxed()) {
      const sandbox = sandboxProblem(cfg)
      if (sandbox !== undefined) problems.push(`${sourcePath}: ${sandbox}`)
    }
    if (problems.length > 0 || cfg === undefined || registry === undefined) return { problems }
    const serviceOnly = serviceOnlyEntities(registry, rules.parsed ?? [])
    return {
      problems,
      warnings:
        serviceOnly.length === 0
          ? []
          : [
              `warning: ${serviceOnly.length} ${serviceOnly.length === 1 ? "entity has" : "entities have"} no access rules and can be used by service tokens only: ${serviceOnly.join(", ")} ` +
                `(give ${serviceOnly.length === 1 ? "it" : "them"} an acl: block, or rules in security.acl.rules_file)`
            ],
      summary: {
        file: sourcePath,
        adapter: cfg.database.adapter,
        entities: registry.entities.size,
        entitiesFrom: targets.prismaSchema ?? targets.entitiesDir,
        rules: rules.rules,
        ...(targets.rulesFile === undefined ? {} : { rulesFile: targets.rulesFile })
      }
    }
  })

/** The report as printed lines: problems (stderr) or the summary (stdout). */
export const formatSummary = (summary: NonNullable<CheckReport["summary"]>): ReadonlyArray<string> => [
  `configuration OK: ${summary.file}`,
  `  adapter: ${summary.adapter}`,
  `  entities: ${summary.entities} (${summary.entitiesFrom})`,
  `  rules: ${summary.rulesFile === undefined ? "0 (no rules file: the entities' own acl blocks apply)" : `${summary.rules} (${summary.rulesFile})`}`
]

/** The command: problems (exit code 1) or the summary on stdout, warnings on stderr. */
export const checkConfigProgram = (file: string) =>
  Effect.gen(function* () {
    const report = yield* checkConfig(file)
    if (report.problems.length > 0) return yield* new CliFailure({ lines: report.problems, exitCode: 1, bare: true })
    if (report.summary !== undefined) yield* out(formatSummary(report.summary))
    if (report.warnings !== undefined && report.warnings.length > 0) {
      yield* Effect.sync(() => process.stderr.write(report.warnings!.map((l) => `${l}\n`).join("")))
    }
  })
