/**
 * The command line (src/cli, @effect/cli), run as users run it: `node bin/dbal-daemon.mjs ...`.
 * Every spawn is bounded by a timeout; daemons are waited for on their output, never on sleeps.
 */
import { execFile } from "node:child_process"
import { generateKeyPairSync } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import * as jose from "jose"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { SERVICE_TOKEN, serviceAuth, tempDir } from "../support/services.js"

interface Run {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Environment of the spawned CLI: this one without DBAL_ overrides, plus `env`. */
const cleanEnv = (env: Record<string, string> = {}): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DBAL_")) out[k] = v
  return { ...out, ...env }
}

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Run> =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(root, "bin", "dbal-daemon.mjs"), ...args],
      { cwd: root, env: cleanEnv(env), encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== "number")
          return reject(new Error(`dbal-daemon ${args.join(" ")}: ${error.message}\n${stderr}`))
        resolve({ status: error === null ? 0 : (error.code as number), stdout, stderr })
      }
    )
  })

const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "")

/** No stack trace, no Effect cause dump. */
const expectClean = (r: Run) => {
  expect(`${r.stdout}${r.stderr}`).not.toContain("    at ")
  expect(`${r.stdout}${r.stderr}`).not.toMatch(/FiberFailure|\[cause\]|_tag/)
}

const require = createRequire(import.meta.url)
interface SqliteDb {
  prepare(sql: string): { all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>> }
  close(): void
}
type SqliteCtor = new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => SqliteDb
const Sqlite = require("better-sqlite3") as SqliteCtor

const tables = (file: string): Array<string> => {
  const db = new Sqlite(file, { readonly: true, fileMustExist: true })
  try {
    return db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all()
      .map((r) => String(r.name))
  } finally {
    db.close()
  }
}

// Each spawn loads the TypeScript sources through tsx: seconds each on a busy machine.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 })

const dir = tempDir("cli")
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const write = (name: string, text: string): string => {
  const file = path.join(dir, name)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
  return file
}

