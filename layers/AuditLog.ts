/**
 * Audit layer: one JSON line per operation.
 *
 * Sinks: the file at `security.audit_log_path` (created 0600 in a 0700 folder), stdout
 * (`security.audit.stdout`, or when no path is set), and optionally a SQL table
 * (`security.audit.sql_table`).
 *
 * Durability (file): records are appended in batches by one writer; a write's record is on disk
 * (fsync) before the write is answered, and all records that arrived while a batch was being
 * written share the next fsync (group commit). Reads do not wait. When a batch cannot be written,
 * its records are kept in memory and retried, the log is marked unhealthy, and until a retry
 * succeeds writes are refused with 503 before they run (reads follow `on_failure_reads`).
 * Rotation by size and by UTC day; retention by count and by age, each removed file logged (WARN)
 * and counted. Records are bounded before any sink sees them (`boundAuditRecord`): a request
 * cannot make a record larger than `audit.max_record_bytes`. Shutdown flushes.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Runtime, Schedule } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { columnType, type Dialect, quoteIdent } from "../src/entity/Ddl.js"
import { auditFilesDeletedOf, auditRecordsOf } from "../src/Metrics.js"
import { isSandboxed } from "../src/Sandbox.js"
import { Unavailable } from "../src/Errors.js"
import { AuditLog, type AuditLogShape, type AuditRecord, boundAuditRecord } from "../src/services/AuditLog.js"
import { Database } from "../src/services/Database.js"

/** How long a line appended without waiting may wait for others to share its write(2). */
const LATER_MS = 5

/** Records kept in memory while the file cannot be written (older ones are dropped past this). */
const MAX_RETAINED = 100_000

interface Pending {
  readonly line: string
  /** Whether someone waits for this line to be on disk (fsync), not only written. */
  readonly sync: boolean
  readonly done: Array<(error: Error | undefined) => void>
}

const utcDay = (t: number) => new Date(t).toISOString().slice(0, 10)

export interface FileSinkOptions {
  readonly file: string
  readonly fsync: boolean
  readonly maxBytes: number
  readonly rotateDaily: boolean
  readonly maxFiles: number
  readonly maxAgeDays: number
  /**
   * How writes reach the disk: fdatasync after each batch, or a file opened with O_DSYNC (each
   * write returns once on disk). The strict sandbox needs "dsync": Node's permission model
   * disables fsync and fdatasync.
   */
  readonly syncMode?: "fdatasync" | "dsync"
  readonly now?: () => number
  /** Told of each rotated file retention removes (the layer logs a WARN line). */
  readonly onRemoved?: (file: string, reason: RemovalReason) => void
}

export type RemovalReason = "max_files" | "max_age_days"

const removedFiles = { max_files: auditFilesDeletedOf("max_files"), max_age_days: auditFilesDeletedOf("max_age_days") }

/**
 * Creates the missing folders of `dir` one level at a time, each with `mode`. (A recursive
 * mkdir can loop forever below /proc; this one stops at the first ancestor that exists.)
 */
export const makeDirs = (dir: string, mode: number) => {
  const missing: Array<string> = []
  let d = path.resolve(dir)
  while (!fs.existsSync(d)) {
    missing.push(d)
    const parent = path.dirname(d)
    if (parent === d) break
    d = parent
  }
  if (!fs.statSync(d).isDirectory()) throw Object.assign(new Error(`${d} is not a folder`), { code: "ENOTDIR" })
  for (const m of missing.reverse()) fs.mkdirSync(m, { mode })
}

/** The durable file writer (exported for tests). */
export class FileSink {
  private fd: number | undefined
  private size = 0
  private day = ""
  private queue: Array<Pending> = []
  /** Whether the queue holds an append somebody waits for (it goes out at once). */
  private urgent = false
  /** Lines written since the last fdatasync (reads' records wait for the next one). */
  private unsynced = false
  private retained: Array<string> = []
  /** Set before the writer starts (it may finish synchronously when there is nothing to write). */
  private flushing = false
  /** The pending write of lines appended without waiting. */
  private later: NodeJS.Timeout | undefined
  healthy = true

