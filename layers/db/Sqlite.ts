/**
 * SQLite adapter (loaded only when database.adapter is sqlite): an @effect/sql SqlClient whose
 * statements run in executor processes (layers/db/SqliteExecutor.js, one connection each), never
 * on the thread that serves the connections. better-sqlite3 is synchronous: on the event loop one
 * slow statement stalled every client.
 *
 * - One writer: every statement that writes, and every statement of a transaction
 *   (`sql.withTransaction` holds the writer for its whole length, so nothing else interleaves).
 *   Statements outside transactions take it one at a time.
 * - `connection.readers` readers (WAL: readers see the last commit and never block the writer):
 *   statements outside transactions that only read. A statement's text is first sent to a reader,
 *   which refuses what does not only read; the writer then runs it, and that text goes straight to
 *   the writer from then on.
 * - `:memory:`: one executor for everything. A memory database belongs to one connection, so it
 *   cannot be shared, and it lives as long as that process.
 *
 * Processes, not worker threads: a statement whose request is interrupted (query_timeout, 504, or
 * the caller went away) cannot be stopped inside SQLite (better-sqlite3 offers no
 * sqlite3_interrupt, and a thread cannot be terminated inside native code), but a process can be
 * killed. Its executor gets SIGKILL and a new one takes its place at once: the statement ends
 * there, its CPU is freed, the kernel releases its locks (SQLite's write lock included), and WAL
 * ignores the frames of a transaction that did not commit. Under a memory database the one
 * executor is not killed (that would drop the database): the 504 is answered at the bound and later
 * statements wait for the running one.
 *
 * Under `security.sandbox: strict` every executor runs under the permission model with its own
 * flags (`execArgv`, src/Sandbox.ts): it reads the package and the database folder, writes the
 * database folder, and starts nothing.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, Statement } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Scope, Stream } from "effect"
import { type ChildProcess, fork } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { DaemonConfig } from "../../src/Config.js"
import { executorFlags, isSandboxed } from "../../src/Sandbox.js"
import type { DriverFailure, ExecutorSettings, Mode, Reply, Request } from "./SqliteProtocol.js"
import { tagParams, untagResult } from "./SqliteWire.js"

const EXECUTOR = new URL("./SqliteExecutor.js", import.meta.url)

/** How long a closing executor may take to close its connection before it is killed. */
const CLOSE_GRACE_MS = 5000

/**
 * How long the answer of an abandoned statement waits for its killed executor to be gone (so that
 * its locks are released first); a process the kernel is slow to end must not hold the answer.
 */
const KILL_WAIT_MS = 1000

/** `p`, or nothing after `ms` (in an interruption, where Effect.timeout would wait for `p`). */
const within = (p: Promise<void>, ms: number): Promise<void> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer))
}

/** The error a driver error becomes: what better-sqlite3 throws (DbErrors and Retry read `code`). */
const driverError = (f: DriverFailure): Error => Object.assign(new Error(f.message), { name: "SqliteError", code: f.code })

/**
 * An executor that stopped: "connection is closed" is what DbErrors (503) and Retry (`lost`: reads
 * are retried, writes are not) recognise for a connection that went away under a statement.
 */
const CLOSED: DriverFailure = { code: "", message: "the SQLite executor process stopped: the connection is closed" }

/**
 * The environment of an executor: nothing of the daemon's (it needs no secret and no setting), but
 * NODE_OPTIONS (the operator's Node flags, e.g. memory) and TZ (SQLite's `localtime`).
 */
const executorEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const key of ["NODE_OPTIONS", "TZ"]) if (process.env[key] !== undefined) env[key] = process.env[key]
  return env
}

/** One executor process and its connection; requests are answered in order, one at a time. */
class SqliteExecutor {
  private readonly child: ChildProcess | undefined
  private readonly pending = new Map<number, (reply: Reply) => void>()
  /** Requests sent before the connection opened (the child listens only from then on). */
  private queued: Array<Request> | undefined = []
  private next = 1
  /** Killed or closed by us, or exited. */
  private stoppedAt: "no" | "stopping" | "exited" = "no"
  /** Resolves when the connection is open (undefined) or failed to open. */
  readonly opened: Promise<DriverFailure | undefined>
  /** Resolves when the process has exited (or never started). */
  readonly exited: Promise<void>

