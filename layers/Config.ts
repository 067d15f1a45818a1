/**
 * Config layer: the YAML file named by `--config=PATH`, `${VAR}` / `${VAR:-default}` filled from
 * the environment, then per-key overrides `DBAL_<SECTION>__<KEY>` (for example
 * `DBAL_DATABASE__POOL_SIZE=5`, `DBAL_SERVER__TLS__ENABLED=true`), decoded by the `ConfigFile`
 * Schema. Every problem is reported at once, one line each, naming the key path.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as YAML from "yaml"
import { AppConfig, ConfigFile, type DaemonConfig } from "../src/Config.js"
import { isRecord } from "../src/Json.js"
import { packageRoot } from "../src/paths.js"

export { packageRoot }

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.map((p) => `${this.file}: ${p}`).join("\n")
  }
}

export { defaultConfigPath } from "../src/paths.js"
export const defaultEntitiesDir = path.join(packageRoot, "config", "entities")

const placeholder = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/** Fills `${VAR}` and `${VAR:-default}` in every string of the document. */
const substitute = (
  value: unknown,
  env: Record<string, string | undefined>,
  at: string,
  problems: Array<string>,
  coerced: Map<string, string>
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
    if (whole !== null && replaced !== "") {
      const scalar = parseScalar(replaced)
      if (typeof scalar !== "string") coerced.set(at, replaced)
      return scalar
    }
    return replaced
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, env, `${at}[${i}]`, problems, coerced))
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, env, at === "" ? k : `${at}.${k}`, problems, coerced)
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
const applyEnvOverrides = (doc: Record<string, unknown>, env: Record<string, string | undefined>, coerced: Map<string, string>) => {
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
    const scalar = parseScalar(value)
    if (typeof scalar === "string") coerced.delete(keys.join("."))
    else coerced.set(keys.join("."), value)
    node[keys[keys.length - 1]!] = scalar
  }
}

/**
 * A placeholder or override that looked like a number or boolean but sits where a string is
 * expected (a numeric password or token) goes back to the text it was. True when one did.
 */
const restoreStrings = (doc: Record<string, unknown>, error: ParseResult.ParseError, coerced: ReadonlyMap<string, string>): boolean => {
  let restored = false
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    const text = coerced.get(formatPath(issue.path))
    if (text === undefined || issue.path.length === 0 || !/^Expected string,/.test(issue.message)) continue
    let node: unknown = doc
    for (const k of issue.path.slice(0, -1))
      node = node !== null && typeof node === "object" ? (node as Record<PropertyKey, unknown>)[k] : undefined
    if (node === null || typeof node !== "object") continue
    ;(node as Record<PropertyKey, unknown>)[issue.path[issue.path.length - 1]!] = text
    restored = true
  }
  return restored
}

const formatPath = (p: ReadonlyArray<PropertyKey>): string =>
  p.reduce<string>((acc, k) => (typeof k === "number" ? `${acc}[${k}]` : acc === "" ? String(k) : `${acc}.${String(k)}`), "")

/** One line per key path: the alternatives of a union (an adapter name, ...) are joined. */
const formatIssues = (error: ParseResult.ParseError): Array<string> => {
  const byKey = new Map<string, Array<string>>()
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    const key = formatPath(issue.path)
    const message = issue._tag === "Unexpected" ? "unknown key (check its spelling and section)" : issue.message
    const list = byKey.get(key) ?? []
    if (!list.includes(message)) list.push(message)
    byKey.set(key, list)
  }
  return [...byKey].map(([key, messages]) => {
    const alternatives = messages.map((m) => /^Expected (.*), actual (.*)$/s.exec(m))
    const actual = alternatives[0]?.[2]
    const text =
      messages.length > 1 && alternatives.every((a) => a !== null && a[2] === actual)
        ? `expected ${alternatives.map((a) => a![1]).join(" or ")}, got ${actual}`
        : messages.map(expectText).join("; ")
    return `${key === "" ? "(top level)" : key}: ${text}`
  })
}

/** Turns Schema's phrasing ("Expected a string, actual 3") into "expected a string, got 3". */
const expectText = (message: string): string =>
  message.startsWith("Expected ") ? `expected ${message.slice("Expected ".length).replace(/, actual /, ", got ")}` : message

const record = (u: unknown): Record<string, unknown> => (isRecord(u) ? u : {})

