/**
 * A PRIVATE PostgreSQL cluster for the tests that stop and start the database: initdb into a temp
 * folder owned by the `postgres` system user, its own port (a free one) and its own socket folder,
 * so that stopping it never touches the shared server on 5432 that the other suites use.
 *
 * Needs PostgreSQL 15's server binaries (DBAL_TEST_PG_BIN, default /usr/lib/postgresql/15/bin),
 * the `postgres` system user and root (the commands run as `runuser -u postgres`).
 *
 * Start and stop are asynchronous (the test process keeps serving its own load generators while
 * pg_ctl waits). `destroy` stops the cluster (immediate) and removes its folder; it is idempotent
 * and also runs when the test process exits, so a failed or interrupted test leaves nothing behind.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { requireServices } from "./services.js"

export const PG_BIN = process.env.DBAL_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin"

export type StopMode = "smart" | "fast" | "immediate"

/** Why a private cluster cannot be made here, or undefined when it can. */
export const pgClusterUnavailable = (): string | undefined => {
  if (!fs.existsSync(path.join(PG_BIN, "initdb")) || !fs.existsSync(path.join(PG_BIN, "pg_ctl"))) return `no initdb/pg_ctl in ${PG_BIN}`
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" })
  } catch {
    return "no postgres system user to run initdb as"
  }
  if (process.getuid?.() !== 0) return "not running as root (cannot run initdb as the postgres user)"
  return undefined
}

/**
 * For `describe.skipIf`: true when no private cluster can be made (with a line saying why);
 * under DBAL_REQUIRE_SERVICES=1 that is an error instead.
 */
export const skipPgCluster = (what: string): boolean => {
  const why = pgClusterUnavailable()
  if (why === undefined) return false
  if (requireServices) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${why}`)
  console.warn(`skipping ${what}: ${why}`)
  return true
}

export interface PgCluster {
  /** The cluster's folder (data/, server.log, the socket). */
  readonly dir: string
  readonly host: string
  readonly port: number
  /** pg_ctl start -w: resolves once the server accepts connections. */
  readonly start: () => Promise<void>
  /** pg_ctl stop -m mode -w: resolves once the server is down. */
  readonly stop: (mode: StopMode) => Promise<void>
  /** Whether the server is running (its postmaster.pid exists). */
  readonly running: () => boolean
  /** A new (not yet connected) client on `database` as the superuser `postgres`. */
  readonly client: (database: string) => pg.Client
  /** Runs one statement on `database` over a fresh connection. */
  readonly query: <R extends Record<string, unknown> = Record<string, unknown>>(
    database: string,
    sql: string,
    params?: ReadonlyArray<unknown>
  ) => Promise<Array<R>>
  /** The server log (for failure messages). */
  readonly log: () => string
  /** Stops the server if it runs and removes the folder. Idempotent; never throws. */
  readonly destroy: () => Promise<void>
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const asPostgresArgs = (cmd: string, args: ReadonlyArray<string>): Array<string> => [
  "-u",
  "postgres",
  "--",
  path.join(PG_BIN, cmd),
  ...args
]

const asPostgres = (cmd: string, args: ReadonlyArray<string>, timeoutMs = 60_000): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile("runuser", asPostgresArgs(cmd, args), { timeout: timeoutMs }, (err, stdout, stderr) =>
      err === null
        ? resolve(String(stdout))
        : reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${String(stdout)}${String(stderr)}`))
    )
  )

const asPostgresSync = (cmd: string, args: ReadonlyArray<string>): void => {
  execFileSync("runuser", asPostgresArgs(cmd, args), { stdio: "ignore", timeout: 30_000 })
}

/**
 * Makes, starts and returns a private cluster. `maxConnections` defaults to 30. With
 * `passwordLogins`, TCP logins of every role but `postgres` must give their password
 * (scram-sha-256), as on a production server; `postgres` and the socket stay trusted.
 */
export const createPgCluster = async (
  opts: { prefix?: string; maxConnections?: number; passwordLogins?: boolean } = {}
): Promise<PgCluster> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dbal-${opts.prefix ?? "pgcluster"}-`))
  const data = path.join(dir, "data")
  const logFile = path.join(dir, "server.log")
  let port = 0
  let destroyed = false

  const running = () => fs.existsSync(path.join(data, "postmaster.pid"))

  // Last resort when the process exits without afterAll (a crash, an interrupted run): synchronous.
  const onExit = () => {
    if (destroyed) return
    destroyed = true
    try {
      if (running()) asPostgresSync("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "20", "stop"])
    } catch {
      // not running
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  process.once("exit", onExit)

  const destroy = async () => {
    if (destroyed) return
    destroyed = true
    process.removeListener("exit", onExit)
    try {
      if (running()) await asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "30", "stop"])
    } catch {
      // not running
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }

  const start = async () => {
    await asPostgres("pg_ctl", [
      "-D",
      data,
      "-l",
      logFile,
      "-w",
      "-t",
      "30",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=${opts.maxConnections ?? 30} -c fsync=off`,
      "start"
    ])
  }
  const stop = async (mode: StopMode) => {
    await asPostgres("pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "30", "stop"])
  }
  const client = (database: string) => new pg.Client({ host: "127.0.0.1", port, user: "postgres", database, connectionTimeoutMillis: 5000 })
  const query = async <R extends Record<string, unknown>>(
    database: string,
    sql: string,
    params: ReadonlyArray<unknown> = []
  ): Promise<Array<R>> => {
    const c = client(database)
    await c.connect()
    try {
      return (await c.query<R>(sql, [...params])).rows
    } finally {
      await c.end()
    }
  }
  const log = () => {
    try {
      return fs.readFileSync(logFile, "utf8")
    } catch {
      return ""
    }
  }

  try {
    fs.chmodSync(dir, 0o755)
    execFileSync("chown", ["postgres:postgres", dir])
    port = await freePort()
    await asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
    if (opts.passwordLogins === true) {
      // Written as root into the postgres-owned file: its owner and mode stay.
      fs.writeFileSync(
        path.join(data, "pg_hba.conf"),
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
      )
    }
    await start()
  } catch (e) {
    await destroy()
    throw e
  }
  return { dir, host: "127.0.0.1", port, start, stop, running, client, query, log, destroy }
}