  constructor(
    readonly settings: ExecutorSettings,
    execArgv: ReadonlyArray<string>
  ) {
    let open: (failure: DriverFailure | undefined) => void = () => undefined
    this.opened = new Promise((resolve) => (open = resolve))
    let exit: () => void = () => undefined
    this.exited = new Promise((resolve) => (exit = resolve))
    const ended = () => {
      if (this.stoppedAt === "exited") return
      this.stoppedAt = "exited"
      this.queued = undefined
      open(CLOSED)
      const waiting = [...this.pending.values()]
      this.pending.clear()
      for (const answer of waiting) answer({ id: 0, error: CLOSED, stage: "execute" })
      exit()
    }
    try {
      this.child = fork(EXECUTOR, [JSON.stringify(settings)], {
        execArgv: [...execArgv],
        env: executorEnv(),
        // JSON: half the cost of `advanced` per message; SqliteWire.js carries what JSON lacks.
        serialization: "json",
        stdio: ["ignore", "ignore", "inherit", "ipc"]
      })
    } catch {
      // fork threw (the permission model refused it, no process slots): every request fails as on a closed connection.
      this.child = undefined
      ended()
      return
    }
    this.child.on("message", (reply: Reply) => {
      if (reply.id === 0) {
        const failure = "error" in reply ? reply.error : undefined
        if (failure === undefined) this.flush()
        return open(failure)
      }
      const answer = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      if ("tagged" in reply) untagResult(reply.ok)
      answer?.(reply)
    })
    // A failed spawn reports 'error' and no 'exit'; a process that started reports 'exit'.
    this.child.on("error", () => {
      if (this.child?.pid === undefined) ended()
    })
    this.child.on("exit", ended)
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get stopped(): boolean {
    return this.stoppedAt !== "no"
  }

  private flush() {
    const queued = this.queued ?? []
    this.queued = undefined
    for (const request of queued) this.post(request)
  }

  private post(request: Request) {
    // A send that fails means the process is gone: it reports 'error' (ignored, see the
    // constructor) and 'exit', which answers what is pending.
    this.child?.send(request)
  }

  /** Sends a request; `answer` is called once, with its reply. Returns the request's id. */
  send(request: Omit<Request, "id">, answer: (reply: Reply) => void): number {
    const id = this.next++
    if (this.stopped) {
      answer({ id, error: CLOSED, stage: "execute" })
      return id
    }
    this.pending.set(id, answer)
    const { params, tagged } = tagParams(request.params)
    const full: Request = tagged ? { id, ...request, params, tagged } : { id, ...request }
    if (this.queued !== undefined) this.queued.push(full)
    else this.post(full)
    return id
  }

  /** Forgets request `id`; true when it had not been answered yet (it is queued or running). */
  forget(id: number): boolean {
    return this.pending.delete(id)
  }

  /** Ends the process at once, whatever it runs (SIGKILL). Resolves when it has exited. */
  kill(): Promise<void> {
    if (this.stoppedAt === "no") this.stoppedAt = "stopping"
    this.child?.kill("SIGKILL")
    return this.exited
  }

  /**
   * Closes the connection (the executor closes it and exits when its channel closes), killing the
   * process if it has not exited within CLOSE_GRACE_MS. Resolves when it has exited.
   */
  close(): Promise<void> {
    if (this.stoppedAt === "no") this.stoppedAt = "stopping"
    if (this.child?.connected === true) this.child.disconnect()
    else this.child?.kill("SIGKILL")
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), CLOSE_GRACE_MS)
    return this.exited.finally(() => clearTimeout(timer))
  }
}

export interface SqliteClientOptions {
  readonly filename: string
  readonly busyTimeout: number
  /** Reader processes (ignored for `:memory:`). */
  readonly readers: number
  /** Node flags of every executor process (the permission model's under the strict sandbox); none by default. */
  readonly execArgv?: ReadonlyArray<string>
}

const opened = (executor: SqliteExecutor) =>
  Effect.flatMap(
    Effect.promise(() => executor.opened),
    (failure) =>
      failure === undefined
        ? Effect.succeed(executor)
        : Effect.fail(new SqlError({ cause: driverError(failure), message: "Failed to open the SQLite database" }))
  )

const isRollback = (sql: string) => /^\s*ROLLBACK\b/i.test(sql)