  constructor(private readonly o: FileSinkOptions) {
    makeDirs(path.dirname(o.file), 0o700)
    this.open()
  }

  private now(): number {
    return this.o.now?.() ?? Date.now()
  }

  private open() {
    const c = fs.constants
    const dsync = this.o.fsync && this.o.syncMode === "dsync" ? c.O_DSYNC : 0
    const fd = fs.openSync(this.o.file, c.O_WRONLY | c.O_APPEND | c.O_CREAT | dsync, 0o600)
    const st = fs.fstatSync(fd)
    this.fd = fd
    this.size = st.size
    this.day = utcDay(st.size > 0 ? st.mtimeMs : this.now())
  }

  private rotate() {
    if (this.fd !== undefined && this.unsynced && this.callsFdatasync) fs.fdatasyncSync(this.fd)
    this.unsynced = false
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
    const stamp = new Date(this.now()).toISOString().replace(/[-:]/g, "").replace(/\..*$/, "Z")
    let target = `${this.o.file}.${stamp}`
    for (let n = 1; fs.existsSync(target); n++) target = `${this.o.file}.${stamp}-${n}`
    fs.renameSync(this.o.file, target)
    this.open()
    this.prune()
  }

  /**
   * Rotated files beyond max_files or older than max_age_days are removed: records are lost from
   * this host, so each removal is counted (dbal_audit_files_deleted_total) and reported.
   */
  prune() {
    const dir = path.dirname(this.o.file)
    const base = path.basename(this.o.file) + "."
    const rotated = fs
      .readdirSync(dir)
      .filter((n) => n.startsWith(base))
      .map((n) => ({ file: path.join(dir, n), mtime: fs.statSync(path.join(dir, n)).mtimeMs }))
      .sort((a, b) => b.mtime - a.mtime)
    const oldest = this.now() - this.o.maxAgeDays * 86_400_000
    rotated.forEach((r, i) => {
      const reason: RemovalReason | undefined = i >= this.o.maxFiles ? "max_files" : r.mtime < oldest ? "max_age_days" : undefined
      if (reason === undefined) return
      fs.rmSync(r.file, { force: true })
      removedFiles[reason].unsafeUpdate(1, [])
      try {
        this.o.onRemoved?.(r.file, reason)
      } catch {
        // the report must not fail the write that rotated (the metric has counted the removal)
      }
    })
  }

