import { Effect, Either, Redacted } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inspect } from "node:util"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { ConfigError, defaultEntitiesDir, loadConfig } from "../../layers/Config.js"
import type { DaemonConfig } from "../../src/Config.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-config-unit-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

let counter = 0
/** Writes a configuration file in its own folder and returns its path. */
const write = (text: string, name = "daemon.yaml"): string => {
  const folder = path.join(dir, `c${++counter}`)
  fs.mkdirSync(folder)
  const file = path.join(folder, name)
  fs.writeFileSync(file, text)
  return file
}

const load = (file: string, env: Record<string, string | undefined> = {}) => Effect.runPromise(Effect.either(loadConfig(file, env)))

const ok = async (file: string, env: Record<string, string | undefined> = {}): Promise<DaemonConfig> => {
  const r = await load(file, env)
  if (Either.isLeft(r)) throw new Error(`expected a valid configuration, got:\n${r.left.problems.join("\n")}`)
  return r.right
}

const failed = async (file: string, env: Record<string, string | undefined> = {}): Promise<ConfigError> => {
  const r = await load(file, env)
  if (Either.isRight(r)) throw new Error("expected the configuration to be refused")
  expect(r.left).toBeInstanceOf(ConfigError)
  expect(r.left.file).toBe(path.resolve(file))
  for (const p of r.left.problems) expect(p).not.toContain("\n")
  return r.left
}

/** The key path each problem line names (the text before the first ": "). */
const keysOf = (e: ConfigError): Array<string> => e.problems.map((p) => p.slice(0, p.indexOf(": ")))

const SQLITE = "database:\n  connection:\n    filename: ./db.sqlite\n"

describe("loadConfig: valid files", () => {
  it("decodes a minimal file with defaults", async () => {
    const file = write(SQLITE)
    const cfg = await ok(file)
    expect(cfg.sourcePath).toBe(file)
    expect(cfg.server).toMatchObject({ host: "127.0.0.1", port: 50051, max_payload: 1048576, max_in_flight: 64, tls: { enabled: false } })
    expect(cfg.database).toMatchObject({ adapter: "sqlite", timeout: 5000, auto_migrate: false })
    expect(cfg.database.pool_size).toBeUndefined()
    expect(cfg.database.connection.busy_timeout).toBe(5000)
    expect(cfg.performance).toMatchObject({ default_page_size: 20, max_page_size: 100, max_batch_size: 1000, query_timeout: 30000 })
    expect(cfg.security.rate_limit).toMatchObject({ enabled: true, requests_per_minute: 600, burst: 100 })
    expect(cfg.security.auth.service_tokens).toEqual([])
    expect(cfg.logging.level).toBe("info")
    expect(cfg.entitiesDir).toBe(defaultEntitiesDir)
  })

  it("loads the shipped development configuration", async () => {
    const cfg = await ok(path.join(root, "config", "development.yaml"))
    expect(cfg.database.adapter).toBe("sqlite")
    expect(cfg.security.auth.service_tokens.map((t) => t.name)).toEqual(["dev"])
    expect(Redacted.value(cfg.security.auth.service_tokens[0]!.token)).toBe("dev-service-token-change-me")
    const custom = await ok(path.join(root, "config", "development.yaml"), { DBAL_DEV_TOKEN: "from-the-environment-0123" })
    expect(Redacted.value(custom.security.auth.service_tokens[0]!.token)).toBe("from-the-environment-0123")
  })

  it("resolves relative paths against the file's folder", async () => {
    const file = write(
      [
        "database:",
        "  connection:",
        "    filename: data/dev.sqlite",
        "security:",
        "  audit_log_path: ../logs/audit.log",
        "  acl:",
        "    rules_file: acl_rules.yaml",
        "entities:",
        "  dir: defs",
        ""
      ].join("\n")
    )
    const base = path.dirname(file)
    const cfg = await ok(file)
    expect(cfg.database.connection.filename).toBe(path.join(base, "data", "dev.sqlite"))
    expect(cfg.security.audit_log_path).toBe(path.resolve(base, "..", "logs", "audit.log"))
    expect(cfg.security.acl.rules_file).toBe(path.join(base, "acl_rules.yaml"))
    expect(cfg.entitiesDir).toBe(path.join(base, "defs"))
  })

  it("keeps absolute paths and :memory: as they are", async () => {
    const abs = path.join(dir, "elsewhere.sqlite")
    expect((await ok(write(`database:\n  connection:\n    filename: ${abs}\n`))).database.connection.filename).toBe(abs)
    expect((await ok(write(`database:\n  connection:\n    filename: ":memory:"\n`))).database.connection.filename).toBe(":memory:")
  })

  it("accepts postgresql with host, database and user", async () => {
    const cfg = await ok(
      write(
        "database:\n  adapter: postgresql\n  pool_size: 4\n  connection:\n    host: db\n    port: 5433\n    database: app\n    user: app\n    password: pw-1\n"
      )
    )
    expect(cfg.database.adapter).toBe("postgresql")
    expect(cfg.database.connection).toMatchObject({ host: "db", port: 5433, database: "app", user: "app", ssl_mode: "disable" })
    expect(cfg.database.pool_size).toBe(4)
  })
})

