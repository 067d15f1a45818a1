/**
 * SQLite adapter (loaded only when database.adapter is sqlite): an @effect/sql SqlClient whose
 * statements run on worker threads (layers/db/SqliteWorker.js), never on the thread that serves
 * the connections. better-sqlite3 is synchronous: on the event loop one slow statement stalled
 * every client.
 *
 * - One writer thread: every statement that writes, and every statement of a transaction
 *   (`sql.withTransaction` holds the writer for its whole length, so nothing else interleaves).
 *   Statements outside transactions take it one at a time.
 * - `connection.readers` reader threads (WAL: readers see the last commit and never block the
 *   writer): statements outside transactions that only read. A statement's text is first sent to
 *   a reader, which refuses what does not only read; the writer then runs it, and that text goes
 *   straight to the writer from then on.
 * - `:memory:`: one thread for everything. A memory database belongs to one connection, so it
 *   cannot be shared by several threads, and it lives as long as that thread.
 *
 * A statement whose request is interrupted (query_timeout, 504) cannot be stopped inside SQLite
 * (better-sqlite3 offers no sqlite3_interrupt), so its thread is terminated and a new one takes
 * its place at once: the caller, and every later request, is served by the new thread. The old
 * thread ends when the running statement returns to JavaScript (its connection then closes, which
 * rolls back an uncommitted transaction, SQLite's journal guarantees it); until then it keeps its
 * CPU and, if it was writing, SQLite's write lock (the new writer waits `busy_timeout` for it).
 * Under a memory database the one thread is not terminated (that would drop the database): the
 * 504 is answered at the bound and later statements wait for the running one.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, Statement } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Worker } from "node:worker_threads"
import type { DaemonConfig } from "../../src/Config.js"
import type { DriverFailure, Mode, Reply, Request, WorkerSettings } from "./SqliteProtocol.js"

const WORKER = new URL("./SqliteWorker.js", import.meta.url)

/** The error a driver error becomes: what better-sqlite3 throws (DbErrors and Retry read `code`). */
const driverError = (f: DriverFailure): Error => Object.assign(new Error(f.message), { name: "SqliteError", code: f.code })

/**
 * A thread that stopped: "connection is closed" is what DbErrors (503) and Retry (`lost`: reads
 * are retried, writes are not) recognise for a connection that went away under a statement.
 */
const CLOSED: DriverFailure = { code: "", message: "the SQLite worker thread stopped: the connection is closed" }

/** One worker thread and its connection; requests are answered in order, one at a time. */
class SqliteThread {
  private readonly worker: Worker
  private readonly pending = new Map<number, (reply: Reply) => void>()
  private next = 1
  /** Terminated by us, or exited. */
  private stoppedAt: "no" | "stopping" | "exited" = "no"
  /** Resolves when the connection is open (undefined) or failed to open. */
  readonly opened: Promise<DriverFailure | undefined>

  constructor(readonly settings: WorkerSettings) {
    this.worker = new Worker(WORKER, { workerData: settings })
    let open: (failure: DriverFailure | undefined) => void = () => undefined
    this.opened = new Promise((resolve) => (open = resolve))
    this.worker.on("message", (reply: Reply) => {
      if (reply.id === 0) return open("error" in reply ? reply.error : undefined)
      const answer = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      answer?.(reply)
    })
    // An exception thrown in the worker ends it: 'exit' follows and fails what is pending.
    this.worker.on("error", () => undefined)
    this.worker.on("exit", () => {
      this.stoppedAt = "exited"
      open(CLOSED)
      const waiting = [...this.pending.values()]
      this.pending.clear()
      for (const answer of waiting) answer({ id: 0, error: CLOSED, stage: "execute" })
    })
  }

  get stopped(): boolean {
    return this.stoppedAt !== "no"
  }

  /** Sends a request; `answer` is called once, with its reply. Returns the request's id. */
  send(request: Omit<Request, "id">, answer: (reply: Reply) => void): number {
    const id = this.next++
    if (this.stopped) {
      answer({ id, error: CLOSED, stage: "execute" })
      return id
    }
    this.pending.set(id, answer)
    this.worker.postMessage({ id, ...request } satisfies Request)
    return id
  }

  /** Forgets request `id`; true when it had not been answered yet (it is queued or running). */
  forget(id: number): boolean {
    return this.pending.delete(id)
  }

  /**
   * Ends the thread: at once when it is idle, else when its running statement returns (V8 cannot
   * stop native code). Resolves when the thread has ended.
   */
  stop(): Promise<unknown> {
    if (this.stoppedAt === "no") this.stoppedAt = "stopping"
    return this.worker.terminate()
  }
}

export interface SqliteClientOptions {
  readonly filename: string
  readonly busyTimeout: number
  /** Reader threads (ignored for `:memory:`). */
  readonly readers: number
}