/** The writer, its readers and the SqlClient over them. */
export const make = (options: SqliteClientOptions): Effect.Effect<SqlClient.SqlClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const memory = options.filename === ":memory:"
    const execArgv = options.execArgv ?? []
    const live = new Set<SqliteExecutor>()
    const start = (role: ExecutorSettings["role"]) => {
      const executor = new SqliteExecutor({ filename: options.filename, role, busyTimeout: options.busyTimeout }, execArgv)
      live.add(executor)
      return executor
    }
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([...live].map((e) => e.close()))))

    // The writer first: it creates the file and switches it to WAL before readers open it.
    let writer = yield* opened(start("writer"))
    const idleReaders = yield* Effect.forEach(Array.from({ length: memory ? 0 : options.readers }), () => opened(start("reader")), {
      concurrency: "unbounded"
    })
    /** Requests waiting for a reader, first come first served. */
    const waiting: Array<(reader: SqliteExecutor) => void> = []
    /** A reader that finished its request (or a new one): to the next waiting request, else idle. */
    const release = (reader: SqliteExecutor) => {
      if (!live.has(reader)) return
      const next = waiting.shift()
      if (next === undefined) idleReaders.push(reader)
      else next(reader)
    }
    /** Held by a transaction for its whole length, and by each statement sent to the writer outside one. */
    const writerLock = yield* Effect.makeSemaphore(1)
    /** Texts a reader refused (they write): sent to the writer directly. */
    const writes = new Set<string>()

    /**
     * An executor whose request was abandoned: killed, which ends its statement, and replaced
     * (file databases). The interruption waits (at most KILL_WAIT_MS) for the process to be gone,
     * so that its locks are released before the caller (a transaction's ROLLBACK, the next write)
     * goes on, and the 504 means the statement has ended.
     */
    const replace = (executor: SqliteExecutor): Effect.Effect<void> => {
      if (memory) return Effect.void
      live.delete(executor)
      const gone = executor.kill()
      const role = executor.settings.role
      const fresh = start(role)
      if (role === "writer") {
        if (writer === executor) writer = fresh
      } else release(fresh)
      return Effect.zipRight(
        Effect.promise(() => within(gone, KILL_WAIT_MS)),
        Effect.logWarning(
          `SQLite: a statement was abandoned before it finished (query_timeout or the caller went away); its ${role} process was killed, which ended it, and replaced`
        ).pipe(Effect.annotateLogs({ role, pid: executor.pid ?? null }))
      )
    }

    /** Sends one statement to `executor`; interrupted while it is pending, the executor is replaced. */
    const ask = (executor: SqliteExecutor, sql: string, params: ReadonlyArray<unknown>, mode: Mode): Effect.Effect<Reply> =>
      Effect.withFiberRuntime((fiber) => {
        const safeIntegers = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
        return Effect.async<Reply>((resume) => {
          const id = executor.send({ sql, params, mode, safeIntegers }, (reply) => resume(Effect.succeed(reply)))
          return Effect.suspend(() => (executor.forget(id) ? replace(executor) : Effect.void))
        })
      })

    const result = (reply: Reply): Effect.Effect<unknown, SqlError> => {
      if ("ok" in reply) return Effect.succeed(reply.ok)
      if ("error" in reply) {
        const message = reply.stage === "prepare" ? "Failed to prepare statement " : "Failed to execute statement"
        return Effect.fail(new SqlError({ cause: driverError(reply.error), message }))
      }
      return Effect.die(new Error("a reader was asked to write outside the routing of the SQLite client"))
    }

    /** The writer, restarted if it stopped by itself (a file database only: a memory one is gone). */
    const currentWriter = (): SqliteExecutor => {
      if (writer.stopped && !memory) {
        live.delete(writer)
        writer = start("writer")
      }
      return writer
    }

    const onWriter = (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
      writerLock.withPermits(1)(Effect.suspend(() => Effect.flatMap(ask(currentWriter(), sql, params, mode), result)))

    /**
     * A reader's answer: the first idle reader, or the first to finish. (No semaphore: this is
     * the path of almost every request, and one Effect.async for the wait and the answer is the
     * cheapest; interrupted while waiting, the request leaves the queue; while running, its reader
     * is replaced.)
     */
    const askReader = (sql: string, params: ReadonlyArray<unknown>, mode: Mode): Effect.Effect<Reply> =>
      Effect.withFiberRuntime((fiber) => {
        const safeIntegers = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
        return Effect.async<Reply>((resume) => {
          let running: { reader: SqliteExecutor; id: number } | undefined
          const run = (taken: SqliteExecutor) => {
            let reader = taken
            if (reader.stopped) {
              // It stopped by itself (it could not open the database, or crashed): a new one.
              live.delete(reader)
              reader = start("reader")
            }
            const id = reader.send({ sql, params, mode, safeIntegers }, (reply) => {
              release(reader)
              resume(Effect.succeed(reply))
            })
            running = { reader, id }
          }
          const idle = idleReaders.pop()
          if (idle === undefined) waiting.push(run)
          else run(idle)
          return Effect.suspend(() => {
            if (running === undefined) {
              waiting.splice(waiting.indexOf(run), 1)
              return Effect.void
            }
            return running.reader.forget(running.id) ? replace(running.reader) : Effect.void
          })
        })
      })

    const onReader = (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
      Effect.flatMap(askReader(sql, params, mode), (reply) => {
        if (!("writer" in reply)) return result(reply)
        if (writes.size >= 1000) writes.clear()
        writes.add(sql)
        return onWriter(sql, params, mode)
      })

    /** Outside transactions: reads to a reader, the rest to the writer. */
    const route = (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
      memory || writes.has(sql) ? onWriter(sql, params, mode) : onReader(sql, params, mode)

    /**
     * A transaction's connection: the writer of the moment it began. If that executor was killed
     * under it (a statement abandoned), its transaction ended with it: ROLLBACK succeeds (what it
     * wrote never committed, so SQLite ignores it), any other statement fails as on a closed
     * connection.
     */
    const onExecutor = (executor: SqliteExecutor) => (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
      Effect.suspend(() =>
        executor.stopped && isRollback(sql) ? Effect.succeed([]) : Effect.flatMap(ask(executor, sql, params, mode), result)
      )

    const connection = (run: (sql: string, params: ReadonlyArray<unknown>, mode: Mode) => Effect.Effect<unknown, SqlError>): Connection => {
      const rows = (
        sql: string,
        params: ReadonlyArray<unknown>,
        mode: Mode,
        transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
      ) => {
        const out = run(sql, params, mode) as Effect.Effect<ReadonlyArray<object>, SqlError>
        return transformRows === undefined ? out : Effect.map(out, (r) => transformRows(r))
      }
      return {
        execute: (sql, params, transformRows) => rows(sql, params, "rows", transformRows),
        executeRaw: (sql, params) => run(sql, params, "raw"),
        executeValues: (sql, params) => run(sql, params, "values") as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError>,
        executeUnprepared: (sql, params, transformRows) => rows(sql, params ?? [], "unprepared", transformRows),
        executeStream: () => Stream.dieMessage("executeStream not implemented")
      }
    }

    const routed = connection(route)
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(writerLock.take(1)),
        Effect.flatMap(Effect.scope, (scope) =>
          Effect.zipRight(
            Scope.addFinalizer(scope, writerLock.release(1)),
            Effect.sync(() => connection(onExecutor(currentWriter())))
          )
        )
      )
    )

    return yield* SqlClient.make({
      acquirer: Effect.succeed(routed),
      transactionAcquirer,
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]]
    })
  })

export const sqliteLayer = (cfg: DaemonConfig): Layer.Layer<SqlClient.SqlClient, SqlError> => {
  const c = cfg.database.connection
  const filename = c.filename!
  if (filename !== ":memory:") fs.mkdirSync(path.dirname(filename), { recursive: true })
  // A writer waits for SQLite's lock at most half of what a request may take: SQLITE_BUSY (503,
  // retryable) comes before the request's 504 would kill the waiting executor (and replace it).
  const busyTimeout = Math.min(c.busy_timeout, Math.floor(cfg.performance.query_timeout / 2))
  // In the strict sandbox the executors get the permission model too, with their own flags.
  const execArgv = isSandboxed() ? executorFlags(cfg) : []
  return Layer.scoped(SqlClient.SqlClient, make({ filename, busyTimeout, readers: c.readers, execArgv })).pipe(
    Layer.provide(Reactivity.layer)
  )
}