describe("loadConfig: ${VAR} substitution and DBAL_ overrides", () => {
  it("fills ${VAR} and ${VAR:-default} from the env argument", async () => {
    const file = write('server:\n  host: "${HOST}"\ndatabase:\n  connection:\n    filename: "${DATA_DIR:-data}/${DB_NAME:-dev}.sqlite"\n')
    const base = path.dirname(file)
    const cfg = await ok(file, { HOST: "0.0.0.0", DB_NAME: "prod" })
    expect(cfg.server.host).toBe("0.0.0.0")
    expect(cfg.database.connection.filename).toBe(path.join(base, "data", "prod.sqlite"))
  })

  it("uses the default when the variable is empty", async () => {
    const cfg = await ok(write('server:\n  host: "${HOST:-10.0.0.1}"\n' + SQLITE), { HOST: "" })
    expect(cfg.server.host).toBe("10.0.0.1")
  })

  it("does not read process.env when an env object is given", async () => {
    const name = "DBAL_UNIT_TEST_ONLY_VAR"
    expect(process.env[name]).toBeUndefined()
    const e = await failed(write(`server:\n  host: "\${${name}}"\n` + SQLITE), {})
    expect(keysOf(e)).toEqual(["server.host"])
  })

  it("turns a whole-value placeholder of a number or boolean into that type", async () => {
    const cfg = await ok(
      write(
        'server:\n  port: "${PORT}"\n  max_in_flight: ${INFLIGHT:-8}\ndatabase:\n  auto_migrate: ${MIGRATE}\n  connection:\n    filename: x.sqlite\n'
      ),
      { PORT: "8080", MIGRATE: "true" }
    )
    expect(cfg.server.port).toBe(8080)
    expect(cfg.server.max_in_flight).toBe(8)
    expect(cfg.database.auto_migrate).toBe(true)
  })

  it("keeps a numeric secret a string where a string is expected", async () => {
    const cfg = await ok(
      write(
        'database:\n  adapter: mysql\n  connection:\n    host: db\n    database: app\n    user: app\n    password: "${DB_PASSWORD}"\nsecurity:\n  auth:\n    service_tokens:\n      - name: backend\n        token: "${TOKEN}"\n'
      ),
      { DB_PASSWORD: "12345678", TOKEN: "1234567890123456" }
    )
    expect(Redacted.value(cfg.database.connection.password!)).toBe("12345678")
    expect(Redacted.value(cfg.security.auth.service_tokens[0]!.token)).toBe("1234567890123456")
  })

  it("reports an unset ${VAR} without default once, naming the key", async () => {
    const e = await failed(write("database:\n  connection:\n    filename: ${DB_FILE}\n"))
    expect(e.problems).toEqual([
      "database.connection.filename: environment variable DB_FILE is not set (write ${DB_FILE:-default} for a default)"
    ])
  })

  it("applies DBAL_<SECTION>__<KEY> overrides, typed", async () => {
    const cfg = await ok(write("server:\n  port: 1234\n" + SQLITE), {
      DBAL_DATABASE__POOL_SIZE: "7",
      DBAL_SERVER__PORT: "9090",
      DBAL_SECURITY__RATE_LIMIT__ENABLED: "false",
      DBAL_LOGGING__LEVEL: "debug",
      DBAL_IGNORED: "1"
    })
    expect(cfg.database.pool_size).toBe(7)
    expect(cfg.server.port).toBe(9090)
    expect(cfg.security.rate_limit.enabled).toBe(false)
    expect(cfg.logging.level).toBe("debug")
  })

  it("can supply a whole missing section and a numeric password from overrides", async () => {
    const cfg = await ok(write("server:\n  port: 1\n"), {
      DBAL_DATABASE__CONNECTION__FILENAME: "/tmp/override.sqlite",
      DBAL_DATABASE__CONNECTION__PASSWORD: "123456"
    })
    expect(cfg.database.connection.filename).toBe("/tmp/override.sqlite")
    expect(Redacted.value(cfg.database.connection.password!)).toBe("123456")
  })

  it("reports bad overrides with the key path", async () => {
    const e = await failed(write(SQLITE), { DBAL_SERVER__PORT: "abc", DBAL_SERVER__PROT: "1" })
    expect(keysOf(e).sort()).toEqual(["server.port", "server.prot"])
    expect(e.problems).toContain("server.prot: unknown key (check its spelling and section)")
    expect(e.problems).toContain('server.port: expected number, got "abc"')
  })
})