const version = (JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version

const JWT_SECRET = "cli-test-jwt-secret-0123456789abcdef"
const dbFile = path.join(dir, "db", "cli.sqlite")
/** A daemon configuration on a temporary SQLite file, with a service token and HS256 JWTs. */
const daemonConfig = write(
  "daemon.yaml",
  `server: {port: 0}
database: {adapter: sqlite, connection: {filename: ${JSON.stringify(dbFile)}}}
security:
  audit_log_path: ${JSON.stringify(path.join(dir, "audit", "audit.log"))}
  rate_limit: {enabled: false}
  auth:
    service_tokens: [{name: tests, token: "${SERVICE_TOKEN}"}]
    jwt: {enabled: true, algorithms: [HS256], secret: "${JWT_SECRET}", issuer: "https://issuer.test/", audience: dbal-cli-test, role_claim: app_role}
`
)

describe("dbal-daemon --version / --help / usage errors", () => {
  it("--version prints package.json's version", async () => {
    const r = await cli(["--version"])
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe(version)
  })

  it("--help lists the commands", async () => {
    const r = await cli(["--help"])
    expect(r.status, r.stderr).toBe(0)
    for (const c of ["serve", "migrate", "check-config", "token session", "token jwt", "--config", "--version"])
      expect(r.stdout).toContain(c)
    // eslint-disable-next-line no-control-regex -- ESC starts an ANSI colour sequence
    expect(r.stdout).not.toMatch(/\u001b\[/)
  })

  it("COMMAND --help describes the command's options", async () => {
    const r = await cli(["token", "session", "--help"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain("--user")
    expect(r.stdout).toContain("--ttl")
  })

  it("an unknown command is one line and exit code 2", async () => {
    const r = await cli(["frobnicate"])
    expect(r.status).toBe(2)
    expect(lines(r.stderr)).toEqual([
      `dbal-daemon: unknown command "frobnicate": expected serve, init, healthcheck, migrate, check-config, token or generate (see --help)`
    ])
    expect(r.stdout).toBe("")
    expectClean(r)
  })

  it("an unknown option, a missing option and a bad value are one line each and exit code 2", async () => {
    const cases = [
      ["--frobnicate"],
      ["migrate", "--frobnicate"],
      ["--config"],
      ["token", "session"],
      ["token", "jwt", "--sub", "x", "--role", "emperor"],
      ["token", "jwt", "--sub", "x", "--role", "user", "--ttl", "forever"],
      ["generate"],
      ["generate", "--out"]
    ]
    const runs = await Promise.all(cases.map((args) => cli(args)))
    for (const [i, r] of runs.entries()) {
      const args = cases[i]!
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2)
      expect(lines(r.stderr), args.join(" ")).toHaveLength(1)
      expect(r.stderr).toMatch(/^dbal-daemon: /)
      expectClean(r)
    }
    expect(runs[0]!.stderr).toBe('dbal-daemon: unknown option "--frobnicate" (see --help)\n')
    expect(runs[2]!.stderr).toBe("dbal-daemon: --config needs a value (see --help)\n")
    expect(runs[3]!.stderr).toMatch(/--user/)
    expect(runs[5]!.stderr).toMatch(/--ttl: expected a duration/)
  })
})

describe("dbal-daemon check-config", () => {
  it("accepts config/development.yaml", async () => {
    const r = await cli(["check-config"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^configuration OK: .*config\/development\.yaml$/m)
    expect(r.stdout).toMatch(/adapter: sqlite/)
    expect(r.stdout).toMatch(/entities: \d+ /)
    expect(r.stdout).toMatch(/rules: \d+ \(.*acl_rules\.yaml\)/)
    expect(r.stderr).toBe("")
  })

  it("accepts config/production.yaml with its secrets in the environment, without connecting to its database", async () => {
    // The example names /etc/dbal/acl_rules.yaml, which the daemon must be able to read at start:
    // the shipped rules file stands in for it here.
    const r = await cli(["check-config", "--config", "config/production.yaml"], {
      DBAL_DB_PASSWORD: "not-used-no-connection-is-made",
      DBAL_SERVICE_TOKEN: "production-service-token-0123456789",
      DBAL_SECURITY__ACL__RULES_FILE: path.join(root, "config", "acl_rules.yaml")
    })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^configuration OK: .*config\/production\.yaml$/m)
    expect(r.stdout).toMatch(/adapter: postgresql/)
  })

  it("reports a missing secret and an unreadable rules file of config/production.yaml", async () => {
    const r = await cli(["check-config", "--config=config/production.yaml"], { DBAL_SERVICE_TOKEN: "production-service-token-0123456789" })
    expect(r.status).toBe(1)
    const file = path.join(root, "config", "production.yaml")
    expect(lines(r.stderr)).toEqual([
      `${file}: database.connection.password: environment variable DBAL_DB_PASSWORD is not set (write \${DBAL_DB_PASSWORD:-default} for a default)`,
      "/etc/dbal/acl_rules.yaml: cannot read it (ENOENT)"
    ])
  })

  it("reports every problem of a broken configuration, entity folder and rules file, one line each with its file", async () => {
    const entity = write(
      "broken/entities/thing.yaml",
      `entity: Thing
fields:
  id: {type: uuid, primary: true, generated: true}
  Bad-Name: {type: string}
  size: {type: gigantic}
`
    )
    const rules = write(
      "broken/rules.yaml",
      `rules:
  - roles: [user, wizard]
    entities: [Thing]
    operations: [read, fly]
    colour: red
`
    )
    const config = write(
      "broken/daemon.yaml",
      `server: {port: not-a-port}
database: {adapter: sqlite, connection: {filename: db.sqlite}, pool_sise: 3}
entities: {dir: entities}
security:
  acl: {rules_file: rules.yaml}
`
    )
    const r = await cli(["check-config", `--config=${config}`])
    expect(r.status).toBe(1)
    expect(r.stdout).not.toContain("configuration OK")
    expect(lines(r.stderr)).toEqual([
      `${config}: server.port: expected number, got "not-a-port"`,
      `${config}: database.pool_sise: unknown key (check its spelling and section)`,
      `${entity}: fields.Bad-Name: field names must be snake_case identifiers (a-z, 0-9, _), at most 63 characters`,
      `${entity}: fields.size.type: expected one of uuid, string, text, email, enum, integer, bigint, decimal, float, boolean, datetime, json, string_list`,
      `${rules}: rules[0].colour: unknown key`,
      `${rules}: rules[0].roles: unknown role wizard`,
      `${rules}: rules[0].operations: unknown operation fly (create, read, update, delete, *)`
    ])
    expectClean(r)
  })

  it("checks the rules against the entities, and security.never_expose", async () => {
    const rules = write(
      "refs/rules.yaml",
      "rules:\n  - {roles: user, entities: Nothing, operations: read}\n  - {roles: user, entities: User, operations: read, read_fields: [id, shoe_size]}\n"
    )
    const config = write(
      "refs/daemon.yaml",
      "database: {adapter: sqlite, connection: {filename: db.sqlite}}\nsecurity:\n  never_expose: [User.shoeSize]\n  acl: {rules_file: rules.yaml}\n"
    )
    const r = await cli(["check-config", "-c", config])
    expect(r.status).toBe(1)
    expect(lines(r.stderr)).toEqual([
      `${config}: security.never_expose[0]: User has no field shoeSize`,
      `${rules}: rules[0].entities: unknown entity Nothing`,
      `${rules}: rules[1].read_fields: User has no field shoe_size`
    ])
  })
})

describe("dbal-daemon check-config: entities without access rules", () => {
  it("warns (stderr, exit 0) about entities that only service tokens can use, until a rule names them", async () => {
    write("open/entities/note.yaml", "entity: Note\nfields:\n  id: {type: uuid, primary: true, generated: true}\n  text: {type: text}\n")
    write("open/entities/memo.yaml", "entity: Memo\nfields:\n  id: {type: uuid, primary: true, generated: true}\n")
    write(
      "open/entities/secret.yaml",
      "entity: Secret\nacl:\n  read: {system: true}\nfields:\n  id: {type: uuid, primary: true, generated: true}\n"
    )
    const config = write("open/daemon.yaml", "database: {adapter: sqlite, connection: {filename: db.sqlite}}\nentities: {dir: entities}\n")
    const r = await cli(["check-config", `--config=${config}`])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^configuration OK/m)
    expect(lines(r.stderr)).toEqual([
      "warning: 2 entities have no access rules and can be used by service tokens only: Memo, Note (give them an acl: block, or rules in security.acl.rules_file)"
    ])
    write("open/rules.yaml", "rules:\n  - {roles: user, entities: Note, operations: read}\n")
    const withRules = write(
      "open/daemon2.yaml",
      "database: {adapter: sqlite, connection: {filename: db.sqlite}}\nentities: {dir: entities}\nsecurity:\n  acl: {rules_file: rules.yaml}\n"
    )
    const r2 = await cli(["check-config", `--config=${withRules}`])
    expect(r2.status, r2.stderr).toBe(0)
    expect(lines(r2.stderr)).toEqual([
      "warning: 1 entity has no access rules and can be used by service tokens only: Memo (give it an acl: block, or rules in security.acl.rules_file)"
    ])
  })
})

describe("dbal-daemon migrate", () => {
  it("creates the tables of a new SQLite file; a second run changes nothing", async () => {
    const first = await cli(["migrate", `--config=${daemonConfig}`])
    expect(first.status, first.stderr).toBe(0)
    expect(first.stdout).toMatch(/^migrated: .*\busers\b.*\bsessions\b/m)
    const created = tables(dbFile)
    expect(created).toEqual(expect.arrayContaining(["users", "sessions", "credentials", "workflows"]))
    const second = await cli(["migrate", `--config=${daemonConfig}`])
    expect(second.status, second.stderr).toBe(0)
    expect(tables(dbFile)).toEqual(created)
  })

  it("an unreachable database is one line and exit code 1", async () => {
    const config = write(
      "unreachable.yaml",
      "database: {adapter: postgresql, timeout: 2000, connection: {host: 127.0.0.1, port: 1, database: x, user: x, password: x}}\n"
    )
    const r = await cli(["migrate", `--config=${config}`])
    expect(r.status).toBe(1)
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^dbal-daemon: database: cannot connect/)])
    expectClean(r)
  })

  it("a bad configuration is reported as serve reports it (one line per problem, exit code 1)", async () => {
    const config = write("bad-migrate.yaml", "database: {adapter: sqlite}\n")
    const r = await cli(["migrate", `--config=${config}`])
    expect(r.status).toBe(1)
    expect(lines(r.stderr)).toEqual([
      `dbal-daemon: ${config}: database.connection.filename: expected the SQLite database file for adapter sqlite`
    ])
  })
})