const opened = (thread: SqliteThread) =>
  Effect.flatMap(Effect.promise(() => thread.opened), (failure) =>
    failure === undefined ? Effect.succeed(thread) : Effect.fail(new SqlError({ cause: driverError(failure), message: "Failed to open the SQLite database" }))
  )

const isRollback = (sql: string) => /^\s*ROLLBACK\b/i.test(sql)

/** The writer, its readers and the SqlClient over them. */
export const make = (options: SqliteClientOptions): Effect.Effect<SqlClient.SqlClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const memory = options.filename === ":memory:"
    const live = new Set<SqliteThread>()
    const start = (role: WorkerSettings["role"]) => {
      const thread = new SqliteThread({ filename: options.filename, role, busyTimeout: options.busyTimeout })
      live.add(thread)
      return thread
    }
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([...live].map((t) => t.stop()))))

    // The writer first: it creates the file and switches it to WAL before readers open it.
    let writer = yield* opened(start("writer"))
    const idleReaders = yield* Effect.forEach(Array.from({ length: memory ? 0 : options.readers }), () => opened(start("reader")), {
      concurrency: "unbounded"
    })
    /** Requests waiting for a reader, first come first served. */
    const waiting: Array<(thread: SqliteThread) => void> = []
    /** A reader that finished its request (or a new one): to the next waiting request, else idle. */
    const release = (thread: SqliteThread) => {
      if (!live.has(thread)) return
      const next = waiting.shift()
      if (next === undefined) idleReaders.push(thread)
      else next(thread)
    }
    /** Held by a transaction for its whole length, and by each statement sent to the writer outside one. */
    const writerLock = yield* Effect.makeSemaphore(1)
    /** Texts a reader refused (they write): sent to the writer directly. */
    const writes = new Set<string>()

    /** A thread whose request was abandoned: terminated and replaced (file databases). */
    const replace = (thread: SqliteThread): Effect.Effect<void> => {
      if (memory) return Effect.void
      live.delete(thread)
      void thread.stop()
      const role = thread.settings.role
      const fresh = start(role)
      if (role === "writer") {
        if (writer === thread) writer = fresh
      } else release(fresh)
      return Effect.logWarning(
        `SQLite: a statement was abandoned before it finished (query_timeout or the caller went away); its ${role} thread was replaced and ends when the statement returns`
      )
    }

    /** Sends one statement to `thread`; interrupted while it is pending, the thread is replaced. */
    const ask = (thread: SqliteThread, sql: string, params: ReadonlyArray<unknown>, mode: Mode): Effect.Effect<Reply> =>
      Effect.withFiberRuntime((fiber) => {
        const safeIntegers = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
        return Effect.async<Reply>((resume) => {
          const id = thread.send({ sql, params, mode, safeIntegers }, (reply) => resume(Effect.succeed(reply)))
          return Effect.suspend(() => (thread.forget(id) ? replace(thread) : Effect.void))
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
    const currentWriter = (): SqliteThread => {
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
          let running: { thread: SqliteThread; id: number } | undefined
          const run = (taken: SqliteThread) => {
            let thread = taken
            if (thread.stopped) {
              // It stopped by itself (it could not open the database, or crashed): a new one.
              live.delete(thread)
              thread = start("reader")
            }
            const id = thread.send({ sql, params, mode, safeIntegers }, (reply) => {
              release(thread)
              resume(Effect.succeed(reply))
            })
            running = { thread, id }
          }
          const idle = idleReaders.pop()
          if (idle === undefined) waiting.push(run)
          else run(idle)
          return Effect.suspend(() => {
            if (running === undefined) {
              waiting.splice(waiting.indexOf(run), 1)
              return Effect.void
            }
            return running.thread.forget(running.id) ? replace(running.thread) : Effect.void
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
     * A transaction's connection: the writer of the moment it began. If that thread was replaced
     * under it (a statement abandoned), its transaction ended with it: ROLLBACK succeeds (the
     * closing connection rolls back), any other statement fails as on a closed connection.
     */
    const onThread = (thread: SqliteThread) => (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
      Effect.suspend(() => (thread.stopped && isRollback(sql) ? Effect.succeed([]) : Effect.flatMap(ask(thread, sql, params, mode), result)))

    const connection = (run: (sql: string, params: ReadonlyArray<unknown>, mode: Mode) => Effect.Effect<unknown, SqlError>): Connection => {
      const rows = (sql: string, params: ReadonlyArray<unknown>, mode: Mode, transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined) => {
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
          Effect.zipRight(Scope.addFinalizer(scope, writerLock.release(1)), Effect.sync(() => connection(onThread(currentWriter()))))
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
  // retryable) comes before the request's 504 would abandon the waiting thread (and replace it).
  const busyTimeout = Math.min(c.busy_timeout, Math.floor(cfg.performance.query_timeout / 2))
  return Layer.scoped(SqlClient.SqlClient, make({ filename, busyTimeout, readers: c.readers })).pipe(Layer.provide(Reactivity.layer))
}
