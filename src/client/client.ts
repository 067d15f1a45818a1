/**
 * DBALClient: one typed API over the daemon's protocol, in two modes.
 *
 * - development: the daemon's layers run in this process (see inprocess.ts);
 * - production: requests go to a daemon over WebSocket (see ws.ts).
 *
 * The Effect API (`client.effect.users.create(...)`, failing with DbalError) is the
 * implementation; the Promise API (`client.users.create(...)`) runs it and rejects with the
 * same DbalError.
 */
import { Cause, Effect, Exit, type Scope } from "effect"
import { DbalError } from "./errors.js"
import type { ConnectionSettings, DaemonSettings } from "./inprocess.js"
import { StateCell, type CallOptions, type ConnectionState, type Transport } from "./transport.js"
import { accessors, type Capabilities, type Entities, type EntityName, type Filter, type ListOptions, type ListResult, type TransactionOp } from "./types.js"
import { makeWsTransport, type ReconnectOptions } from "./ws.js"

export interface DevelopmentConfig {
  readonly mode: "development"
  readonly adapter: "sqlite" | "postgresql" | "mysql"
  /** A SQLite filename (relative to the working directory), or connection settings. */
  readonly database: string | ConnectionSettings
  /** Folder of entity definitions (default: the daemon's config/entities). */
  readonly entitiesDir?: string
  /** Create missing tables and indexes at start (default true). */
  readonly autoMigrate?: boolean
  readonly poolSize?: number
  /** Client-side bound on each request, milliseconds (default 30 000). */
  readonly requestTimeoutMs?: number
  /**
   * More of the daemon's configuration, as in its YAML file (e.g. `{performance: {max_page_size: 500}}`).
   * Defaults differ from the daemon's in two places: no audit log and no rate limit.
   */
  readonly settings?: DaemonSettings
}

export interface ProductionConfig {
  readonly mode: "production"
  /** `ws://host:port` or `wss://host:port`. */
  readonly endpoint: string
  /** A session token, a JWT, or a service token; `userId` must then name its user (for a service token: its name). */
  readonly auth: { readonly token: string; readonly userId?: string }
  /** Client-side bound on each request, milliseconds (default 30 000). */
  readonly requestTimeoutMs?: number
  /** Bound on opening the socket and authenticating, milliseconds (default 10 000). */
  readonly connectTimeoutMs?: number
  /** Backoff after a dropped connection; `false`: do not reconnect by itself. */
  readonly reconnect?: ReconnectOptions | false
  /** Passed to `new WebSocket` from `ws` (TLS: ca, cert, key, servername, rejectUnauthorized, …). */
  readonly socketOptions?: import("ws").ClientOptions
}

export type DBALClientConfig = DevelopmentConfig | ProductionConfig

type Rec<N extends EntityName> = Entities[N]["record"]
type Create<N extends EntityName> = Entities[N]["create"]
type Update<N extends EntityName> = Entities[N]["update"]
/** Unique fields usable for a lookup (`id` included). */
export type LookupField<N extends EntityName> = Entities[N]["unique"] | "id"
/** createData of upsert: the unique field may be left out (it is set to uniqueValue). */
export type UpsertCreate<N extends EntityName> = Omit<Create<N>, Entities[N]["unique"]> & Partial<Create<N>>

/** The methods of one entity, as Effects. */
export interface EntityEffectApi<N extends EntityName> {
  readonly create: (data: Create<N>, options?: CallOptions) => Effect.Effect<Rec<N>, DbalError>
  /** Fails with code 404 when there is no such record. */
  readonly read: (id: string, options?: CallOptions) => Effect.Effect<Rec<N>, DbalError>
  readonly update: (id: string, data: Update<N>, options?: CallOptions) => Effect.Effect<Rec<N>, DbalError>
  readonly delete: (id: string, options?: CallOptions) => Effect.Effect<boolean, DbalError>
  readonly list: (options?: ListOptions<Rec<N>>, callOptions?: CallOptions) => Effect.Effect<ListResult<Rec<N>>, DbalError>
  readonly findFirst: (filter?: Filter<Rec<N>>, options?: CallOptions) => Effect.Effect<Rec<N> | null, DbalError>
  readonly findByField: (field: LookupField<N>, value: string, options?: CallOptions) => Effect.Effect<Rec<N> | null, DbalError>
  readonly upsert: (
    uniqueField: Entities[N]["unique"],
    uniqueValue: string,
    createData: UpsertCreate<N>,
    updateData: Update<N>,
    options?: CallOptions
  ) => Effect.Effect<Rec<N>, DbalError>
  readonly updateByField: (field: LookupField<N>, value: string, data: Update<N>, options?: CallOptions) => Effect.Effect<Rec<N>, DbalError>
  readonly deleteByField: (field: LookupField<N>, value: string, options?: CallOptions) => Effect.Effect<boolean, DbalError>
  /** Number created. */
  readonly createMany: (data: ReadonlyArray<Create<N>>, options?: CallOptions) => Effect.Effect<number, DbalError>
  /** Number updated; the filter must test at least one field (422 otherwise). */
  readonly updateMany: (filter: Filter<Rec<N>>, data: Update<N>, options?: CallOptions) => Effect.Effect<number, DbalError>
  /** Number deleted; the filter must test at least one field (422 otherwise). */
  readonly deleteMany: (filter: Filter<Rec<N>>, options?: CallOptions) => Effect.Effect<number, DbalError>
  readonly count: (filter?: Filter<Rec<N>>, options?: CallOptions) => Effect.Effect<number, DbalError>
}