describe("loadConfig: problems", () => {
  it("reports every problem of a bad file, one line each, naming the key path", async () => {
    const file = write(
      [
        "server:",
        "  port: abc",
        "  max_payload: -1",
        "database:",
        "  adapter: sqlite",
        "  pool_sise: 3",
        "security:",
        "  auth:",
        "    service_tokens:",
        "      - name: backend",
        "        token: short",
        "logging:",
        "  level: verbose",
        ""
      ].join("\n")
    )
    const e = await failed(file)
    expect(keysOf(e)).toEqual([
      "server.port",
      "server.max_payload",
      "database.pool_sise",
      "security.auth.service_tokens[0].token",
      "logging.level",
      "database.connection.filename"
    ])
    expect(e.problems[0]).toBe('server.port: expected number, got "abc"')
    expect(e.problems[2]).toBe("database.pool_sise: unknown key (check its spelling and section)")
    expect(e.problems[3]).toBe("security.auth.service_tokens[0].token: a token of at least 16 characters")
    expect(e.problems[5]).toBe("database.connection.filename: expected the SQLite database file for adapter sqlite")
    expect(e.message.split("\n")).toEqual(e.problems.map((p) => `${file}: ${p}`))
  })

  it("reports a bad adapter value as one line", async () => {
    const e = await failed(write("server:\n  port: 70000\ndatabase:\n  adapter: oracle\n"))
    expect(e.problems).toEqual([
      "server.port: a port number between 0 and 65535",
      'database.adapter: expected "sqlite" or "postgresql" or "mysql", got "oracle"'
    ])
  })

  it("reports the connection keys a server adapter needs", async () => {
    const e = await failed(write("database:\n  adapter: postgresql\n  connection:\n    host: db\n"))
    expect(e.problems).toEqual([
      "database.connection.database: expected a value for adapter postgresql",
      "database.connection.user: expected a value for adapter postgresql"
    ])
  })

  it("reports unknown sections and cross-key rules", async () => {
    const e = await failed(
      write(
        SQLITE +
          "servr:\n  port: 1\nperformance:\n  default_page_size: 500\n  max_page_size: 100\nsecurity:\n  auth:\n    service_tokens:\n      - {name: a, token: aaaaaaaaaaaaaaaa}\n      - {name: a, token: bbbbbbbbbbbbbbbb}\n"
      )
    )
    expect(keysOf(e)).toEqual(["servr", "security.auth.service_tokens[1].name"])
    const fixed = await failed(
      write(SQLITE + "performance:\n  default_page_size: 500\n  max_page_size: 100\nserver:\n  tls:\n    enabled: true\n")
    )
    expect(keysOf(fixed)).toEqual(["performance.default_page_size", "server.tls.cert_file", "server.tls.key_file"])
  })

  it("reports a YAML syntax error with its line", async () => {
    const e = await failed(write("server:\n  port: 1\ndatabase: [\n  adapter: sqlite\n"))
    expect(e.problems.length).toBeGreaterThan(0)
    for (const p of e.problems) expect(p).toMatch(/^line \d+: YAML syntax error: [A-Z_]+$/)
  })

  it("reports a document that is not a mapping", async () => {
    expect((await failed(write("- server\n- database\n"))).problems).toEqual([
      "(top level): expected a mapping of sections (server, database, security, ...)"
    ])
  })

  it("reports a file that cannot be read", async () => {
    const missing = path.join(dir, "does-not-exist.yaml")
    expect((await failed(missing)).problems).toEqual(["cannot read the file (ENOENT)"])
    expect((await failed(dir)).problems).toEqual(["cannot read the file (EISDIR)"])
  })
})

