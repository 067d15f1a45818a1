/**
 * security.sandbox: strict — the daemon runs under Node's permission model with the paths of
 * its configuration only. Proves: the daemon serves in the sandbox, its SQLite executor processes
 * run under the permission model with their own narrower flags, and query_timeout still kills a
 * slow statement's executor there; the sandbox's own flags refuse reads and writes outside the
 * allowed paths and worker threads, and allow child processes only on SQLite (its executors); the
 * executors' flags allow the package and the database folder and nothing else; root is refused
 * unless allowed.
 */
import { Effect } from "effect"
import { execFile, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../../layers/Config.js"
import { executorFlags, permissionFlags, sandboxFlags } from "../../src/Sandbox.js"
import { connect, root, startDaemon } from "../support/daemon.js"
import { executorSet, type ProcessInfo, running } from "../support/processes.js"
import { SERVICE_TOKEN, serviceAuth, tempDir } from "../support/services.js"
import { seedPages, slowFilter } from "../support/slowSqlite.js"

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

beforeAll(async () => {
  // Strict mode runs the build (the TypeScript loader needs a child process); `npm install` made
  // one, so this compiles only when the sources changed since. Not spawnSync: a build of a minute
  // on a loaded machine would block this worker's event loop past vitest's own timeout for talking to it.
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
    execFile(
      process.execPath,
      ["scripts/build.mjs", "--if-stale"],
      { cwd: root, encoding: "utf8", timeout: 280_000 },
      (error, _stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stderr })
    )
  )
  expect(r.code, r.stderr).toBe(0)
}, 300_000)

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

  /** An executor runs under the permission model, may load addons, and may start nothing. */
  const expectSandboxed = (e: ProcessInfo) => {
    const flags = e.argv.slice(
      1,
      e.argv.findIndex((a) => a.endsWith("SqliteExecutor.js"))
    )
    expect(flags).toContain(permissionFlags(process.versions.node)[0])
    expect(flags).toContain("--allow-addons")
    expect(flags).toContain(`--allow-fs-write=${path.join(dir, "data")}`)
    expect(flags.filter((f) => f.startsWith("--allow-fs-write="))).toHaveLength(1)
    expect(flags).not.toContain("--allow-child-process")
    expect(flags).not.toContain("--allow-worker")
  }

  it("serves requests under the permission model; its SQLite executors are sandboxed too, and query_timeout kills them", async () => {
    const config = configFor("  sandbox_allow_root: true\nperformance: {query_timeout: 2000, max_query_complexity: 100000}")
    const d = await startDaemon([`--config=${config}`])
    try {
      expect(d.output()).toMatch(/strict sandbox: running under the Node permission model/)
      const c = await connect(d.port, serviceAuth)
      const created = await c.call("create", ["User", { username: "sandboxed", email: "s@example.com" }])
      expect(created.error).toBeUndefined()
      const id = (created.result as { id: string }).id
      expect((await c.call("read", ["User", id])).result).toMatchObject({ username: "sandboxed" })
      expect(fs.statSync(path.join(dir, "audit", "audit.log")).size).toBeGreaterThan(0)
      const executors = await executorSet(d.process.pid!)
      for (const e of executors) expectSandboxed(e)
      // A count that outlasts query_timeout: 504, and the reader that ran it is killed and
      // replaced by a new one, sandboxed as well.
      expect((await c.call("create", ["PageView", { slug: "template", title: "Template", level: 1, layout: {} }])).error).toBeUndefined()
      seedPages(path.join(dir, "data", "db.sqlite"), 40_000)
      const slow = await c.call("count", ["PageView", slowFilter])
      expect(slow.error?.code, JSON.stringify(slow)).toBe(504)
      expect(executors.filter((e) => !running(e.pid)).map((e) => e.role)).toEqual(["reader"])
      const replaced = await executorSet(d.process.pid!)
      const fresh = replaced.filter((e) => !executors.some((old) => old.pid === e.pid))
      expect(fresh.map((e) => e.role)).toEqual(["reader"])
      expectSandboxed(fresh[0]!)
      expect((await c.call("read", ["User", id])).result).toMatchObject({ username: "sandboxed" })
      await c.close()
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
      const r = await run(
        `try { require("fs").writeFileSync(${JSON.stringify(path.join(dir, "outside"))}, "x"); console.log("written") } catch (e) { console.log(e.code) }`
      )
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
      expect(fs.existsSync(path.join(dir, "outside"))).toBe(false)
    })

    const spawnChild = `try { require("child_process").spawnSync("true"); console.log("spawned") } catch (e) { console.log(e.code) }`
    const startWorker = `try { const w = new (require("worker_threads").Worker)("require('worker_threads').parentPort.postMessage('up')", { eval: true }); w.once("message", (m) => { console.log(m); w.terminate() }) } catch (e) { console.log(e.code) }`
    const postgresConfig = async () => {
      const file = configFor("  sandbox_allow_root: true")
      fs.writeFileSync(
        file,
        fs
          .readFileSync(file, "utf8")
          .replace(
            "{adapter: sqlite, connection: {filename: data/db.sqlite}, auto_migrate: true}",
            "{adapter: postgresql, connection: {host: 127.0.0.1, database: x, user: x}}"
          )
      )
      const cfg = await Effect.runPromise(loadConfig(file))
      expect(cfg.database.adapter).toBe("postgresql")
      return cfg
    }

    it("allow child processes on SQLite (its statements run in executor processes)", async () => {
      expect((await run(spawnChild)).stdout.trim()).toBe("spawned")
    })

    it("refuse child processes on the other adapters", async () => {
      const r = spawnSync(process.execPath, [...sandboxFlags(await postgresConfig()), "-e", spawnChild], {
        cwd: dir,
        encoding: "utf8",
        timeout: 30_000
      })
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })

    it("refuse worker threads, on SQLite and on the other adapters", async () => {
      expect((await run(startWorker)).stdout.trim()).toBe("ERR_ACCESS_DENIED")
      const r = spawnSync(process.execPath, [...sandboxFlags(await postgresConfig()), "-e", startWorker], {
        cwd: dir,
        encoding: "utf8",
        timeout: 30_000
      })
      expect(r.stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })
  })

  describe("the SQLite executors' flags", () => {
    const configFile = configFor("  sandbox_allow_root: true")
    const run = async (code: string) => {
      const cfg = await Effect.runPromise(loadConfig(configFile))
      for (const d of ["audit", "data"]) fs.mkdirSync(path.join(dir, d), { recursive: true })
      return spawnSync(process.execPath, [...executorFlags(cfg), "-e", code], { cwd: dir, encoding: "utf8", timeout: 30_000 })
    }
    const attempt = (what: string) => `try { ${what}; console.log("done") } catch (e) { console.log(e.code) }`

    it("allow loading better-sqlite3 and writing a database in the database folder", async () => {
      const Sqlite = JSON.stringify(path.join(root, "node_modules", "better-sqlite3"))
      const file = JSON.stringify(path.join(dir, "data", "probe.sqlite"))
      const r = await run(
        attempt(
          `const db = new (require(${Sqlite}))(${file}); db.pragma("journal_mode = WAL"); db.exec("CREATE TABLE IF NOT EXISTS t (x)"); db.close()`
        )
      )
      expect(r.stdout.trim(), r.stderr).toBe("done")
    })

    it("refuse reading the configuration or anything outside the package and the database folder", async () => {
      expect((await run(attempt(`require("fs").readFileSync(${JSON.stringify(configFile)})`))).stdout.trim()).toBe("ERR_ACCESS_DENIED")
      expect((await run(attempt(`require("fs").readFileSync("/etc/passwd")`))).stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })

    it("refuse writing outside the database folder (the audit folder included)", async () => {
      const probe = path.join(dir, "audit", "executor-probe")
      expect((await run(attempt(`require("fs").writeFileSync(${JSON.stringify(probe)}, "x")`))).stdout.trim()).toBe("ERR_ACCESS_DENIED")
      expect(fs.existsSync(probe)).toBe(false)
    })

    it("refuse child processes and worker threads", async () => {
      expect((await run(attempt(`require("child_process").spawnSync("true")`))).stdout.trim()).toBe("ERR_ACCESS_DENIED")
      expect((await run(attempt(`new (require("worker_threads").Worker)("1", { eval: true })`))).stdout.trim()).toBe("ERR_ACCESS_DENIED")
    })
  })
})
