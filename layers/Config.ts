/**
 * Config layer: the YAML file named by `--config=PATH`, `${VAR}` / `${VAR:-default}` filled from
 * the environment, then per-key overrides `DBAL_<SECTION>__<KEY>` (for example
 * `DBAL_DATABASE__POOL_SIZE=5`, `DBAL_SERVER__TLS__ENABLED=true`), decoded by the `ConfigFile`
 * Schema. Every problem is reported at once, one line each, naming the key path.
 */
import { Effect, Layer, ParseResult, Redacted, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as YAML from "yaml"
import { AppConfig, ConfigFile, type DaemonConfig } from "../src/Config.js"

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.map((p) => `${this.file}: ${p}`).join("\n")
  }
}

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const defaultConfigPath = path.join(packageRoot, "config", "development.yaml")
export const defaultEntitiesDir = path.join(packageRoot, "config", "entities")

const placeholder = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/** Fills `${VAR}` and `${VAR:-default}` in every string of the document. */
const substitute = (
  value: unknown,
  env: Record<string, string | undefined>,
  at: string,
  problems: Array<string>
): unknown => {
  if (typeof value === "string") {
    // A value that is exactly one placeholder keeps the type of what it expands to (numbers,
    // booleans), as if it had been written in the file.
    const whole = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/.exec(value)
    const replaced = value.replace(placeholder, (_m, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined && v !== "") return v
      if (fallback !== undefined) return fallback
      problems.push(`${at}: environment variable ${name} is not set (write \${${name}:-default} for a default)`)
      return ""
    })
    if (whole !== null && replaced !== "") return parseScalar(replaced)
    return replaced
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, env, `${at}[${i}]`, problems))
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, env, at === "" ? k : `${at}.${k}`, problems)
    return out
  }
  return value
}

const parseScalar = (text: string): unknown => {
  if (/^(true|false)$/.test(text)) return text === "true"
  if (/^-?\d+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text)
  return text
}

/** `DBAL_DATABASE__POOL_SIZE=5` sets `database.pool_size`. */
const applyEnvOverrides = (doc: Record<string, unknown>, env: Record<string, string | undefined>) => {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("DBAL_") || value === undefined || !name.includes("__")) continue
    const keys = name.slice("DBAL_".length).toLowerCase().split("__")
    if (keys.some((k) => k === "")) continue
    let node: Record<string, unknown> = doc
    for (const key of keys.slice(0, -1)) {
      const next = node[key]
      if (next === null || typeof next !== "object" || Array.isArray(next)) node[key] = {}
      node = node[key] as Record<string, unknown>
    }
    node[keys[keys.length - 1]!] = parseScalar(value)
  }
}

const formatPath = (p: ReadonlyArray<PropertyKey>): string =>
  p.reduce<string>((acc, k) => (typeof k === "number" ? `${acc}[${k}]` : acc === "" ? String(k) : `${acc}.${String(k)}`), "")

const formatIssues = (error: ParseResult.ParseError): Array<string> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => {
    const key = formatPath(issue.path)
    const message = issue._tag === "Unexpected" ? "unknown key (check its spelling and section)" : issue.message
    return `${key === "" ? "(top level)" : key}: ${expectText(message)}`
  })

/** Turns Schema's phrasing ("Expected a string, actual 3") into "expected a string, got 3". */
const expectText = (message: string): string =>
  message.startsWith("Expected ") ? `expected ${message.slice("Expected ".length).replace(/, actual /, ", got ")}` : message

const resolveFrom = (base: string, p: string) => (path.isAbsolute(p) ? p : path.resolve(base, p))