describe("loadConfig: secrets", () => {
  const TOKEN = "tok-0123456789-abcdef-SECRET"
  const PASSWORD = "pw-SECRET-42"
  const secretFile = () =>
    write(
      [
        "database:",
        "  adapter: postgresql",
        "  connection:",
        "    host: db",
        "    database: app",
        "    user: app",
        `    password: ${PASSWORD}`,
        "security:",
        "  auth:",
        "    service_tokens:",
        `      - {name: backend, token: ${TOKEN}}`,
        ""
      ].join("\n")
    )

  it("decodes the service token and database password as Redacted", async () => {
    const cfg = await ok(secretFile())
    const token = cfg.security.auth.service_tokens[0]!.token
    const password = cfg.database.connection.password!
    expect(Redacted.isRedacted(token)).toBe(true)
    expect(Redacted.isRedacted(password)).toBe(true)
    expect(Redacted.value(token)).toBe(TOKEN)
    expect(Redacted.value(password)).toBe(PASSWORD)
  })

  it("never shows the secrets when printed or serialized", async () => {
    const cfg = await ok(secretFile())
    const token = cfg.security.auth.service_tokens[0]!.token
    const renderings = [
      String(cfg),
      JSON.stringify(cfg),
      inspect(cfg, { depth: 20 }),
      String(token),
      `${cfg.database.connection.password}`,
      token.toString()
    ]
    for (const text of renderings) {
      expect(text).not.toContain("SECRET")
    }
    expect(JSON.stringify(cfg)).toContain('"token":"<redacted>"')
  })

  it("does not echo a secret in problems about it", async () => {
    const e = await failed(write(SQLITE + "security:\n  auth:\n    service_tokens:\n      - {name: a, token: SECRETxx}\n"))
    expect(keysOf(e)).toEqual(["security.auth.service_tokens[0].token"])
    expect(e.message).not.toContain("SECRETxx")
  })

  it("reads password_file (relative to the file, trailing newline dropped)", async () => {
    const file = write(
      "database:\n  adapter: mysql\n  connection:\n    host: db\n    database: app\n    user: app\n    password_file: secrets/db-password\n"
    )
    fs.mkdirSync(path.join(path.dirname(file), "secrets"))
    fs.writeFileSync(path.join(path.dirname(file), "secrets", "db-password"), "from-file-SECRET\n")
    const cfg = await ok(file)
    expect(Redacted.value(cfg.database.connection.password!)).toBe("from-file-SECRET")
    expect(JSON.stringify(cfg)).not.toContain("from-file-SECRET")
  })

  it("reports a password_file that cannot be read, together with other problems", async () => {
    const e = await failed(write("server:\n  port: x\ndatabase:\n  connection:\n    filename: a.db\n    password_file: nope.txt\n"))
    expect(e.problems).toEqual(['server.port: expected number, got "x"', "database.connection.password_file: cannot read it (ENOENT)"])
  })
})

describe("the CLI with a bad configuration", () => {
  it("exits non-zero with one stderr line per problem, no stack trace, never listening", () => {
    const file = write(
      "server:\n  port: not-a-port\ndatabase:\n  adapter: sqlite\n  pool_sise: 3\nsecurity:\n  auth:\n    service_tokens:\n      - {name: a, token: short}\n"
    )
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DBAL_")) env[k] = v
    const r = spawnSync(process.execPath, ["bin/dbal-daemon.mjs", `--config=${file}`], {
      cwd: root,
      env,
      encoding: "utf8",
      timeout: 30_000
    })
    expect(r.error).toBeUndefined()
    expect(r.status).not.toBe(0)
    expect(r.status).not.toBeNull()
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "")
    expect(lines).toEqual([
      `dbal-daemon: ${file}: server.port: expected number, got "not-a-port"`,
      `dbal-daemon: ${file}: database.pool_sise: unknown key (check its spelling and section)`,
      `dbal-daemon: ${file}: security.auth.service_tokens[0].token: a token of at least 16 characters`,
      `dbal-daemon: ${file}: database.connection.filename: expected the SQLite database file for adapter sqlite`
    ])
    expect(r.stderr).not.toContain("    at ")
    expect(r.stdout).not.toContain("    at ")
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/listening/i)
  })
})