/** Rules that tie keys together; values of the wrong type are left to the Schema's report. */
const crossChecks = (doc: Record<string, unknown>): Array<string> => {
  const more: Array<string> = []
  const database = record(doc.database)
  const conn = record(database.connection)
  const adapter = database.adapter ?? "sqlite"
  if (adapter === "sqlite" && conn.filename === undefined) {
    more.push("database.connection.filename: expected the SQLite database file for adapter sqlite")
  }
  if (adapter === "postgresql" || adapter === "mysql") {
    for (const key of ["host", "database", "user"] as const) {
      if (conn[key] === undefined) more.push(`database.connection.${key}: expected a value for adapter ${adapter}`)
    }
  }

  const cluster = record(doc.cluster)
  if (cluster.changes === "postgresql" && adapter !== "postgresql") {
    more.push("cluster.changes: postgresql needs database.adapter postgresql (use redis otherwise)")
  }
  const server = record(doc.server)
  if (server.proxy_protocol === true && !(Array.isArray(server.trusted_proxies) && server.trusted_proxies.length > 0)) {
    more.push("server.proxy_protocol: needs server.trusted_proxies (only a trusted proxy may send a PROXY header)")
  }
  const security = record(doc.security)
  const tokens = record(security.auth).service_tokens
  const names = Array.isArray(tokens) ? tokens.map((t) => record(t).name) : []
  names.forEach((n, i) => {
    if (typeof n === "string" && names.indexOf(n) !== i)
      more.push(`security.auth.service_tokens[${i}].name: duplicate name ${JSON.stringify(n)}`)
  })
  return more
}

const resolveFrom = (base: string, p: string) => (path.isAbsolute(p) ? p : path.resolve(base, p))

/**
 * Where a relative credential path (`password_file`, `token_file`, `secret_file`, the TLS and JWT
 * key files) points: under $CREDENTIALS_DIRECTORY when systemd set it (LoadCredential= /
 * LoadCredentialEncrypted=, decrypted there for the service only), else next to the config file.
 * Other paths (database file, audit log, rules file, entities) are always relative to the config.
 */
export const credentialResolver = (base: string, env: Record<string, string | undefined>) => {
  const dir = env.CREDENTIALS_DIRECTORY
  const root = dir !== undefined && dir !== "" ? dir : base
  return (p: string) => resolveFrom(root, p)
}

/** A secret held in a file: its text without one trailing newline, or why it cannot be read. */
const readSecretFile = (file: string): { value: string } | { problem: string } => {
  try {
    return { value: fs.readFileSync(file, "utf8").replace(/\r?\n$/, "") }
  } catch (e) {
    return { problem: `cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})` }
  }
}

/**
 * `token_file` of each service token and `jwt.secret_file` fill `token` and `secret` in the
 * document before it is decoded, so that the decoded values (Redacted) are the same as if they
 * had been written inline; setting both is a problem.
 */
const fillSecretFiles = (doc: Record<string, unknown>, credential: (p: string) => string, problems: Array<string>) => {
  const fill = (node: Record<string, unknown>, fileKey: string, valueKey: string, at: string) => {
    const f = node[fileKey]
    if (typeof f !== "string" || f === "") return
    if (node[valueKey] !== undefined) {
      problems.push(`${at}.${fileKey}: set either ${valueKey} or ${fileKey}, not both`)
      return
    }
    const read = readSecretFile(credential(f))
    if ("problem" in read) problems.push(`${at}.${fileKey}: ${read.problem}`)
    else node[valueKey] = read.value
  }
  const auth = record(record(doc.security).auth)
  const tokens = auth.service_tokens
  if (Array.isArray(tokens)) tokens.forEach((t, i) => isRecord(t) && fill(t, "token_file", "token", `security.auth.service_tokens[${i}]`))
  if (isRecord(auth.jwt)) fill(auth.jwt, "secret_file", "secret", "security.auth.jwt")
}