  /** Appends one line; resolves once it is written (and fsynced when `durable`). */
  append(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ line, sync: true, done: [(e) => (e === undefined ? resolve() : reject(e))] })
      this.urgent = true
      this.kick()
    })
  }

  /**
   * Appends without waiting. The line is written with the lines that arrive within LATER_MS (or
   * with the next durable append, at once): one write(2) for many reads' records instead of one each.
   */
  appendLater(line: string) {
    this.queue.push({ line, sync: false, done: [] })
    if (this.flushing || this.later !== undefined) return
    this.later = setTimeout(() => this.kick(), LATER_MS)
    this.later.unref()
  }

  /** Writes whatever is pending (retained records included); resolves when done. */
  flush(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ line: "", sync: true, done: [(e) => (e === undefined ? resolve() : reject(e))] })
      this.urgent = true
      this.kick()
    })
  }

  private kick() {
    if (this.later !== undefined) clearTimeout(this.later)
    this.later = undefined
    if (this.flushing) return
    this.flushing = true
    void (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue
        this.queue = []
        this.urgent = false
        const lines = [...this.retained, ...batch.map((p) => p.line).filter((l) => l !== "")]
        let error: Error | undefined
        try {
          // A batch of reads only is written but not fsynced: nobody waits for it, and the
          // next write's fsync (or the one at shutdown) takes it to disk too.
          const sync = batch.some((p) => p.sync)
          if (lines.length > 0) await this.write(lines.join(""), sync)
          else if (sync && this.unsynced) await this.fdatasync(this.fd!)
          this.retained = []
          this.healthy = true
        } catch (e) {
          error = e instanceof Error ? e : new Error(String(e))
          this.retained = lines.slice(-MAX_RETAINED)
          this.healthy = false
        }
        for (const p of batch) for (const d of p.done) d(error)
        // Lines nobody waits for that came during the write wait for the next LATER_MS too:
        // written at once, they made one write(2) per few reads under load, each ~20 µs of the
        // event loop's time to hand to the thread pool on this machine (8 % of a read's CPU).
        if (!this.urgent) break
      }
      this.flushing = false
      if (this.queue.length > 0 && this.later === undefined) {
        this.later = setTimeout(() => this.kick(), LATER_MS)
        this.later.unref()
      }
    })()
  }

  private async write(text: string, sync: boolean) {
    const bytes = Buffer.byteLength(text)
    const today = utcDay(this.now())
    if (this.fd === undefined) this.open()
    if (this.size > 0 && (this.size + bytes > this.o.maxBytes || (this.o.rotateDaily && today !== this.day))) this.rotate()
    const fd = this.fd!
    const buf = Buffer.from(text, "utf8")
    try {
      // write(2) may take only part of the buffer (a filling disk): write the rest, or fail.
      // Written from the event loop: a write(2) into the page cache takes a few µs, while handing
      // it to the thread pool took ~20-60 µs of the event loop's own time on this machine, and a
      // second hop before a durable record's fdatasync (which stays on the thread pool).
      for (let off = 0; off < buf.length;) {
        const n = fs.writeSync(fd, buf, off, buf.length - off)
        if (n <= 0) throw new Error("the audit file took no bytes")
        off += n
      }
      if (sync) await this.fdatasync(fd)
      else this.unsynced = true
    } catch (e) {
      // The batch is retried whole: take back what part of it was written (no broken or doubled line).
      try {
        fs.ftruncateSync(fd, this.size)
      } catch {
        // not truncatable (a device such as /dev/full): nothing to take back
      }
      throw e
    }
    this.size += bytes
    this.day = today
  }

  /** With O_DSYNC every write is already durable; with fsync off nothing is synced. */
  private get callsFdatasync(): boolean {
    return this.o.fsync && this.o.syncMode !== "dsync"
  }

  private async fdatasync(fd: number) {
    if (this.callsFdatasync) {
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err === null ? resolve() : reject(err))))
    }
    this.unsynced = false
  }

  /** Flushes and closes; returns the records that could still not be written (the log is unwritable). */
  async close(): Promise<ReadonlyArray<string>> {
    const lost = await this.flush().then(
      () => [],
      () => this.retained
    )
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
    return lost
  }
}

/**
 * A record the file could not take, for the log line that saves it: as an object, whose strings
 * the log's per-string bound (layers/Logging.ts) leaves whole, since the record's are shorter.
 */
const asLogged = (line: string): unknown => {
  try {
    return JSON.parse(line)
  } catch {
    return line.trimEnd()
  }
}

const fromConfig = (cfg: DaemonConfig, file: string, onRemoved: (file: string, reason: RemovalReason) => void): FileSinkOptions => ({
  file,
  fsync: cfg.security.audit.fsync,
  maxBytes: cfg.security.audit.max_size_mb * 1024 * 1024,
  rotateDaily: cfg.security.audit.rotate_daily,
  maxFiles: cfg.security.audit.max_files,
  maxAgeDays: cfg.security.audit.max_age_days,
  syncMode: isSandboxed() ? "dsync" : "fdatasync",
  onRemoved
})

/**
 * Strings of the record as a JSON column can hold them: PostgreSQL's jsonb refuses NUL, and jsonb
 * and MySQL's JSON refuse unpaired surrogates, both of which a client can put in a request id.
 * Each becomes U+FFFD, so that no request can keep its record out of the table.
 */
