/**
 * security.sandbox: strict — the daemon runs under Node's permission model with the paths of
 * its configuration only. Proves: the daemon serves in the sandbox; the sandbox's own flags
 * refuse reads and writes outside the allowed paths and child processes, and allow worker threads
 * only on SQLite (its statements run on them); root is refused unless allowed.
 */
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../../layers/Config.js"
import { permissionFlags, sandboxFlags } from "../../src/Sandbox.js"
import { connect, root, startDaemon } from "../support/daemon.js"
import { SERVICE_TOKEN, serviceAuth, tempDir } from "../support/services.js"

const dir = tempDir("sandbox")
const configFor = (extra: string) => {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`)
  fs.writeFileSync(
    file,
    `server: {port: 0}
database: {adapter: sqlite, connection: {filename: data/db.sqlite}, auto_migrate: true}
security:
  sandbox: strict
  audit_log_path: audit/audit.log
  rate_limit: {enabled: false}
  auth: {service_tokens: [{name: tests, token: "${SERVICE_TOKEN}"}]}
${extra}`
  )
  return file
}

beforeAll(() => {
  // Strict mode runs the build (the TypeScript loader needs a child process); `npm install` made
  // one, so this compiles only when the sources changed since.
  const r = spawnSync(process.execPath, ["scripts/build.mjs", "--if-stale"], { cwd: root, encoding: "utf8", timeout: 300_000 })
  expect(r.status, r.stderr).toBe(0)
}, 150_000)

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("permission flag per Node version", () => {
  it("uses the flag each Node line understands", () => {
    expect(permissionFlags("20.20.2")).toEqual(["--experimental-permission"])
    expect(permissionFlags("22.12.0")).toEqual(["--experimental-permission"])
    expect(permissionFlags("22.13.0")).toEqual(["--permission"])
    expect(permissionFlags("24.11.1")).toEqual(["--permission"])
    expect(permissionFlags("26.1.0")).toEqual(["--permission", "--allow-net"])
  })
})

describe("strict sandbox", () => {
  it("refuses to run as root unless allowed", () => {
    if (process.getuid?.() !== 0) return
    const r = spawnSync(process.execPath, [path.join(root, "bin", "dbal-daemon.mjs"), `--config=${configFor("")}`], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000
    })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/refusing to run as root in strict mode/)
    expect(r.stdout).not.toMatch(/listening/)
  })

  it("serves requests under the permission model", async () => {
    const d = await startDaemon([`--config=${configFor("  sandbox_allow_root: true")}`])
    try {
      expect(d.output()).toMatch(/strict sandbox: running under the Node permission model/)
      const c = await connect(d.port, serviceAuth)
      const created = await c.call("create", ["User", { username: "sandboxed", email: "s@example.com" }])
      expect(created.error).toBeUndefined()
      const id = (created.result as { id: string }).id
      expect((await c.call("read", ["User", id])).result).toMatchObject({ username: "sandboxed" })
      await c.close()
      expect(fs.statSync(path.join(dir, "audit", "audit.log")).size).toBeGreaterThan(0)
    } finally {
      expect(await d.stop("SIGTERM")).toBe(0)
    }
  })

  describe("the sandbox's flags", () => {
    const configFile = configFor("  sandbox_allow_root: true")
    const run = async (code: string) => {
      const cfg = await Effect.runPromise(loadConfig(configFile))
      // The daemon's launcher creates the writable folders before it starts the sandbox.
      for (const d of ["audit", "data"]) fs.mkdirSync(path.join(dir, d), { recursive: true })
      return spawnSync(process.execPath, [...sandboxFlags(cfg), "-e", code], { cwd: dir, encoding: "utf8", timeout: 30_000 })
    }

    it("allow reading the configuration and writing the audit and database folders", async () => {
      const r = await run(
        `const fs = require("fs"); fs.readFileSync(${JSON.stringify(configFile)}); fs.writeFileSync(${JSON.stringify(path.join(dir, "audit", "probe"))}, "x"); fs.writeFileSync(${JSON.stringify(path.join(dir, "data", "probe"))}, "x"); console.log("ok")`
      )
      expect(r.stdout.trim()).toBe("ok")
    })

    it("refuse a read outside the allowed paths", async () => {
      const r = await run(`try { require("fs").readFileSync("/etc/passwd"); console.log("read") } catch (e) { console.log(e.code) }`)
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })

    it("refuse a write outside the allowed paths", async () => {
      const r = await run(`try { require("fs").writeFileSync(${JSON.stringify(path.join(dir, "outside"))}, "x"); console.log("written") } catch (e) { console.log(e.code) }`)
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
      expect(fs.existsSync(path.join(dir, "outside"))).toBe(false)
    })

    it("refuse child processes", async () => {
      const child = await run(`try { require("child_process").spawnSync("true"); console.log("spawned") } catch (e) { console.log(e.code) }`)
      expect(child.stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })

    const startWorker = `try { const w = new (require("worker_threads").Worker)("require('worker_threads').parentPort.postMessage('up')", { eval: true }); w.once("message", (m) => { console.log(m); w.terminate() }) } catch (e) { console.log(e.code) }`

    it("allow worker threads on SQLite (its statements run on them)", async () => {
      const worker = await run(startWorker)
      expect(worker.stdout.trim()).toBe("up")
    })

    it("refuse worker threads on the other adapters", async () => {
      const file = configFor("  sandbox_allow_root: true")
      fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("{adapter: sqlite, connection: {filename: data/db.sqlite}, auto_migrate: true}", "{adapter: postgresql, connection: {host: 127.0.0.1, database: x, user: x}}"))
      const cfg = await Effect.runPromise(loadConfig(file))
      expect(cfg.database.adapter).toBe("postgresql")
      const r = spawnSync(process.execPath, [...sandboxFlags(cfg), "-e", startWorker], { cwd: dir, encoding: "utf8", timeout: 30_000 })
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })
  })
})