/** TLS needs a certificate and key that can be read (and the CA bundle, for mTLS). */
const tlsChecks = (cfg: ConfigFile, credential: (p: string) => string): Array<string> => {
  const tls = cfg.server.tls
  if (!tls.enabled) return []
  const out: Array<string> = []
  for (const key of ["cert_file", "key_file"] as const) {
    if (tls[key] === undefined) out.push(`server.tls.${key}: expected a PEM file when server.tls.enabled is true`)
  }
  const read = (key: "cert_file" | "key_file" | "ca_file"): Buffer | undefined => {
    const f = tls[key]
    if (f === undefined) return undefined
    try {
      const p = credential(f)
      if (!fs.statSync(p).isFile()) {
        out.push(`server.tls.${key}: not a file`)
        return undefined
      }
      return fs.readFileSync(p)
    } catch (e) {
      out.push(`server.tls.${key}: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`)
      return undefined
    }
  }
  const certPem = read("cert_file")
  const keyPem = read("key_file")
  const caPem = read("ca_file")
  let cert: crypto.X509Certificate | undefined
  let key: crypto.KeyObject | undefined
  try {
    if (certPem !== undefined) cert = new crypto.X509Certificate(certPem)
  } catch {
    out.push("server.tls.cert_file: not a PEM certificate")
  }
  try {
    if (keyPem !== undefined) key = crypto.createPrivateKey(keyPem)
  } catch {
    out.push("server.tls.key_file: not a PEM private key (or it is encrypted)")
  }
  try {
    if (caPem !== undefined) new crypto.X509Certificate(caPem)
  } catch {
    out.push("server.tls.ca_file: not a PEM certificate bundle")
  }
  if (cert !== undefined && key !== undefined && !cert.checkPrivateKey(key)) {
    out.push("server.tls.key_file: does not match the certificate of server.tls.cert_file")
  }
  return out
}

/** JWT verification needs a key that fits its algorithms, in a file that can be read. */
const jwtChecks = (cfg: ConfigFile, credential: (p: string) => string): Array<string> => {
  const jwt = cfg.security.auth.jwt
  if (!jwt.enabled) return []
  const out: Array<string> = []
  const hmac = jwt.algorithms.filter((a) => a.startsWith("HS"))
  const asymmetric = jwt.algorithms.filter((a) => !a.startsWith("HS"))
  if (hmac.length > 0 && asymmetric.length > 0) {
    out.push("security.auth.jwt.algorithms: expected either HS* algorithms (secret) or public-key ones, not both")
  }
  if (hmac.length > 0 && jwt.secret === undefined) out.push(`security.auth.jwt.secret: expected a secret for ${hmac.join(", ")}`)
  if (asymmetric.length > 0 && jwt.public_key_file === undefined && jwt.jwks_file === undefined && jwt.jwks_url === undefined) {
    out.push(`security.auth.jwt.public_key_file: expected a public key file (or jwks_file, or jwks_url) for ${asymmetric.join(", ")}`)
  }
  for (const key of ["public_key_file", "jwks_file"] as const) {
    const f = jwt[key]
    if (f === undefined) continue
    try {
      fs.accessSync(credential(f), fs.constants.R_OK)
    } catch (e) {
      out.push(`security.auth.jwt.${key}: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`)
      continue
    }
    if (key === "public_key_file") {
      const fits: Record<string, ReadonlyArray<string>> = { RS256: ["rsa"], ES256: ["ec"], EdDSA: ["ed25519", "ed448"] }
      try {
        const type = crypto.createPublicKey(fs.readFileSync(credential(f))).asymmetricKeyType ?? ""
        if (!asymmetric.some((a) => fits[a]?.includes(type))) {
          out.push(`security.auth.jwt.public_key_file: a ${type} key fits none of ${asymmetric.join(", ")}`)
        }
      } catch {
        out.push("security.auth.jwt.public_key_file: not a PEM public key")
      }
    }
  }
  return out
}