const storable = (_key: string, v: unknown): unknown => (typeof v === "string" ? v.replaceAll("\u0000", "\uFFFD").toWellFormed() : v)

const okRecords = auditRecordsOf("ok")
const queuedRecords = auditRecordsOf("queued")
const journaledRecords = auditRecordsOf("journaled")
const failedRecords = auditRecordsOf("failed")

const unavailable = () => new Unavailable({ reason: "the audit log cannot be written" })

/** DDL of the optional audit table (one JSON document per row). */
export const auditTableDdl = (dialect: Dialect, table: string): string => {
  const q = (s: string) => quoteIdent(dialect, s)
  const json = columnType(dialect, { type: "json" })
  const ts = columnType(dialect, { type: "datetime" })
  const id =
    dialect === "sqlite"
      ? "INTEGER PRIMARY KEY AUTOINCREMENT"
      : dialect === "pg"
        ? "bigserial PRIMARY KEY"
        : "BIGINT AUTO_INCREMENT PRIMARY KEY"
  return `CREATE TABLE IF NOT EXISTS ${q(table)} (${q("id")} ${id}, ${q("at")} ${ts} NOT NULL, ${q("record")} ${json} NOT NULL)`
}

/** DDL of the audit journal (PostgreSQL): one row per committed write whose record is not yet durable in the file. */
export const journalTableDdl = (table: string): string => {
  const q = (s: string) => quoteIdent("pg", s)
  return `CREATE TABLE IF NOT EXISTS ${q(table)} (${q("key")} uuid PRIMARY KEY, ${q("at")} timestamptz NOT NULL DEFAULT now(), ${q("replica")} text NOT NULL, ${q("record_id")} text, ${q("record")} text NOT NULL)`
}

/** Journal rows removed per DELETE. */
const JOURNAL_CHUNK = 500

/** How often records appended on the journal's word are made durable in the file and their rows removed. */
const JOURNAL_SETTLE = "200 millis"

/**
 * A journal row as the file's record: the write committed (its record in the row was made before
 * it ran), so it succeeded; `recovered` says the outcome fields were not recorded.
 */
const recoveredLine = (row: { readonly record_id: unknown; readonly record: unknown }, maxRecordBytes: number): string => {
  let base: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(String(row.record))
    if (parsed !== null && typeof parsed === "object") base = parsed as Record<string, unknown>
  } catch {
    base = { unreadable: String(row.record).slice(0, 256) }
  }
  const rec = {
    ...base,
    ...(row.record_id === null || row.record_id === undefined ? {} : { recordIds: [String(row.record_id)] }),
    success: true,
    durationMs: 0,
    recovered: true
  } as unknown as AuditRecord
  return boundAuditRecord(rec, maxRecordBytes).json + "\n"
}

/**
 * The audit journal (src/query/Journal.ts) on PostgreSQL, with its table created; undefined on
 * other databases, or when the table cannot be created (every write then waits for the fsync).
 * Rows a crash left (writes committed, their records maybe not in the file) are appended to the
 * file first and removed. `settleLater` takes the key of a row whose record was appended: every
 * JOURNAL_SETTLE, one fsync covers such records, then their rows go.
 */
