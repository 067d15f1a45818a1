/**
 * Database passwords (from ${ENV} or a password_file) and service tokens never appear in the
 * daemon's output, /health, /metrics or error answers. PostgreSQL here trusts local connections,
 * so the password is accepted and ignored: what is tested is where it could leak.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type Daemon, startDaemon } from "../support/daemon.js"
import {
  createDatabase,
  daemonConfig,
  SERVICE_TOKEN,
  serviceAuth,
  skipDialect,
  type TestDatabase,
  tempDir,
  writeConfig
} from "../support/services.js"

const PASSWORD_ENV = "pw-from-env-7f3a9c1e5b"
const PASSWORD_FILE = "pw-from-file-2d8e4b6a0c"

for (const source of ["env", "file"] as const) {
  describe.skipIf(await skipDialect("postgresql"))(`database password from ${source}`, () => {
    let db: TestDatabase
    let daemon: Daemon
    const dir = tempDir("secrets")

    beforeAll(async () => {
      db = await createDatabase("postgresql")
      const base = daemonConfig(db)
      const connection = { ...(base.database as { connection: object }).connection }
      if (source === "file") fs.writeFileSync(path.join(dir, "db-password"), `${PASSWORD_FILE}\n`, { mode: 0o600 })
      const config = {
        ...base,
        database: {
          ...(base.database as object),
          connection: { ...connection, ...(source === "env" ? { password: "${DBAL_TEST_DB_PASSWORD}" } : { password_file: "db-password" }) }
        },
        logging: { level: "debug" }
      }
      daemon = await startDaemon([`--config=${writeConfig(config, dir)}`], { env: { DBAL_TEST_DB_PASSWORD: PASSWORD_ENV } })
    })
    afterAll(async () => {
      await daemon?.stop()
      await db?.drop()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it("appears in no log line, probe, metric or error answer", async () => {
      const c = await connect(daemon.port, serviceAuth)
      const answers = [
        await c.call("create", ["User", { username: "ab" }]),
        await c.call("read", ["User", "not-a-uuid"]),
        await c.call("list", ["Nope"]),
        await c.call("count", ["User"], { token: "wrong-token-0123456789", user_id: "x" })
      ]
      await c.close()
      const bodies = await Promise.all(
        ["/health", "/readyz", "/livez", "/metrics"].map(async (p) => (await fetch(`http://127.0.0.1:${daemon.port}${p}`)).text())
      )
      const seen = [JSON.stringify(answers), ...bodies, daemon.output()].join("\n")
      expect(seen).toContain('"code":422')
      expect(seen).toContain("dbal_requests_total")
      for (const s of [PASSWORD_ENV, PASSWORD_FILE, SERVICE_TOKEN]) expect(seen).not.toContain(s)
    })
  })
}