/** Reads, substitutes, overrides and decodes one configuration file. */
export const loadConfig = (file: string, env: Record<string, string | undefined> = process.env): Effect.Effect<DaemonConfig, ConfigError> =>
  Effect.gen(function* () {
    const sourcePath = path.resolve(file)
    const fail = (problems: Array<string>) => Effect.fail(new ConfigError({ file: sourcePath, problems }))
    let text: string
    try {
      text = fs.readFileSync(sourcePath, "utf8")
    } catch (e) {
      return yield* fail([`cannot read the file (${(e as NodeJS.ErrnoException).code ?? "error"})`])
    }
    const parsed = YAML.parseDocument(text)
    if (parsed.errors.length > 0) {
      return yield* fail(parsed.errors.map((e) => `line ${e.linePos?.[0].line ?? "?"}: YAML syntax error: ${e.code}`))
    }
    const raw: unknown = parsed.toJS() ?? {}
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      return yield* fail(["(top level): expected a mapping of sections (server, database, security, ...)"])
    }
    const problems: Array<string> = []
    const coerced = new Map<string, string>()
    const doc = substitute(raw, env, "", problems, coerced) as Record<string, unknown>
    applyEnvOverrides(doc, env, coerced)
    const base = path.dirname(sourcePath)
    const credential = credentialResolver(base, env)
    fillSecretFiles(doc, credential, problems)
    const decode = () => Schema.decodeUnknownEither(ConfigFile)(doc, { errors: "all", onExcessProperty: "error" })
    let decoded = decode()
    if (decoded._tag === "Left" && restoreStrings(doc, decoded.left, coerced)) decoded = decode()
    if (decoded._tag === "Left") {
      // A key whose placeholder is unset is reported once, by the line naming the variable.
      const unset = new Set(problems.map((p) => p.slice(0, p.indexOf(": "))))
      problems.push(...formatIssues(decoded.left).filter((p) => !unset.has(p.slice(0, p.indexOf(": ")))))
    }
    // Rules between keys are checked on the document too, so that they are reported together
    // with the Schema's problems rather than only once those are fixed.
    problems.push(...crossChecks(doc))
    let password: Redacted.Redacted<string> | undefined
    const passwordFile = record(record(doc.database).connection).password_file
    if (typeof passwordFile === "string" && passwordFile !== "") {
      const read = readSecretFile(credential(passwordFile))
      if ("problem" in read) problems.push(`database.connection.password_file: ${read.problem}`)
      else password = Redacted.make(read.value)
    }
    if (decoded._tag === "Right" && decoded.right.performance.default_page_size > decoded.right.performance.max_page_size) {
      problems.push("performance.default_page_size: expected a value <= performance.max_page_size")
    }
    if (decoded._tag === "Right") problems.push(...jwtChecks(decoded.right, credential), ...tlsChecks(decoded.right, credential))
    if (problems.length > 0 || decoded._tag === "Left") return yield* fail(problems)
    const cfg = decoded.right
    const jwt = cfg.security.auth.jwt
    const conn = cfg.database.connection
    password = password ?? conn.password

    const connection = {
      ...conn,
      ...(password === undefined ? {} : { password }),
      // Resolved, since the PostgreSQL pool reads it again for every new connection.
      ...(typeof passwordFile === "string" && passwordFile !== "" ? { password_file: credential(passwordFile) } : {}),
      ...(conn.filename === undefined || conn.filename === ":memory:" ? {} : { filename: resolveFrom(base, conn.filename) })
    }
    const tls = cfg.server.tls
    const resolveTls = (k: "cert_file" | "key_file" | "ca_file") => (tls[k] === undefined ? {} : { [k]: credential(tls[k]) })
    return {
      ...cfg,
      server: { ...cfg.server, tls: { ...tls, ...resolveTls("cert_file"), ...resolveTls("key_file"), ...resolveTls("ca_file") } },
      database: { ...cfg.database, connection },
      security: {
        ...cfg.security,
        ...(cfg.security.audit_log_path === undefined ? {} : { audit_log_path: resolveFrom(base, cfg.security.audit_log_path) }),
        auth: {
          ...cfg.security.auth,
          jwt: {
            ...jwt,
            ...(jwt.public_key_file === undefined ? {} : { public_key_file: credential(jwt.public_key_file) }),
            ...(jwt.jwks_file === undefined ? {} : { jwks_file: credential(jwt.jwks_file) })
          }
        },
        acl: {
          ...cfg.security.acl,
          ...(cfg.security.acl.rules_file === undefined ? {} : { rules_file: resolveFrom(base, cfg.security.acl.rules_file) })
        }
      },
      sourcePath,
      entitiesDir: cfg.entities.dir === undefined ? defaultEntitiesDir : resolveFrom(base, cfg.entities.dir),
      ...(cfg.entities.prisma_schema === undefined ? {} : { prismaSchema: resolveFrom(base, cfg.entities.prisma_schema) })
    } satisfies DaemonConfig
  })

export const layer = (file: string, env?: Record<string, string | undefined>) => Layer.effect(AppConfig, loadConfig(file, env))

/** For tests that are about something else. */
export const layerValue = (config: DaemonConfig) => Layer.succeed(AppConfig, config)