const startJournal = (sink: FileSink, table: string, replica: string, maxRecordBytes: number) =>
  Effect.gen(function* () {
    const db = yield* Database
    if (db.dialect !== "pg") return undefined
    const sql = yield* SqlClient.SqlClient
    const created = yield* sql.unsafe(journalTableDdl(table)).pipe(
      Effect.as(true),
      Effect.catchAll((e) =>
        Effect.as(
          Effect.logWarning(
            `security.audit.journal: cannot create table ${table} (${e.message}); every write waits for the audit file's fsync`
          ),
          false
        )
      )
    )
    if (!created) return undefined
    const deleteRows = (keys: ReadonlyArray<string>) =>
      Effect.forEach(
        Array.from({ length: Math.ceil(keys.length / JOURNAL_CHUNK) }, (_, i) => keys.slice(i * JOURNAL_CHUNK, (i + 1) * JOURNAL_CHUNK)),
        // One array parameter: one statement text whatever the number of keys (prepared once per
        // connection, layers/db/Pg.ts), where an IN list was a new text, parsed and planned, per count.
        (chunk) => sql`DELETE FROM ${sql(table)} WHERE ${sql("key")} = ANY(${chunk})`,
        { discard: true }
      )
    const recovered = yield* sql
      .withTransaction(
        Effect.gen(function* () {
          const rows = yield* sql<{
            key: string
            record_id: unknown
            record: unknown
          }>`SELECT ${sql("key")}, ${sql("record_id")}, ${sql("record")} FROM ${sql(table)} WHERE ${sql("replica")} = ${replica} ORDER BY ${sql("at")} FOR UPDATE SKIP LOCKED`
          if (rows.length === 0) return 0
          yield* Effect.tryPromise({
            try: async () => {
              for (const r of rows) sink.appendLater(recoveredLine(r, maxRecordBytes))
              await sink.flush()
            },
            catch: unavailable
          })
          yield* deleteRows(rows.map((r) => r.key))
          return rows.length
        })
      )
      .pipe(
        Effect.catchAll((e) => Effect.as(Effect.logError("the audit journal could not be recovered into the audit file", e.message), -1))
      )
    if (recovered > 0)
      yield* Effect.logWarning(
        `audit journal: ${recovered} records of writes committed before the last stop were appended to the audit file (marked recovered)`
      )
    /** Keys of journal rows whose records were appended to the file, not yet known to be on disk. */
    let settling: Array<string> = []
    const settle = Effect.suspend(() => {
      if (settling.length === 0) return Effect.void
      const keys = settling
      settling = []
      return Effect.tryPromise({ try: () => sink.flush(), catch: unavailable }).pipe(
        Effect.zipRight(deleteRows(keys)),
        Effect.catchAll((e) =>
          Effect.sync(() => {
            // Kept: the rows stay until a later settle (or the next start) succeeds.
            settling = keys.concat(settling)
          }).pipe(Effect.zipRight(Effect.logWarning("audit journal: records not yet settled", e.message)))
        )
      )
    })
    yield* Effect.forkScoped(Effect.repeat(settle, Schedule.spaced(JOURNAL_SETTLE)))
    yield* Effect.addFinalizer(() => settle)
    return { table, replica, settleLater: (key: string) => void settling.push(key) }
  })

