/**
 * Encrypted credential storage on systemd, as far as this machine allows without running the
 * unit: the unit loads each credential the shipped deploy/systemd/config.yaml names (relative
 * password_file / token_file = credential names), and the real daemon started with that very file
 * and $CREDENTIALS_DIRECTORY set (as systemd sets it after decrypting LoadCredentialEncrypted=)
 * reads its secrets from that folder: the token works, another does not, and a missing credential
 * stops the start with one line naming the key. Also the resolution rule itself (loadConfig).
 */
import { Effect, Exit, Redacted } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { loadConfig } from "../../layers/Config.js"
import { connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, PG, type TestDatabase, tempDir } from "../support/services.js"

const unitText = fs.readFileSync(path.join(root, "deploy", "systemd", "dbal-daemon.service"), "utf8")
const systemdConfig = path.join(root, "deploy", "systemd", "config.yaml")
const shipped = YAML.parse(fs.readFileSync(systemdConfig, "utf8")) as any

/** credential name -> encrypted file, from LoadCredentialEncrypted= lines. */
const loaded = new Map([...unitText.matchAll(/^LoadCredentialEncrypted=([^:\s]+):(\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const))

describe("deploy/systemd: credentials", () => {
  it("the unit loads, encrypted, every credential the shipped configuration reads; no secret in its environment", () => {
    const named = [shipped.database.connection.password_file, ...shipped.security.auth.service_tokens.map((t: any) => t.token_file)]
    expect(named).toEqual(["db-password", "service-token"])
    for (const n of named) {
      expect(path.isAbsolute(n)).toBe(false)
      expect(loaded.get(n), `LoadCredentialEncrypted=${n}:...`).toMatch(/^\/etc\/dbal\/credentials\/.+\.cred$/)
    }
    expect(shipped.database.connection.password).toBeUndefined()
    expect(shipped.security.auth.service_tokens.every((t: any) => t.token === undefined)).toBe(true)
    expect(unitText).not.toMatch(/^Environment=.*(PASSWORD|TOKEN|SECRET)/m)
  })
})

describe("credential files: where relative *_file paths point", () => {
  const dir = tempDir("credpaths")
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  const creds = path.join(dir, "creds")
  fs.mkdirSync(creds)
  const file = path.join(dir, "config.yaml")
  fs.writeFileSync(
    file,
    "database: {adapter: sqlite, connection: {filename: data/x.sqlite}}\nsecurity: {auth: {service_tokens: [{name: app, token_file: service-token}]}}\n"
  )
  const load = (env: Record<string, string>) => Effect.runPromiseExit(loadConfig(file, env))

  it("under $CREDENTIALS_DIRECTORY when it is set, else next to the configuration; other paths always next to it", async () => {
    fs.writeFileSync(path.join(creds, "service-token"), "from-the-credentials-dir-000\n")
    fs.writeFileSync(path.join(dir, "service-token"), "from-the-config-folder-00000\n")
    const withCreds = await load({ CREDENTIALS_DIRECTORY: creds })
    const without = await load({})
    if (!Exit.isSuccess(withCreds) || !Exit.isSuccess(without)) throw new Error("expected both to load")
    expect(Redacted.value(withCreds.value.security.auth.service_tokens[0]!.token)).toBe("from-the-credentials-dir-000")
    expect(Redacted.value(without.value.security.auth.service_tokens[0]!.token)).toBe("from-the-config-folder-00000")
    expect(withCreds.value.database.connection.filename).toBe(path.join(dir, "data", "x.sqlite"))
  })

  it("a missing credential is one problem naming the key; token and token_file together are refused", async () => {
    const missing = await load({ CREDENTIALS_DIRECTORY: path.join(dir, "nowhere") })
    expect(Exit.isFailure(missing)).toBe(true)
    expect(String(Exit.isFailure(missing) ? missing.cause : "")).toContain(
      "security.auth.service_tokens[0].token_file: cannot read it (ENOENT)"
    )
    const both = path.join(dir, "both.yaml")
    fs.writeFileSync(
      both,
      "database: {adapter: sqlite, connection: {filename: x.sqlite}}\nsecurity: {auth: {service_tokens: [{name: app, token: inline-token-0000000000, token_file: service-token}]}}\n"
    )
    const r = await Effect.runPromiseExit(loadConfig(both, {}))
    expect(String(Exit.isFailure(r) ? r.cause : "loaded")).toContain("set either token or token_file, not both")
  })
})

describe("the daemon with deploy/systemd/config.yaml and its secrets in $CREDENTIALS_DIRECTORY", () => {
  const dir = tempDir("credentials")
  const creds = path.join(dir, "credentials")
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  afterAll(async () => {
    await daemon?.stop()
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** The shipped file as is; only what points at this host's PostgreSQL and folders is overridden. */
  const env = (database: string, credentials: string): Record<string, string> => ({
    CREDENTIALS_DIRECTORY: credentials,
    DBAL_SERVER__PORT: "0",
    DBAL_DATABASE__CONNECTION__HOST: PG.host,
    DBAL_DATABASE__CONNECTION__PORT: String(PG.port),
    DBAL_DATABASE__CONNECTION__USER: PG.user,
    DBAL_DATABASE__CONNECTION__DATABASE: database,
    DBAL_DATABASE__AUTO_MIGRATE: "true",
    DBAL_SECURITY__AUDIT_LOG_PATH: path.join(dir, "audit.log"),
    DBAL_SECURITY__ACL__RULES_FILE: path.join(root, "config", "acl_rules.yaml")
  })

  it("reads the service token (and the password) from the credentials folder; the token works, another does not", async () => {
    db = await createDatabase("postgresql")
    const database = (db.databaseConfig as any).connection.database as string
    fs.mkdirSync(creds, { mode: 0o700 })
    const token = "credential-token-0123456789abcdef"
    // As systemd leaves them: read-only files of the service's user.
    fs.writeFileSync(path.join(creds, "service-token"), `${token}\n`, { mode: 0o400 })
    fs.writeFileSync(path.join(creds, "db-password"), "unused-with-trust-auth\n", { mode: 0o400 })
    daemon = await startDaemon(["serve", `--config=${systemdConfig}`], { env: env(database, creds), timeoutMs: 120_000 })
    const client = await connect(daemon.port, { token, user_id: "backend" })
    const created = await client.call("create", ["User", { username: "cred_user", email: "cred@example.com", role: "user" }])
    expect(created.error, JSON.stringify(created)).toBeUndefined()
    const wrong = await client.call("list", ["User", {}], { token: "credential-token-0123456789abcdeX", user_id: "backend" })
    expect(wrong.error?.code).toBe(401)
    await client.close()
    expect(daemon.output()).not.toContain(token)
  }, 300_000)

  it("without the credential the start fails with one line naming the key", async () => {
    const empty = path.join(dir, "empty")
    fs.mkdirSync(empty)
    fs.writeFileSync(path.join(empty, "db-password"), "x\n")
    await expect(startDaemon(["serve", `--config=${systemdConfig}`], { env: env("unused", empty), timeoutMs: 120_000 })).rejects.toThrow(
      /security\.auth\.service_tokens\[0\]\.token_file: cannot read it \(ENOENT\)/
    )
  }, 300_000)
})
