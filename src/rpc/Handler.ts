/**
 * The RPC handler: one frame in, one answer out. decode → authenticate → rate limit (by the
 * request's weight) → access decision → validate → execute → encode, with the request's timeout
 * and span around it and an audit record after it. Every failure is a tagged error mapped once
 * by `toWireError`; nothing here can close the connection.
 */
import { Cause, Context, Effect, Exit, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import { AppConfig } from "../Config.js"
import {
  BadRequest,
  errorName,
  Internal,
  type RateLimited,
  type RequestError,
  toWireError,
  Unauthorized,
  type Unavailable
} from "../Errors.js"
import { EntityRegistry } from "../entity/Model.js"
import { authFailures, durationOf, entityRequestsOf, principalRejectionsOf, rateLimited, requestErrorsOf, requestsOf } from "../Metrics.js"
import { makeRepository } from "../query/Repository.js"
import { callerSpan, childSpan, parseTraceparent, requestTrace, spansExported, type TraceParent } from "../Spans.js"
import { withQueryTimeout } from "../query/Timeout.js"
import { Acl } from "../services/Acl.js"
import { AuditLog, type AuditRecord, boundAuditRecord } from "../services/AuditLog.js"
import { Auth, type Credentials } from "../services/Auth.js"
import { Changes, type RowChange } from "../services/Changes.js"
import { type PushChannel, Realtime, type RealtimeShape } from "../services/Realtime.js"
import { type Collector, collecting } from "../query/Capture.js"
import { type JournalEntry, journaling } from "../query/Journal.js"
import { ResultCache } from "../services/ResultCache.js"
import { Database } from "../services/Database.js"
import type { Principal } from "../services/Principal.js"
import { RateLimiter } from "../services/RateLimiter.js"
import {
  entityNameOf,
  type LiveHandle,
  type MethodContext,
  type Outcome,
  requestWeight,
  runMethod,
  JournaledMethods,
  WriteMethods,
  writtenEntities
} from "./Methods.js"
import { decodeCredentials, decodeFrame, encodeError, encodeResult, isRejected, type Method, Methods, type Request } from "./Protocol.js"

/** State of one WebSocket connection that requests may read and `authenticate` may set. */
export interface Connection {
  readonly remoteAddress: string
  auth: Credentials | undefined
  /**
   * The credentials the previous request of this connection carried: a client that sends the same
   * auth with every request gets the same object back, so that its token's digest is made once
   * (layers/Auth.ts keeps it per object).
   */
  sentAuth?: Credentials
  /** The `traceparent` header of the WebSocket upgrade: the trace of requests that bring none. */
  readonly traceparent?: TraceParent
  /** Where the daemon pushes frames on this connection (subscriptions' events); absent in process. */
  readonly channel?: PushChannel
}

const sameCredentials = (a: Credentials | undefined, b: Credentials): a is Credentials =>
  a !== undefined && a.token === b.token && a.userId === b.userId

export interface RpcHandlerShape {
  /** Answers one text frame; never fails. */
  readonly handle: (conn: Connection, frame: string) => Effect.Effect<string>
  /**
   * Answers one text frame through `answer`, called once, as soon as the answer may leave: a
   * record nobody waits for (a read's, a write's whose journal row committed with it) and the
   * request's metrics are made after it. Never fails.
   */
  readonly serve: (conn: Connection, frame: string, answer: (text: string) => void) => Effect.Effect<void>
  /**
   * Checks credentials presented when the connection was opened (at the HTTP upgrade) and, when
   * they are accepted, binds them to the connection as `authenticate` does: later frames may omit
   * `auth`, and the credentials are still checked on each of them. Audited as operation `connect`.
   */
  readonly authenticateConnection: (
    conn: Connection,
    creds: Credentials
  ) => Effect.Effect<Principal, Unauthorized | RateLimited | Unavailable>
}

export class RpcHandler extends Context.Tag("dbal/RpcHandler")<RpcHandler, RpcHandlerShape>() {}

/** The record a failed read, update or delete aimed at (recorded by the audit log). */
const targetOf = (req: Request): string | undefined =>
  (req.method === "read" || req.method === "update" || req.method === "delete") && typeof req.params[1] === "string"
    ? req.params[1].slice(0, 64)
    : undefined

const asRequestError = (cause: Cause.Cause<RequestError>): RequestError =>
  Option.getOrElse(Cause.failureOption(cause), () => new Internal({ cause: Cause.squash(cause) }))

/** The tagged metrics of each method, made once (src/Metrics.ts says why). */
const methodMetrics = new Map(
  Methods.map((m) => [m, { success: requestsOf(m, "success"), error: requestsOf(m, "error"), duration: durationOf(m) }] as const)
)
const metricsOf = (m: Method) => methodMetrics.get(m)!

/** Labelled counters made on first use and kept (the label sets are bounded, see below). */
const memo = <A>(make: (key: string) => A) => {
  const made = new Map<string, A>()
  return (key: string): A => {
    let m = made.get(key)
    if (m === undefined) made.set(key, (m = make(key)))
    return m
  }
}

/** Principals named in `dbal_principal_rejections_total`; later ones count as `_other` (bounded series). */
export const MAX_NAMED_PRINCIPALS = 100
const namedPrincipals = new Set<string>()
export const principalLabel = (userId: string): string => {
  if (namedPrincipals.has(userId)) return userId
  if (namedPrincipals.size >= MAX_NAMED_PRINCIPALS) return "_other"
  namedPrincipals.add(userId)
  return userId
}

const errorCounter = memo((key) => {
  const [method, code] = key.split(" ")
  return requestErrorsOf(method!, Number(code))
})
const entityCounter = memo((key) => {
  const [entity, method, status] = key.split(" ")
  return entityRequestsOf(entity!, method!, status === "success" ? "success" : "error")
})
const rejectionCounter = memo((key) => {
  const i = key.lastIndexOf(" ")
  return principalRejectionsOf(key.slice(0, i), Number(key.slice(i + 1)))
})
/** Answers that count as a principal's rejections: forbidden, not found, rate limited. */
const rejectionCodes = new Set([403, 404, 429])

export const make = Effect.gen(function* () {
  const config = yield* AppConfig
  const registry = yield* EntityRegistry
  const db = yield* Database
  const auth = yield* Auth
  const acl = yield* Acl
  const limiter = yield* RateLimiter
  const audit = yield* AuditLog
  const changes = yield* Changes
  const cache = yield* ResultCache
  const realtime: RealtimeShape | undefined = config.realtime.enabled
    ? Option.getOrUndefined(yield* Effect.serviceOption(Realtime))
    : undefined
  const repo = makeRepository(db, registry, {
    retry: config.performance.retry,
    queryTimeoutMs: config.performance.query_timeout,
    readBatch: config.performance.read_batch
  })
  const replica = config.cluster.replica_name ?? os.hostname()
  const timeoutMs = config.performance.query_timeout
  const span = childSpan(config)
  const exported = spansExported(config)
  const authSpan = span("auth")
  const rateLimitSpan = span("rate_limit")

  /** The request's credentials: those it sent (the previous request's object when equal), else the connection's. */
  const credentialsOf = (conn: Connection, req: Request): Credentials | RequestError => {
    if (req.method === "authenticate") {
      if (req.params.length !== 1) return new BadRequest({ reason: "expected params [{token, user_id}]" })
      const creds = decodeCredentials(req.params[0])
      return typeof creds === "string" ? new BadRequest({ reason: creds.replace(/^auth/, "params[0]") }) : creds
    }
    const sent = req.auth
    const creds = sent === undefined ? conn.auth : sameCredentials(conn.sentAuth, sent) ? conn.sentAuth : (conn.sentAuth = sent)
    return creds ?? new Unauthorized({ reason: "send auth {token, user_id} with the request, or call authenticate first" })
  }
  const liveOf = (conn: Connection, principal: Principal, credentials: Credentials): LiveHandle | undefined => {
    const channel = conn.channel
    if (realtime === undefined || channel === undefined) return undefined
    return {
      subscribe: (entity, filter) => realtime.subscribe({ channel, principal, credentials }, entity, filter),
      unsubscribe: (id) => realtime.unsubscribe(channel, id)
    }
  }

  /**
   * A single-row write's journal entry (src/query/Journal.ts): its record as known before it runs,
   * committed with the write where the repository can (PostgreSQL).
   */
  const journalOf = (conn: Connection, req: Request, method: Method, principal: Principal): JournalEntry | undefined => {
    if (audit.journal === undefined || !JournaledMethods.has(method)) return undefined
    const known = {
      timestamp: new Date().toISOString(),
      replica,
      requestId: req.id,
      userId: principal.userId,
      role: principal.role,
      operation: method,
      entity: entityNameOf(req.params),
      remoteAddress: conn.remoteAddress
    }
    // Bounded as the file's record is (boundAuditRecord) only when it may be too large: recovery
    // bounds the record it makes of the row again (layers/AuditLog.ts, recoveredLine), and a record
    // whose JSON is within a third of max_record_bytes is within it.
    let record = JSON.stringify(known)
    if (record.length * 3 > config.security.audit.max_record_bytes) {
      const {
        success: _s,
        durationMs: _d,
        ...rest
      } = boundAuditRecord({ ...known, success: true, durationMs: 0 }, config.security.audit.max_record_bytes).record
      record = JSON.stringify(rest)
    }
    return { table: audit.journal.table, replica: audit.journal.replica, key: randomUUID(), record, committed: false }
  }

  const runRequest = (
    conn: Connection,
    req: Request,
    method: Exclude<Method, "authenticate">,
    principal: Principal,
    creds: Credentials,
    setJournal: (e: JournalEntry) => void
  ): Effect.Effect<Outcome, RequestError> => {
    const live = method === "subscribe" || method === "unsubscribe" ? liveOf(conn, principal, creds) : undefined
    const ctx: MethodContext =
      live === undefined
        ? { principal, registry, repo, acl, config, db, cache }
        : { principal, registry, repo, acl, config, db, cache, live }
    const entry = journalOf(conn, req, method, principal)
    if (entry !== undefined) setJournal(entry)
    const run = entry === undefined ? runMethod(ctx, method, req.params) : journaling(runMethod(ctx, method, req.params), entry)
    if (!WriteMethods.has(method)) return run
    const written = new Set(writtenEntities(method, req.params))
    if (written.size === 0) return run
    // Announced whatever the outcome (a timed-out write may still have committed): the
    // receivers read the rows back, and announce only what they find.
    if (!config.realtime.enabled)
      return Effect.ensuring(
        run,
        Effect.forEach(written, (e) => changes.publish(e), { discard: true })
      )
    const into: Collector = []
    // Before images only for entities someone may subscribe to; the others' row ids suffice.
    const images = realtime === undefined || [...written].some((e) => realtime.wantsBeforeImages(e))
    return Effect.ensuring(
      collecting(run, into, images),
      Effect.suspend(() => {
        const rows = new Map<string, Array<RowChange>>()
        for (const c of into) {
          const list = rows.get(c.entity)
          if (list === undefined) rows.set(c.entity, [...c.rows])
          else list.push(...c.rows)
        }
        return Effect.forEach(new Set([...written, ...rows.keys()]), (e) => changes.publish(e, rows.get(e)), { discard: true })
      })
    )
  }

  // docs/architecture.md, "The hot path": the services' plain forms first.
  const execute = (
    conn: Connection,
    req: Request,
    setPrincipal: (p: Principal) => void,
    setJournal: (e: JournalEntry) => void
  ): Effect.Effect<Outcome, RequestError> => {
    const creds = credentialsOf(conn, req)
    if ("_tag" in creds) return Effect.fail(creds)
    const authorized = (principal: Principal): Effect.Effect<Outcome, RequestError> => {
      setPrincipal(principal)
      const weight = requestWeight(req.method, req.params)
      if (limiter.take !== undefined && !exported) {
        const limited = limiter.take(principal.userId, principal.role, weight)
        return limited === undefined ? admitted(principal) : Effect.fail(limited)
      }
      return Effect.flatMap(rateLimitSpan(limiter.consume(principal.userId, principal.role, weight)), () => admitted(principal))
    }
    const admitted = (principal: Principal): Effect.Effect<Outcome, RequestError> => {
      const method = req.method
      if (method === "authenticate") {
        conn.auth = creds
        return Effect.succeed({ result: { authenticated: true, userId: principal.userId, role: principal.role } } satisfies Outcome)
      }
      // A write that could not be recorded must not run (fail closed); reads follow the policy.
      return Effect.flatMap(audit.ready(WriteMethods.has(method)), () => runRequest(conn, req, method, principal, creds, setJournal))
    }
    const known = exported ? undefined : auth.known?.(creds, conn.remoteAddress)
    return known !== undefined ? authorized(known) : Effect.flatMap(authSpan(auth.authenticate(creds, conn.remoteAddress)), authorized)
  }

  const serve = (conn: Connection, frame: string, answerWith: (text: string) => void): Effect.Effect<void> => {
    let sent = false
    /** Answers once; `text` is evaluated only for the answer that leaves. */
    const answer = (text: () => string) => {
      if (sent) return
      answerWith(text())
      sent = true
    }
    const decoded = decodeFrame(frame)
    if (isRejected(decoded)) return Effect.sync(() => answer(() => encodeError(decoded.id, toWireError(decoded.error))))
    const req = decoded
    const started = performance.now()
    let principal: Principal | undefined
    let journal: JournalEntry | undefined
    const finish = (exit: Exit.Exit<Outcome, RequestError>, traceId: string | undefined): Effect.Effect<void> => {
      const error = Exit.isSuccess(exit) ? undefined : asRequestError(exit.cause)
      const wire = error === undefined ? undefined : toWireError(error)
      const outcome = Exit.isSuccess(exit) ? exit.value : undefined
      const target = error === undefined ? undefined : targetOf(req)
      const elapsedMs = performance.now() - started
      const durable = error === undefined && WriteMethods.has(req.method)
      const text = () => (outcome !== undefined ? encodeResult(req.id, outcome.result) : encodeError(req.id, wire!))
      // A record whose journal row committed with the write is durable already (no fsync to wait for).
      const committed = journal?.committed === true
      // Nothing waits for this record: the answer leaves first, and what follows runs in the same
      // tick. An answer that cannot be encoded is left for after the record, where the defect is
      // logged and a 500 sent (the request is audited either way).
      if (!durable || committed) {
        try {
          answer(text)
        } catch {
          // answered below
        }
      }
      const recordIds = outcome !== undefined ? outcome.recordIds : target === undefined ? undefined : [target]
      const failed = error !== undefined && wire !== undefined
      // One literal with every key in the documented order, absent ones undefined (JSON leaves them
      // out): a spread of a conditional object per optional field made short-lived objects and a
      // new shape on every request.
      const draft: { readonly [K in keyof AuditRecord]-?: AuditRecord[K] | undefined } = {
        timestamp: new Date().toISOString(),
        replica,
        requestId: req.id,
        traceId,
        userId: principal?.userId ?? null,
        role: principal?.role ?? null,
        operation: req.method,
        entity: outcome?.entity ?? (req.method === "unsubscribe" ? null : entityNameOf(req.params)),
        recordIds,
        success: error === undefined,
        errorCode: failed ? wire.code : undefined,
        error: failed ? errorName(error) : undefined,
        details: wire?.details,
        durationMs: Math.round(elapsedMs * 1000) / 1000,
        remoteAddress: conn.remoteAddress,
        recovered: undefined,
        summarized: undefined
      }
      const record = draft as AuditRecord
      const metrics = metricsOf(req.method)
      ;(error === undefined ? metrics.success : metrics.error).unsafeUpdate(1, [])
      metrics.duration.unsafeUpdate(elapsedMs / 1000, [])
      if (error?._tag === "RateLimited") rateLimited.unsafeUpdate(1, [])
      if (error?._tag === "Unauthorized") authFailures.unsafeUpdate(1, [])
      if (wire !== undefined) {
        errorCounter(`${req.method} ${wire.code}`).unsafeUpdate(1, [])
        if (principal !== undefined && rejectionCodes.has(wire.code))
          rejectionCounter(`${principalLabel(principal.userId)} ${wire.code}`).unsafeUpdate(1, [])
      }
      // The entity label is a name of the registry: a name a client made up must not add series.
      if (record.entity !== null) {
        const entity = registry.entities.has(record.entity) ? record.entity : "unknown"
        entityCounter(`${entity} ${req.method} ${error === undefined ? "success" : "error"}`).unsafeUpdate(1, [])
      }
      const recorded = Effect.matchEffect(audit.record(record, durable, committed ? journal!.key : undefined), {
        onSuccess: () => Effect.sync(() => answer(text)),
        onFailure: (e) =>
          Effect.map(Effect.logError("audit record could not be written", e.reason), () =>
            // A write that cannot be recorded is not acknowledged (fail closed).
            answer(durable && !committed ? () => encodeError(req.id, toWireError(e)) : text)
          )
      })
      return error?._tag === "Internal" ? Effect.zipRight(Effect.logError("request failed unexpectedly", error.cause), recorded) : recorded
    }
    const run = Effect.exit(
      withQueryTimeout(timeoutMs)(
        execute(
          conn,
          req,
          (p) => {
            principal = p
          },
          (e) => {
            journal = e
          }
        )
      )
    )
    // The caller's trace: the frame's traceparent, else the connection's (upgrade header).
    const caller = (req.traceparent === undefined ? undefined : parseTraceparent(req.traceparent)) ?? conn.traceparent
    const answered = exported
      ? run.pipe(
          Effect.flatMap((exit) =>
            Effect.flatMap(Effect.option(Effect.currentSpan), (span) => finish(exit, Option.isSome(span) ? span.value.traceId : undefined))
          ),
          Effect.withSpan(`rpc.${req.method}`, {
            attributes: { "rpc.method": req.method, "rpc.id": String(req.id) },
            captureStackTrace: false,
            ...(caller === undefined ? {} : { parent: callerSpan(caller) })
          })
        )
      : requestTrace((traceId) => Effect.flatMap(run, (exit) => finish(exit, traceId)), caller)
    return Effect.catchAllDefect(answered, (defect) =>
      Effect.logError("answer could not be encoded", defect).pipe(
        Effect.map(() => answer(() => encodeError(req.id, toWireError(new Internal({})))))
      )
    )
  }

  const handle = (conn: Connection, frame: string): Effect.Effect<string> => {
    let text = ""
    return Effect.map(
      serve(conn, frame, (t) => {
        text = t
      }),
      () => text
    )
  }

  const authenticateConnection = (
    conn: Connection,
    creds: Credentials
  ): Effect.Effect<Principal, Unauthorized | RateLimited | Unavailable> => {
    const started = performance.now()
    return Effect.onExit(
      Effect.tap(auth.authenticate(creds, conn.remoteAddress), () =>
        Effect.sync(() => {
          conn.auth = creds
        })
      ),
      (exit) => {
        const principal = Exit.isSuccess(exit) ? exit.value : undefined
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        if (Exit.isFailure(exit) && error === undefined) return Effect.void
        if (error?._tag === "RateLimited") rateLimited.unsafeUpdate(1, [])
        if (error?._tag === "Unauthorized") authFailures.unsafeUpdate(1, [])
        const wire = error === undefined ? undefined : toWireError(error)
        const record: AuditRecord = {
          timestamp: new Date().toISOString(),
          replica,
          requestId: null,
          userId: principal?.userId ?? null,
          role: principal?.role ?? null,
          operation: "connect",
          entity: null,
          success: error === undefined,
          ...(error === undefined || wire === undefined ? {} : { errorCode: wire.code, error: errorName(error) }),
          ...(wire?.details === undefined ? {} : { details: wire.details }),
          durationMs: Math.round((performance.now() - started) * 1000) / 1000,
          remoteAddress: conn.remoteAddress
        }
        return Effect.catchAll(audit.record(record, false), (e) => Effect.logError("audit record could not be written", e.reason))
      }
    )
  }

  return { handle, serve, authenticateConnection } satisfies RpcHandlerShape
})