export const layer = Layer.scoped(
  AuditLog,
  Effect.gen(function* () {
    const cfg = yield* AppConfig
    if (!cfg.security.audit_log) return { record: () => Effect.void, ready: () => Effect.void } satisfies AuditLogShape
    const file = cfg.security.audit_log_path
    const toStdout = cfg.security.audit.stdout || file === undefined
    const maxRecordBytes = cfg.security.audit.max_record_bytes
    const runtime = yield* Effect.runtime<never>()
    const logRemoval = (removed: string, reason: RemovalReason) =>
      Runtime.runSync(runtime)(
        Effect.logWarning(
          `audit retention removed ${removed} (${reason === "max_files" ? `more than max_files=${cfg.security.audit.max_files} rotated files` : `older than max_age_days=${cfg.security.audit.max_age_days}`}): its records are gone from this host unless they were shipped elsewhere`
        )
      )
    const sink =
      file === undefined
        ? undefined
        : yield* Effect.acquireRelease(
            Effect.try({
              try: () => new FileSink(fromConfig(cfg, file, logRemoval)),
              catch: (e) =>
                new Unavailable({
                  reason: `security.audit_log_path: cannot open ${file} (${(e as NodeJS.ErrnoException).code ?? "error"})`
                })
            }),
            // Records the file still cannot take at shutdown go to the log output (stdout, collected
            // by journald / the container runtime) rather than nowhere.
            (s) =>
              Effect.flatMap(
                Effect.promise(() => s.close()),
                (lost) =>
                  lost.length === 0
                    ? Effect.void
                    : Effect.logError(
                        `the audit log could not be written before shutdown: ${lost.length} records follow`,
                        lost.map(asLogged)
                      )
              )
          )
    const table = cfg.security.audit.sql_table
    let insert: ((rec: AuditRecord) => Effect.Effect<void>) | undefined
    if (table !== undefined) {
      const db = yield* Database
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(auditTableDdl(db.dialect, table)).pipe(Effect.orDie)
      insert = (rec) =>
        sql`INSERT INTO ${sql(table)} (${sql("at")}, ${sql("record")}) VALUES (${db.dialect === "sqlite" ? rec.timestamp : new Date(rec.timestamp)}, ${JSON.stringify(rec, storable)})`.pipe(
          Effect.catchAll((e) => Effect.logError("audit record could not be inserted into the audit table", e.message))
        )
    }
    const denyReads = cfg.security.audit.on_failure_reads === "deny"
    const replica = cfg.cluster.replica_name ?? os.hostname()

    const journal =
      sink !== undefined && cfg.security.audit.fsync && cfg.security.audit.journal
        ? yield* startJournal(sink, cfg.security.audit.journal_table, replica, maxRecordBytes)
        : undefined

    // Without Effect.gen and with direct metric updates: one record per request.
    const record = (entry: AuditRecord, durable: boolean, journalKey?: string): Effect.Effect<void, Unavailable> =>
      Effect.suspend(() => {
        const { record: rec, json } = boundAuditRecord(entry, maxRecordBytes)
        const line = json + "\n"
        if (toStdout) process.stdout.write(JSON.stringify({ audit: rec }) + "\n")
        const inserted = insert === undefined ? Effect.void : Effect.asVoid(Effect.forkDaemon(insert(rec)))
        if (sink === undefined) return inserted
        const journaled = journalKey !== undefined && journal !== undefined
        if (journaled) journal.settleLater(journalKey)
        if (!durable || journaled) {
          sink.appendLater(line)
          ;(journaled ? journaledRecords : queuedRecords).unsafeUpdate(1, [])
          return inserted
        }
        return Effect.zipRight(
          inserted,
          Effect.tryPromise({ try: () => sink.append(line), catch: unavailable }).pipe(
            Effect.tapBoth({
              onSuccess: () => Effect.sync(() => okRecords.unsafeUpdate(1, [])),
              onFailure: () => Effect.sync(() => failedRecords.unsafeUpdate(1, []))
            })
          )
        )
      })

    const ready = (write: boolean): Effect.Effect<void, Unavailable> => {
      if (sink === undefined || sink.healthy || (!write && !denyReads)) return Effect.void
      // Unhealthy: retry what is retained; the request runs only if that now succeeds.
      return Effect.tryPromise({ try: () => sink.flush(), catch: unavailable })
    }

    // The log's health is known only once it has taken bytes: without this first durable record,
    // a log that cannot be written at start (full disk, /dev/full) would let the first write run
    // and commit before failing its own record. A failure leaves it retained and the log unhealthy.
    if (sink !== undefined) {
      const start: AuditRecord = {
        timestamp: new Date().toISOString(),
        replica: cfg.cluster.replica_name ?? os.hostname(),
        requestId: null,
        userId: null,
        role: null,
        operation: "daemon.start",
        entity: null,
        success: true,
        durationMs: 0
      }
      yield* record(start, true).pipe(
        Effect.catchAll(() => Effect.logError("the audit log cannot be written: writes are refused until it can"))
      )
    }

    return {
      record,
      ready,
      ...(journal === undefined ? {} : { journal: { table: journal.table, replica: journal.replica } })
    } satisfies AuditLogShape
  })
)
