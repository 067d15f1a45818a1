/**
 * `security.sandbox: strict`: the daemon runs under Node's permission model. Reads are limited to
 * the application, configuration, entity, rules, certificate and key paths; writes to the audit
 * folder and the SQLite file's folder; no worker threads; child processes only for SQLite (its
 * statements run in executor processes, layers/db/Sqlite.ts), none for the other adapters. Each
 * executor is started with its own flags (`executorFlags`), narrower than the daemon's: the
 * package and the database folder, nothing else. The process that reads the configuration
 * starts the sandboxed daemon as its only child (running the build of `npm run build`, since the
 * TypeScript loader itself needs a child process) and relays signals and the exit code. As root
 * it refuses unless `security.sandbox_allow_root: true`.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { DaemonConfig } from "./Config.js"
import { packageRoot } from "./paths.js"

export const isSandboxed = (): boolean => typeof process.permission?.has === "function"

const unique = (paths: ReadonlyArray<string | undefined>) => [...new Set(paths.filter((p): p is string => p !== undefined))]

/** Paths the daemon must read and write for this configuration. */
export const sandboxPaths = (cfg: DaemonConfig): { read: Array<string>; write: Array<string> } => {
  const c = cfg.database.connection
  const sqliteDir =
    cfg.database.adapter === "sqlite" && c.filename !== undefined && c.filename !== ":memory:" ? path.dirname(c.filename) : undefined
  const auditDir =
    cfg.security.audit_log && cfg.security.audit_log_path !== undefined ? path.dirname(cfg.security.audit_log_path) : undefined
  const tls = cfg.server.tls
  const jwt = cfg.security.auth.jwt
  const write = unique([auditDir, sqliteDir])
  const read = unique([
    packageRoot,
    cfg.sourcePath,
    cfg.entitiesDir,
    cfg.prismaSchema,
    cfg.security.acl.rules_file,
    tls.enabled ? tls.cert_file : undefined,
    tls.enabled ? tls.key_file : undefined,
    tls.enabled ? tls.ca_file : undefined,
    jwt.enabled ? jwt.public_key_file : undefined,
    jwt.enabled ? jwt.jwks_file : undefined,
    c.password_file === undefined ? undefined : path.resolve(path.dirname(cfg.sourcePath), c.password_file),
    ...write
  ])
  return { read, write }
}

/**
 * The flag that turns the permission model on: `--experimental-permission` up to Node 22.12,
 * `--permission` from 22.13 (the old name was removed later). From Node 25 the model also
 * restricts the network, which the daemon needs (its port, the database, Redis).
 */
export const permissionFlags = (nodeVersion: string): Array<string> => {
  const [major = 0, minor = 0] = nodeVersion.split(".").map(Number)
  const stable = major > 22 || (major === 22 && minor >= 13)
  return [stable ? "--permission" : "--experimental-permission", ...(major >= 25 ? ["--allow-net"] : [])]
}

/** The node flags of the sandbox (one flag per path: Node 20 takes no lists). */
export const sandboxFlags = (cfg: DaemonConfig): Array<string> => {
  const { read, write } = sandboxPaths(cfg)
  return [
    ...permissionFlags(process.versions.node),
    "--no-warnings=ExperimentalWarning",
    // Native addons: better-sqlite3 (loaded by the SQLite executors, which get the flag too) and
    // the optional native parts of dependencies.
    "--allow-addons",
    // SQLite statements run in executor processes, started with executorFlags.
    ...(cfg.database.adapter === "sqlite" ? ["--allow-child-process"] : []),
    ...read.map((p) => `--allow-fs-read=${p}`),
    ...write.map((p) => `--allow-fs-write=${p}`)
  ]
}

/**
 * The node flags of a SQLite executor process under the sandbox: it loads its script and
 * better-sqlite3 from the package, reads and writes the database's folder (the file, its WAL and
 * shared-memory files), and may start no process and no thread.
 */
export const executorFlags = (cfg: DaemonConfig): Array<string> => {
  const c = cfg.database.connection
  const dir = c.filename !== undefined && c.filename !== ":memory:" ? path.dirname(c.filename) : undefined
  return [
    ...permissionFlags(process.versions.node),
    "--no-warnings=ExperimentalWarning",
    "--allow-addons",
    `--allow-fs-read=${packageRoot}`,
    ...(dir === undefined ? [] : [`--allow-fs-read=${dir}`, `--allow-fs-write=${dir}`])
  ]
}

export const compiledEntry = path.join(packageRoot, "dist", "app", "main.js")

/** Why the sandbox cannot start, or undefined. */
export const sandboxProblem = (cfg: DaemonConfig): string | undefined => {
  if (process.getuid?.() === 0 && !cfg.security.sandbox_allow_root) {
    return "security.sandbox: refusing to run as root in strict mode (run as an unprivileged user, or set security.sandbox_allow_root: true)"
  }
  if (!fs.existsSync(compiledEntry)) return "security.sandbox: strict mode runs the build: run `npm run build` first"
  return undefined
}

/** Starts the sandboxed daemon as a child process; resolves with its exit code. */
export const runSandboxed = (cfg: DaemonConfig, argv: ReadonlyArray<string>): Promise<number> =>
  new Promise((resolve) => {
    for (const p of sandboxPaths(cfg).write) fs.mkdirSync(p, { recursive: true, mode: 0o700 })
    const child = spawn(process.execPath, [...sandboxFlags(cfg), path.join(packageRoot, "bin", "dbal-daemon.mjs"), ...argv], {
      stdio: "inherit",
      env: { ...process.env, DBAL_COMPILED: "1" }
    })
    const relay = (signal: NodeJS.Signals) => () => child.kill(signal)
    const signals: ReadonlyArray<NodeJS.Signals> = ["SIGTERM", "SIGINT", "SIGHUP"]
    const handlers = signals.map((s) => [s, relay(s)] as const)
    for (const [s, h] of handlers) process.on(s, h)
    child.once("exit", (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h)
      resolve(code ?? (signal === null ? 1 : 128 + 15))
    })
  })