/** Reads, substitutes, overrides and decodes one configuration file. */
export const loadConfig = (
  file: string,
  env: Record<string, string | undefined> = process.env
): Effect.Effect<DaemonConfig, ConfigError> =>
  Effect.gen(function* () {
    const sourcePath = path.resolve(file)
    const fail = (problems: Array<string>) => Effect.fail(new ConfigError({ file: sourcePath, problems }))
    let text: string
    try {
      text = fs.readFileSync(sourcePath, "utf8")
    } catch (e) {
      return yield* fail([`cannot read the file (${(e as NodeJS.ErrnoException).code ?? "error"})`])
    }
    const parsed = YAML.parseDocument(text, { prettyErrors: false })
    if (parsed.errors.length > 0) {
      return yield* fail(
        parsed.errors.map((e) => `line ${e.linePos?.[0].line ?? "?"}: YAML syntax error: ${e.code}`)
      )
    }
    const raw: unknown = parsed.toJS() ?? {}
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      return yield* fail(["(top level): expected a mapping of sections (server, database, security, ...)"])
    }
    const problems: Array<string> = []
    const doc = substitute(raw, env, "", problems) as Record<string, unknown>
    applyEnvOverrides(doc, env)
    const decoded = Schema.decodeUnknownEither(ConfigFile)(doc, { errors: "all", onExcessProperty: "error" })
    if (decoded._tag === "Left") problems.push(...formatIssues(decoded.left))
    if (problems.length > 0 || decoded._tag === "Left") return yield* fail(problems)
    const cfg = decoded.right
    const base = path.dirname(sourcePath)

    const conn = cfg.database.connection
    const more: Array<string> = []
    let password = conn.password
    if (conn.password_file !== undefined) {
      try {
        password = Redacted.make(fs.readFileSync(resolveFrom(base, conn.password_file), "utf8").replace(/\r?\n$/, ""))
      } catch (e) {
        more.push(`database.connection.password_file: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`)
      }
    }
    if (cfg.database.adapter === "sqlite" && conn.filename === undefined) {
      more.push("database.connection.filename: expected the SQLite database file for adapter sqlite")
    }
    if (cfg.database.adapter !== "sqlite") {
      for (const key of ["host", "database", "user"] as const) {
        if (conn[key] === undefined) more.push(`database.connection.${key}: expected a value for adapter ${cfg.database.adapter}`)
      }
    }
    if (cfg.server.tls.enabled) {
      more.push("server.tls.enabled: TLS is not available in this version yet; terminate TLS in front of the daemon")
    }
    if (cfg.security.sandbox === "strict") {
      more.push('security.sandbox: "strict" is not available in this version yet; use "none"')
    }
    if (cfg.performance.default_page_size > cfg.performance.max_page_size) {
      more.push("performance.default_page_size: expected a value <= performance.max_page_size")
    }
    const names = cfg.security.auth.service_tokens.map((t) => t.name)
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) more.push(`security.auth.service_tokens[${i}].name: duplicate name ${JSON.stringify(n)}`)
    })
    if (more.length > 0) return yield* fail(more)

    const connection = {
      ...conn,
      ...(password === undefined ? {} : { password }),
      ...(conn.filename === undefined || conn.filename === ":memory:" ? {} : { filename: resolveFrom(base, conn.filename) })
    }
    return {
      ...cfg,
      database: { ...cfg.database, connection },
      security: {
        ...cfg.security,
        ...(cfg.security.audit_log_path === undefined ? {} : { audit_log_path: resolveFrom(base, cfg.security.audit_log_path) }),
        acl: {
          ...cfg.security.acl,
          ...(cfg.security.acl.rules_file === undefined ? {} : { rules_file: resolveFrom(base, cfg.security.acl.rules_file) })
        }
      },
      sourcePath,
      entitiesDir: cfg.entities.dir === undefined ? defaultEntitiesDir : resolveFrom(base, cfg.entities.dir)
    } satisfies DaemonConfig
  })

export const layer = (file: string, env?: Record<string, string | undefined>) =>
  Layer.effect(AppConfig, loadConfig(file, env))

/** For tests that are about something else. */
export const layerValue = (config: DaemonConfig) => Layer.succeed(AppConfig, config)