/** The same methods as Promises (rejecting with DbalError). */
export type EntityApi<N extends EntityName> = {
  readonly [M in keyof EntityEffectApi<N>]: EntityEffectApi<N>[M] extends (...args: infer A) => Effect.Effect<infer R, DbalError>
    ? (...args: A) => Promise<R>
    : never
}

type AccessorEntity = typeof accessors
export type EntityAccessors<F extends "effect" | "promise"> = {
  readonly [K in keyof AccessorEntity]: F extends "effect" ? EntityEffectApi<AccessorEntity[K]> : EntityApi<AccessorEntity[K]>
}

export interface EffectClient extends EntityAccessors<"effect"> {
  readonly getCapabilities: (options?: CallOptions) => Effect.Effect<Capabilities, DbalError>
  /**
   * Runs the operations all or nothing, in order, each checked by the access rules as if sent
   * alone; the results come back in the same order. A failure's `details.operation` is its index.
   */
  readonly transaction: (ops: ReadonlyArray<TransactionOp>, options?: CallOptions) => Effect.Effect<ReadonlyArray<unknown>, DbalError>
  /** Connects (production) or starts the in-process daemon (development) now rather than at the first request. */
  readonly connect: Effect.Effect<void, DbalError>
  readonly close: Effect.Effect<void>
}

const entityEffects = <N extends EntityName>(t: Transport, entity: N): EntityEffectApi<N> => {
  const call = <A>(method: string, params: ReadonlyArray<unknown>, options?: CallOptions) =>
    t.request(method, [entity, ...params], options) as Effect.Effect<A, DbalError>
  const opt = (v: unknown): ReadonlyArray<unknown> => (v === undefined ? [] : [v])
  return {
    create: (data, o) => call("create", [data], o),
    read: (id, o) => call("read", [id], o),
    update: (id, data, o) => call("update", [id, data], o),
    delete: (id, o) => call("delete", [id], o),
    list: (options, o) => call("list", opt(options), o),
    findFirst: (filter, o) => call("findFirst", opt(filter), o),
    findByField: (field, value, o) => call("findByField", [field, value], o),
    upsert: (field, value, createData, updateData, o) => call("upsert", [field, value, createData, updateData], o),
    updateByField: (field, value, data, o) => call("updateByField", [field, value, data], o),
    deleteByField: (field, value, o) => call("deleteByField", [field, value], o),
    createMany: (data, o) => call("createMany", [data], o),
    updateMany: (filter, data, o) => call("updateMany", [filter, data], o),
    deleteMany: (filter, o) => call("deleteMany", [filter], o),
    count: (filter, o) => call("count", opt(filter), o)
  }
}

/** Runs an Effect of the client; rejects with the DbalError itself (not a FiberFailure). */
export const runToPromise = <A>(effect: Effect.Effect<A, DbalError>): Promise<A> =>
  Effect.runPromiseExit(effect).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  })