describe("dbal-daemon token", () => {
  let daemon: Daemon | undefined
  let userId = ""

  beforeAll(async () => {
    // The tables (the migrate suite made them, but this suite may run alone) and one user.
    expect((await cli(["migrate", `--config=${daemonConfig}`])).status).toBe(0)
    const d = await startDaemon([`--config=${daemonConfig}`], { timeoutMs: 90_000 })
    try {
      const c = await connect(d.port, serviceAuth)
      const created = await c.call("create", ["User", { username: "cli_alice", email: "alice@example.com", role: "user" }])
      expect(created.error, JSON.stringify(created)).toBeUndefined()
      userId = (created.result as { id: string }).id
      await c.close()
    } finally {
      expect(await d.stop()).toBe(0)
    }
  })

  afterAll(async () => {
    await daemon?.stop()
  })

  const field = (stdout: string, key: string) => new RegExp(`^${key}: (\\S+)$`, "m").exec(stdout)?.[1]

  it("token session creates sessions (by username and by id) that the daemon accepts", async () => {
    const byName = await cli(["token", "session", `--config=${daemonConfig}`, "--user", "cli_alice"])
    expect(byName.status, byName.stderr).toBe(0)
    expect(field(byName.stdout, "user_id")).toBe(userId)
    const token = field(byName.stdout, "token")!
    expect(token).toMatch(/^[A-Za-z0-9_-]{32,}$/)
    const expires = Date.parse(field(byName.stdout, "expires_at")!)
    expect(Math.abs(expires - (Date.now() + 24 * 3600_000))).toBeLessThan(120_000)
    // Printed for the user, never logged (not in the audit log either).
    expect(byName.stderr).toBe("")
    expect(fs.readFileSync(path.join(dir, "audit", "audit.log"), "utf8")).not.toContain(token)

    const byId = await cli(["token", "session", "--user", userId, "--ttl", "30m", `--config=${daemonConfig}`])
    expect(byId.status, byId.stderr).toBe(0)
    expect(field(byId.stdout, "user_id")).toBe(userId)
    const second = field(byId.stdout, "token")!
    expect(second).not.toBe(token)

    daemon = await startDaemon([`--config=${daemonConfig}`], { timeoutMs: 90_000 })
    for (const t of [token, second]) {
      const c = await connect(daemon.port, { token: t, user_id: userId })
      const own = await c.call("read", ["User", userId])
      expect(own.error, JSON.stringify(own)).toBeUndefined()
      expect(own.result).toMatchObject({ id: userId, username: "cli_alice" })
      await c.close()
    }
  })

  it("token session for an unknown user is one line and exit code 1", async () => {
    const r = await cli(["token", "session", `--config=${daemonConfig}`, "--user", "nobody_here"])
    expect(r.status).toBe(1)
    expect(lines(r.stderr)).toEqual(['dbal-daemon: token session: no user with the id or username "nobody_here"'])
    expect(r.stdout).toBe("")
  })

  it("token jwt mints an HS256 JWT with the configured issuer, audience and role claim, accepted by the daemon", async () => {
    const r = await cli(["token", "jwt", `--config=${daemonConfig}`, "--sub", userId, "--role", "user", "--ttl", "10m"])
    expect(r.status, r.stderr).toBe(0)
    const token = field(r.stdout, "token")!
    const { payload, protectedHeader } = await jose.jwtVerify(token, new TextEncoder().encode(JWT_SECRET), {
      issuer: "https://issuer.test/",
      audience: "dbal-cli-test",
      algorithms: ["HS256"]
    })
    expect(protectedHeader.alg).toBe("HS256")
    expect(payload.sub).toBe(userId)
    expect(payload.app_role).toBe("user")
    expect(payload.exp! - payload.iat!).toBe(600)

    if (daemon === undefined) daemon = await startDaemon([`--config=${daemonConfig}`], { timeoutMs: 90_000 })
    const c = await connect(daemon.port, { token, user_id: userId })
    const own = await c.call("read", ["User", userId])
    expect(own.error, JSON.stringify(own)).toBeUndefined()
    expect(own.result).toMatchObject({ id: userId })
    await c.close()
  })

  it("token jwt refuses with one line when no HS secret is configured", async () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
    const key = write("jwt/key.pem", publicKey.export({ type: "spki", format: "pem" }).toString())
    const rs = write(
      "jwt/rs.yaml",
      `database: {adapter: sqlite, connection: {filename: db.sqlite}}\nsecurity:\n  auth:\n    jwt: {enabled: true, algorithms: [RS256], public_key_file: ${JSON.stringify(key)}}\n`
    )
    for (const [config, pattern] of [
      [rs, /security\.auth\.jwt\.secret: no HS\* shared secret is configured/],
      [path.join(root, "config", "development.yaml"), /security\.auth\.jwt\.enabled is false/]
    ] as const) {
      const r = await cli(["token", "jwt", `--config=${config}`, "--sub", "someone", "--role", "admin"])
      expect(r.status).toBe(1)
      expect(lines(r.stderr)).toHaveLength(1)
      expect(r.stderr).toMatch(pattern)
      expect(r.stdout).toBe("")
    }
  })
})
