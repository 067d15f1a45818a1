/**
 * The command line's operations side, run as users run it (`node bin/dbal-daemon.mjs ...`):
 *
 * - `init` writes a starter configuration into the current folder: the config (SQLite, every
 *   path relative to it) and a generated service token in a 0600 file; the daemon starts with the
 *   written configuration from another working directory, and the token works; a second `init`
 *   overwrites nothing.
 * - `serve --host --port` win over the configuration (the port the daemon listens on, the host
 *   it binds); a bad --port is a usage error.
 * - `healthcheck` follows the configured port (the Dockerfile's HEALTHCHECK runs it).
 * - `--help` lists only options that mean something: not @effect/cli's --wizard, --completions,
 *   --log-level, which are refused as unknown.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { connect, type Daemon, health, root, startDaemon } from "../support/daemon.js"
import { tempDir } from "../support/services.js"

interface Run {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The environment without DBAL_ overrides (a developer's must not change what is tested). */
const cleanEnv = (): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith("DBAL_") && k !== "CREDENTIALS_DIRECTORY") out[k] = v
  return out
}

const cli = (args: ReadonlyArray<string>, cwd = root): Promise<Run> =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(root, "bin", "dbal-daemon.mjs"), ...args],
      { cwd, env: cleanEnv(), encoding: "utf8", timeout: 180_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== "number")
          return reject(new Error(`dbal-daemon ${args.join(" ")}: ${error.message}\n${stderr}`))
        resolve({ status: error === null ? 0 : (error.code as number), stdout, stderr })
      }
    )
  })

const daemons: Array<Daemon> = []
afterAll(async () => {
  for (const d of daemons) await d.stop()
})

describe("dbal-daemon init", () => {
  const dir = tempDir("init")
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("writes dbal-daemon.yaml and a 0600 service-token into the current folder; the daemon starts with it and the token works", async () => {
    const r = await cli(["init"], dir)
    expect(r.status, r.stderr).toBe(0)
    const configFile = path.join(dir, "dbal-daemon.yaml")
    const tokenFile = path.join(dir, "service-token")
    expect(r.stdout).toContain(configFile)
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600)
    const token = fs.readFileSync(tokenFile, "utf8").trim()
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    // The token is in its file only: not in the configuration, not on the terminal.
    expect(fs.readFileSync(configFile, "utf8")).not.toContain(token)
    expect(r.stdout).not.toContain(token)

    const cfg = YAML.parse(fs.readFileSync(configFile, "utf8")) as any
    expect(cfg.database.adapter).toBe("sqlite")
    for (const p of [cfg.database.connection.filename, cfg.security.audit_log_path, cfg.security.auth.service_tokens[0].token_file]) {
      expect(path.isAbsolute(p), p).toBe(false)
    }

    // Started from the repository (another working directory): the paths follow the file.
    const daemon = await startDaemon(["serve", `--config=${configFile}`, "--port=0"], { timeoutMs: 120_000 })
    daemons.push(daemon)
    const client = await connect(daemon.port, { token, user_id: "app" })
    const created = await client.call("create", ["User", { username: "init_user", email: "init@example.com", role: "user" }])
    expect(created.error, JSON.stringify(created)).toBeUndefined()
    await client.close()
    const wrong = await connect(daemon.port).then(async (c) => {
      const a = await c.call("list", ["User", {}], { token: `${token.slice(0, -1)}x`, user_id: "app" })
      await c.close()
      return a
    })
    expect(wrong.error?.code).toBe(401)
    expect(fs.existsSync(path.join(dir, "data", "dbal.sqlite"))).toBe(true)
    expect(fs.readFileSync(path.join(dir, "logs", "audit.log"), "utf8")).toContain('"operation":"create"')
  }, 300_000)

  it("overwrites nothing: a second init fails with one line per existing file and leaves them as they were", async () => {
    const before = fs.readFileSync(path.join(dir, "service-token"), "utf8")
    const r = await cli(["init"], dir)
    expect(r.status).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(2)
    expect(r.stderr).toContain("already exists")
    expect(fs.readFileSync(path.join(dir, "service-token"), "utf8")).toBe(before)
  })
})

describe("dbal-daemon serve --host --port", () => {
  const dir = tempDir("serve-flags")
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  /** A port nobody listens on now. */
  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const s = net.createServer()
      s.once("error", reject)
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as net.AddressInfo).port
        s.close(() => resolve(port))
      })
    })

  it("listens on the given host and port instead of the configuration's; healthcheck follows the configured port", async () => {
    expect((await cli(["init"], dir)).status).toBe(0)
    const configFile = path.join(dir, "dbal-daemon.yaml")
    const port = await freePort()
    const daemon = await startDaemon(["serve", `--config=${configFile}`, "--host", "127.0.0.1", `--port=${port}`], { timeoutMs: 120_000 })
    daemons.push(daemon)
    expect(daemon.port).toBe(port)
    expect((await health(port)).status).toBe(200)
    expect(daemon.output()).toContain(`ws://127.0.0.1:${port}`)

    // healthcheck checks the port its configuration names: the daemon's port, healthy; a port
    // nobody listens on, not (one line naming it, exit 1).
    const at = (p: number) => {
      const file = path.join(dir, `at-${p}.yaml`)
      fs.writeFileSync(file, fs.readFileSync(configFile, "utf8").replace("port: 50051", `port: ${p}`))
      return cli(["healthcheck", `--config=${file}`])
    }
    const ok = await at(port)
    expect(ok.status, ok.stderr).toBe(0)
    const elsewhere = await freePort()
    const down = await at(elsewhere)
    expect(down.status).toBe(1)
    expect(down.stderr).toContain(`127.0.0.1:${elsewhere}`)
  }, 300_000)

  it("a port that is not a port is a usage error (exit 2, one line)", async () => {
    const r = await cli(["serve", `--config=${path.join(dir, "dbal-daemon.yaml")}`, "--port=70000"])
    expect(r.status).toBe(2)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/--port/)
  })
})

describe("dbal-daemon --help", () => {
  it("lists the commands and options that mean something, not the parser's built-ins", async () => {
    const r = await cli(["--help"])
    expect(r.status, r.stderr).toBe(0)
    for (const c of ["serve", "init", "healthcheck", "migrate", "check-config", "--config", "--host", "--port"])
      expect(r.stdout).toContain(c)
    for (const builtIn of ["--wizard", "--completions", "--log-level"]) expect(r.stdout).not.toContain(builtIn)
    const serve = await cli(["serve", "--help"])
    expect(serve.stdout).toContain("--host")
    expect(serve.stdout).toContain("--port")
    expect(serve.stdout).not.toContain("--wizard")
  }, 120_000)

  it("refuses the parser's built-ins as unknown options (exit 2)", async () => {
    for (const args of [["--wizard"], ["--completions", "bash"], ["serve", "--log-level=debug"]]) {
      const r = await cli(args)
      expect(r.status, args.join(" ")).toBe(2)
      expect(r.stderr).toBe(`dbal-daemon: unknown option "${args.find((a) => a.startsWith("--"))!.split("=")[0]}" (see --help)\n`)
    }
  }, 120_000)
})