const promised = <N extends EntityName>(e: EntityEffectApi<N>): EntityApi<N> => {
  const out: Record<string, unknown> = {}
  for (const [name, fn] of Object.entries(e) as Array<[string, (...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, DbalError>]>) {
    out[name] = (...args: ReadonlyArray<unknown>) => runToPromise(fn(...args))
  }
  return out as EntityApi<N>
}

/** A transport whose module is loaded at the first use (the in-process daemon and its drivers). */
const deferred = (load: () => Promise<Transport>): Transport => {
  const state = new StateCell("idle")
  let loaded: Promise<Transport> | undefined
  let closed = false
  const get = (method: string) =>
    Effect.tryPromise({
      try: () => {
        if (loaded === undefined) {
          loaded = load().then((t) => {
            t.onStateChange((s) => state.set(s))
            return t
          })
          // A failed load is tried again by the next request.
          loaded.catch(() => {
            loaded = undefined
          })
        }
        return loaded
      },
      catch: (e) => e
    }).pipe(
      Effect.mapError((e) => DbalError.notConnected(method, `the in-process daemon could not be loaded: ${e instanceof Error ? e.message : String(e)}`))
    )
  return {
    request: (method, params, options) =>
      Effect.suspend(() =>
        closed
          ? Effect.fail(DbalError.notConnected(method, "the client is closed"))
          : Effect.flatMap(get(method), (t) => t.request(method, params, options))
      ),
    connect: Effect.flatMap(get("connect"), (t) => t.connect),
    close: Effect.suspend(() => {
      closed = true
      state.set("closed")
      const l = loaded
      return l === undefined ? Effect.void : Effect.flatMap(Effect.promise(() => l.catch(() => undefined)), (t) => (t === undefined ? Effect.void : t.close))
    }),
    state: () => state.get(),
    onStateChange: (l) => state.subscribe(l)
  }
}

export class DBALClient implements EntityAccessors<"promise"> {
  /** The same API as Effects that fail with DbalError. */
  readonly effect: EffectClient
  readonly users: EntityApi<"User">
  readonly credentials: EntityApi<"Credential">
  readonly sessions: EntityApi<"Session">
  readonly pages: EntityApi<"PageView">
  readonly components: EntityApi<"ComponentHierarchy">
  readonly workflows: EntityApi<"Workflow">
  readonly luaScripts: EntityApi<"LuaScript">
  readonly packages: EntityApi<"Package">
  readonly mode: "development" | "production"
  private readonly transport: Transport

  constructor(config: DBALClientConfig) {
    this.mode = config.mode
    const requestTimeoutMs = config.requestTimeoutMs ?? 30_000
    if (!(requestTimeoutMs > 0)) throw new TypeError("requestTimeoutMs must be a positive number of milliseconds")
    if (config.mode === "production") {
      this.transport = makeWsTransport({
        endpoint: config.endpoint,
        auth: config.auth,
        requestTimeoutMs,
        ...(config.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: config.connectTimeoutMs }),
        ...(config.reconnect === undefined ? {} : { reconnect: config.reconnect }),
        ...(config.socketOptions === undefined ? {} : { socketOptions: config.socketOptions })
      })
    } else if (config.mode === "development") {
      const { mode: _mode, requestTimeoutMs: _t, ...rest } = config
      this.transport = deferred(async () => (await import("./inprocess.js")).makeInProcessTransport({ ...rest, requestTimeoutMs }))
    } else {
      throw new TypeError(`mode must be "development" or "production"`)
    }
    const t = this.transport
    this.effect = {
      users: entityEffects(t, accessors.users),
      credentials: entityEffects(t, accessors.credentials),
      sessions: entityEffects(t, accessors.sessions),
      pages: entityEffects(t, accessors.pages),
      components: entityEffects(t, accessors.components),
      workflows: entityEffects(t, accessors.workflows),
      luaScripts: entityEffects(t, accessors.luaScripts),
      packages: entityEffects(t, accessors.packages),
      getCapabilities: (options) => t.request("getCapabilities", [], options) as Effect.Effect<Capabilities, DbalError>,
      transaction: (ops, options) => t.request("transaction", [ops], options) as Effect.Effect<ReadonlyArray<unknown>, DbalError>,
      connect: t.connect,
      close: t.close
    }
    this.users = promised(this.effect.users)
    this.credentials = promised(this.effect.credentials)
    this.sessions = promised(this.effect.sessions)
    this.pages = promised(this.effect.pages)
    this.components = promised(this.effect.components)
    this.workflows = promised(this.effect.workflows)
    this.luaScripts = promised(this.effect.luaScripts)
    this.packages = promised(this.effect.packages)
  }

  /** A client closed when the scope closes. */
  static scoped(config: DBALClientConfig): Effect.Effect<DBALClient, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.sync(() => new DBALClient(config)),
      (c) => c.effect.close
    )
  }

  getCapabilities(options?: CallOptions): Promise<Capabilities> {
    return runToPromise(this.effect.getCapabilities(options))
  }

  /** All or nothing: see `EffectClient.transaction`. */
  transaction(ops: ReadonlyArray<TransactionOp>, options?: CallOptions): Promise<ReadonlyArray<unknown>> {
    return runToPromise(this.effect.transaction(ops, options))
  }

  /** Connects now (production) or starts the in-process daemon (development); otherwise the first request does. */
  connect(): Promise<void> {
    return runToPromise(this.effect.connect)
  }

  /** Fails what is still waiting, stops reconnecting, releases the connection or the in-process daemon. */
  close(): Promise<void> {
    return runToPromise(this.effect.close)
  }

  get connectionState(): ConnectionState {
    return this.transport.state()
  }

  /** Calls `listener` on every change of `connectionState`; returns the function that unsubscribes. */
  onConnectionStateChange(listener: (state: ConnectionState) => void): () => void {
    return this.transport.onStateChange(listener)
  }
}
