/**
 * The client over any set of entities, in two modes:
 *
 * - development: the daemon's layers run in this process (see inprocess.ts; Node only);
 * - production: requests go to a daemon over WebSocket (see ws.ts; Node and browsers).
 *
 * A generated module (`dbal-daemon generate`) declares its entities' types and calls
 * `makeClient(config, accessors)`; DBALClient (client.ts) is the generated client of the shipped
 * entities. The Effect API (`client.effect.users.create(...)`, failing with DbalError) is the
 * implementation; the Promise API (`client.users.create(...)`) runs it and rejects with the
 * same DbalError.
 *
 * Nothing here imports the daemon's own sources: the client ships compiled on its own (its
 * .d.ts must type-check for consumers on plain ES2022), and the in-process daemon is loaded
 * at run time only in development mode.
 */
// Subpath imports: a consumer's type check then reads these modules' declarations, not all of effect's.
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Stream from "effect/Stream"
import { DbalError } from "./errors.js"
import { type CallOptions, type ConnectionState, reservedAccessors } from "./options.js"
import { StateCell, type Transport } from "./transport.js"
import type {
  AnyEntity,
  Capabilities,
  EntityTypes,
  ListOptions,
  ListResult,
  RelationName,
  SchemaResult,
  TransactionOp,
  WithIncludes
} from "./types.js"
import type { ReconnectOptions, SocketOptions, SubscribeOptions, Subscription, SubscriptionEvent } from "./options.js"
import { makeWsTransport } from "./ws.js"
import { subscriptionIterable, subscriptionStream } from "./live.js"

export type { SubscribeOptions, Subscription, SubscriptionEvent } from "./options.js"

/** The events of a subscription to entity `T`. */
export type EntityEvent<T extends EntityTypes> = SubscriptionEvent<T["record"], T["id"]>

/** Connection settings of a database server (or `{filename}` for SQLite). */
export interface ConnectionSettings {
  readonly filename?: string
  readonly host?: string
  readonly port?: number
  readonly database?: string
  readonly user?: string
  readonly password?: string
  readonly sslMode?: "disable" | "require" | "verify-full"
  /** SQLite: ms a writer waits for the lock. */
  readonly busyTimeout?: number
}

/**
 * Sections of the daemon's configuration file (snake_case keys, e.g.
 * `{performance: {max_page_size: 500}}`), merged over the client's defaults and checked by the
 * daemon when it starts (a wrong key fails the first request with the daemon's message).
 */
export interface DaemonSettings {
  readonly [section: string]: unknown
}

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
  /** More of the daemon's configuration. Defaults differ from the daemon's in two places: no audit log and no rate limit. */
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
  /** Node only: options of `ws`'s WebSocket (TLS: ca, cert, key, servername, rejectUnauthorized, …); given, `ws` is used. */
  readonly socketOptions?: SocketOptions
}

export type DBALClientConfig = DevelopmentConfig | ProductionConfig

/** What the in-process transport needs (development mode). */
export interface InProcessOptions extends Omit<DevelopmentConfig, "mode" | "requestTimeoutMs"> {
  readonly requestTimeoutMs: number
}

/** Unique fields usable for a lookup (`id` included). */
export type LookupField<T extends EntityTypes> = T["unique"] | "id"
/** The value a lookup by field `F` takes. */
export type LookupValue<T extends EntityTypes, F extends LookupField<T>> = F extends "id"
  ? T["id"]
  : F extends keyof T["record"]
    ? Exclude<T["record"][F], null>
    : string
/** createData of upsert: the unique field may be left out (it is set to uniqueValue). */
export type UpsertCreate<T extends EntityTypes, F extends string> = Omit<T["create"], F> & Partial<T["create"]>

/**
 * The types of the Effect API (`client.effect`, `DBALClient.scoped`), filled in by
 * "dbal-daemon/client/effect" (effect.ts): a program that imports it sees effect's Effect and
 * Scope here; one that uses the Promise API only does not make its type checker read effect's
 * declarations (most of a consumer's type-check time).
 */
/* eslint-disable @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unused-vars --
   empty on purpose: effect.ts fills them in by declaration merging, and needs their parameters */
export interface EffectTypes<A, E, R> {}
export interface StreamTypes<A, E> {}
export interface ScopeTypes {}
/* eslint-enable @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unused-vars */

/** What `client.effect` returns without "dbal-daemon/client/effect" imported: a reminder, not an Effect. */
export interface EffectTypesNotImported {
  readonly "import dbal-daemon/client/effect to type the Effect API": never
}

/** effect's `Effect.Effect<A, E, R>` once "dbal-daemon/client/effect" is imported. */
export type ClientEffect<A, E = never, R = never> = EffectTypes<A, E, R> extends { readonly effect: infer T } ? T : EffectTypesNotImported
/** effect's `Stream.Stream<A, E>` once "dbal-daemon/client/effect" is imported. */
export type ClientStream<A, E = never> = StreamTypes<A, E> extends { readonly stream: infer T } ? T : EffectTypesNotImported
/** effect's `Scope.Scope` once "dbal-daemon/client/effect" is imported. */
export type ClientScope = ScopeTypes extends { readonly scope: infer S } ? S : EffectTypesNotImported

/** The methods of one entity, as Effects. */
export interface EntityEffectApi<T extends EntityTypes> {
  readonly create: (data: T["create"], options?: CallOptions) => ClientEffect<T["record"], DbalError>
  /** Fails with code 404 when there is no such record. */
  readonly read: (id: T["id"], options?: CallOptions) => ClientEffect<T["record"], DbalError>
  readonly update: (id: T["id"], data: T["update"], options?: CallOptions) => ClientEffect<T["record"], DbalError>
  readonly delete: (id: T["id"], options?: CallOptions) => ClientEffect<boolean, DbalError>
  readonly list: <const I extends RelationName<T> = never>(
    options?: ListOptions<T, I>,
    callOptions?: CallOptions
  ) => ClientEffect<ListResult<WithIncludes<T, I>>, DbalError>
  readonly findFirst: (filter?: T["where"], options?: CallOptions) => ClientEffect<T["record"] | null, DbalError>
  readonly findByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    options?: CallOptions
  ) => ClientEffect<T["record"] | null, DbalError>
  readonly upsert: <F extends T["unique"]>(
    uniqueField: F,
    uniqueValue: LookupValue<T, F>,
    createData: UpsertCreate<T, F>,
    updateData: T["update"],
    options?: CallOptions
  ) => ClientEffect<T["record"], DbalError>
  readonly updateByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    data: T["update"],
    options?: CallOptions
  ) => ClientEffect<T["record"], DbalError>
  readonly deleteByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    options?: CallOptions
  ) => ClientEffect<boolean, DbalError>
  /** Number created. */
  readonly createMany: (data: ReadonlyArray<T["create"]>, options?: CallOptions) => ClientEffect<number, DbalError>
  /** Number updated; the filter must test at least one field (422 otherwise). */
  readonly updateMany: (filter: T["where"], data: T["update"], options?: CallOptions) => ClientEffect<number, DbalError>
  /** Number deleted; the filter must test at least one field (422 otherwise). */
  readonly deleteMany: (filter: T["where"], options?: CallOptions) => ClientEffect<number, DbalError>
  readonly count: (filter?: T["where"], options?: CallOptions) => ClientEffect<number, DbalError>
  /**
   * Live changes of the rows matching `filter` that the caller may read, as a Stream: it
   * subscribes when run and unsubscribes when it ends; it fails when the connection drops (kind
   * ConnectionLost) or the daemon ends the subscription (e.g. 401 when the session expired).
   */
  readonly subscribe: (options?: SubscribeOptions<T["where"]>, callOptions?: CallOptions) => ClientStream<EntityEvent<T>, DbalError>
}

/** The same methods as Promises (rejecting with DbalError). */
export interface EntityApi<T extends EntityTypes> {
  readonly create: (data: T["create"], options?: CallOptions) => Promise<T["record"]>
  /** Rejects with code 404 when there is no such record. */
  readonly read: (id: T["id"], options?: CallOptions) => Promise<T["record"]>
  readonly update: (id: T["id"], data: T["update"], options?: CallOptions) => Promise<T["record"]>
  readonly delete: (id: T["id"], options?: CallOptions) => Promise<boolean>
  readonly list: <const I extends RelationName<T> = never>(
    options?: ListOptions<T, I>,
    callOptions?: CallOptions
  ) => Promise<ListResult<WithIncludes<T, I>>>
  readonly findFirst: (filter?: T["where"], options?: CallOptions) => Promise<T["record"] | null>
  readonly findByField: <F extends LookupField<T>>(field: F, value: LookupValue<T, F>, options?: CallOptions) => Promise<T["record"] | null>
  readonly upsert: <F extends T["unique"]>(
    uniqueField: F,
    uniqueValue: LookupValue<T, F>,
    createData: UpsertCreate<T, F>,
    updateData: T["update"],
    options?: CallOptions
  ) => Promise<T["record"]>
  readonly updateByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    data: T["update"],
    options?: CallOptions
  ) => Promise<T["record"]>
  readonly deleteByField: <F extends LookupField<T>>(field: F, value: LookupValue<T, F>, options?: CallOptions) => Promise<boolean>
  readonly createMany: (data: ReadonlyArray<T["create"]>, options?: CallOptions) => Promise<number>
  readonly updateMany: (filter: T["where"], data: T["update"], options?: CallOptions) => Promise<number>
  readonly deleteMany: (filter: T["where"], options?: CallOptions) => Promise<number>
  readonly count: (filter?: T["where"], options?: CallOptions) => Promise<number>
  /** Live changes as an AsyncIterable (`for await (const e of db.users.subscribe())`); see EntityEffectApi.subscribe. */
  readonly subscribe: (options?: SubscribeOptions<T["where"]>, callOptions?: CallOptions) => Subscription<EntityEvent<T>>
}

/** A generated module's entity table: entity name → its types. */
export type EntityTable<E> = { readonly [N in keyof E]: EntityTypes }
/** A generated module's accessors: accessor name → entity name. */
export type AccessorTable<E, A> = { readonly [K in keyof A]: keyof E & string }

export type EffectAccessors<E extends EntityTable<E>, A extends AccessorTable<E, A>> = {
  readonly [K in keyof A]: EntityEffectApi<E[A[K]]>
}
export type PromiseAccessors<E extends EntityTable<E>, A extends AccessorTable<E, A>> = {
  readonly [K in keyof A]: EntityApi<E[A[K]]>
}

export interface EffectClientMethods<E extends EntityTable<E>> {
  /** Any entity the daemon serves, by name: typed for the generated ones, untyped for others. */
  readonly entity: {
    <N extends keyof E & string>(name: N): EntityEffectApi<E[N]>
    (name: string): EntityEffectApi<AnyEntity>
  }
  readonly getCapabilities: (options?: CallOptions) => ClientEffect<Capabilities, DbalError>
  /** The entities and fields this caller may use (the `getSchema` method). */
  readonly getSchema: (options?: CallOptions) => ClientEffect<SchemaResult, DbalError>
  /**
   * Runs the operations all or nothing, in order, each checked by the access rules as if sent
   * alone; the results come back in the same order. A failure's `details.operation` is its index.
   */
  readonly transaction: (ops: ReadonlyArray<TransactionOp>, options?: CallOptions) => ClientEffect<ReadonlyArray<unknown>, DbalError>
  /** Connects (production) or starts the in-process daemon (development) now rather than at the first request. */
  readonly connect: ClientEffect<void, DbalError>
  readonly close: ClientEffect<void>
}

export type EffectClient<E extends EntityTable<E>, A extends AccessorTable<E, A>> = EffectAccessors<E, A> & EffectClientMethods<E>

/** EntityEffectApi as the implementation sees it (with effect's types, which the public declarations leave to effect.ts). */
interface EntityEffects<T extends EntityTypes> {
  readonly create: (data: T["create"], options?: CallOptions) => Effect.Effect<T["record"], DbalError>
  /** Fails with code 404 when there is no such record. */
  readonly read: (id: T["id"], options?: CallOptions) => Effect.Effect<T["record"], DbalError>
  readonly update: (id: T["id"], data: T["update"], options?: CallOptions) => Effect.Effect<T["record"], DbalError>
  readonly delete: (id: T["id"], options?: CallOptions) => Effect.Effect<boolean, DbalError>
  readonly list: <const I extends RelationName<T> = never>(
    options?: ListOptions<T, I>,
    callOptions?: CallOptions
  ) => Effect.Effect<ListResult<WithIncludes<T, I>>, DbalError>
  readonly findFirst: (filter?: T["where"], options?: CallOptions) => Effect.Effect<T["record"] | null, DbalError>
  readonly findByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    options?: CallOptions
  ) => Effect.Effect<T["record"] | null, DbalError>
  readonly upsert: <F extends T["unique"]>(
    uniqueField: F,
    uniqueValue: LookupValue<T, F>,
    createData: UpsertCreate<T, F>,
    updateData: T["update"],
    options?: CallOptions
  ) => Effect.Effect<T["record"], DbalError>
  readonly updateByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    data: T["update"],
    options?: CallOptions
  ) => Effect.Effect<T["record"], DbalError>
  readonly deleteByField: <F extends LookupField<T>>(
    field: F,
    value: LookupValue<T, F>,
    options?: CallOptions
  ) => Effect.Effect<boolean, DbalError>
  /** Number created. */
  readonly createMany: (data: ReadonlyArray<T["create"]>, options?: CallOptions) => Effect.Effect<number, DbalError>
  /** Number updated; the filter must test at least one field (422 otherwise). */
  readonly updateMany: (filter: T["where"], data: T["update"], options?: CallOptions) => Effect.Effect<number, DbalError>
  /** Number deleted; the filter must test at least one field (422 otherwise). */
  readonly deleteMany: (filter: T["where"], options?: CallOptions) => Effect.Effect<number, DbalError>
  readonly count: (filter?: T["where"], options?: CallOptions) => Effect.Effect<number, DbalError>
  readonly subscribe: (options?: SubscribeOptions<T["where"]>, callOptions?: CallOptions) => Stream.Stream<EntityEvent<T>, DbalError>
}

const entityEffects = <T extends EntityTypes>(t: Transport, entity: string): EntityEffects<T> => {
  const call = <R>(method: string, params: ReadonlyArray<unknown>, options?: CallOptions) =>
    t.request(method, [entity, ...params], options) as Effect.Effect<R, DbalError>
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
    count: (filter, o) => call("count", opt(filter), o),
    subscribe: (options, o) => subscriptionStream(t, entity, options, o)
  }
}

/** Runs an Effect of the client; rejects with the DbalError itself (not a FiberFailure). */
const runToPromise = <A>(effect: Effect.Effect<A, DbalError>): Promise<A> =>
  Effect.runPromiseExit(effect).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  })

const promised = <T extends EntityTypes>(e: EntityEffects<T>, t: Transport, entity: string): EntityApi<T> => {
  const out: Record<string, unknown> = {}
  for (const [name, fn] of Object.entries(e) as Array<[string, (...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, DbalError>]>) {
    if (name === "subscribe") continue
    out[name] = (...args: ReadonlyArray<unknown>) => runToPromise(fn(...args))
  }
  out.subscribe = (options?: SubscribeOptions<unknown>, o?: CallOptions) => subscriptionIterable(t, entity, options, o)
  return out as unknown as EntityApi<T>
}

interface InProcessModule {
  readonly makeInProcessTransport: (options: InProcessOptions) => Transport
}

/**
 * The in-process daemon (Node only), app/inprocess of the daemon's composition root. From the
 * sources (tsx, vitest) its .ts; from the daemon's build (dist/src/client) or the compiled client
 * (dist/client) the build's dist/app/inprocess.js when there is one, else its sources through tsx
 * (a development dependency: installed wherever the sources are used). The specifiers are
 * computed so that bundlers leave the daemon out of a browser bundle.
 */
const loadInProcess = async (): Promise<InProcessModule> => {
  const here = import.meta.url
  if (here.endsWith(".ts")) return (await import(new URL("../../app/inprocess.ts", here).href)) as InProcessModule
  for (const candidate of ["../../app/inprocess.js", "../app/inprocess.js"]) {
    try {
      return (await import(new URL(candidate, here).href)) as InProcessModule
    } catch (e) {
      if ((e as { code?: unknown }).code !== "ERR_MODULE_NOT_FOUND") throw e
    }
  }
  const tsxApi = "tsx/esm/api"
  const { register } = (await import(tsxApi)) as { register: () => unknown }
  register()
  return (await import(new URL("../../app/inprocess.ts", here).href)) as InProcessModule
}

/**
 * The compiled client loads the in-process daemon from the daemon's own sources or build, whose
 * DbalError is another class: its errors are re-made with this one so that `instanceof` holds.
 */
const sameClass = (e: DbalError): DbalError =>
  (e as unknown) instanceof DbalError
    ? e
    : new DbalError({
        kind: e.kind,
        code: e.code,
        message: e.message,
        ...(e.method === undefined ? {} : { method: e.method }),
        ...(e.details === undefined ? {} : { details: e.details })
      })

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
      Effect.mapError((e) =>
        DbalError.notConnected(method, `the in-process daemon could not be loaded: ${e instanceof Error ? e.message : String(e)}`)
      )
    )
  return {
    request: (method, params, options) =>
      Effect.suspend(() =>
        closed
          ? Effect.fail(DbalError.notConnected(method, "the client is closed"))
          : Effect.flatMap(get(method), (t) => t.request(method, params, options).pipe(Effect.mapError(sameClass)))
      ),
    connect: Effect.flatMap(get("connect"), (t) => t.connect.pipe(Effect.mapError(sameClass))),
    close: Effect.suspend(() => {
      closed = true
      state.set("closed")
      const l = loaded
      return l === undefined
        ? Effect.void
        : Effect.flatMap(
            Effect.promise(() => l.catch(() => undefined)),
            (t) => (t === undefined ? Effect.void : t.close)
          )
    }),
    state: () => state.get(),
    onStateChange: (l) => state.subscribe(l)
  }
}

const makeTransport = (config: DBALClientConfig): Transport => {
  const requestTimeoutMs = config.requestTimeoutMs ?? 30_000
  if (!(requestTimeoutMs > 0)) throw new TypeError("requestTimeoutMs must be a positive number of milliseconds")
  if (config.mode === "production") {
    return makeWsTransport({
      endpoint: config.endpoint,
      auth: config.auth,
      requestTimeoutMs,
      ...(config.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: config.connectTimeoutMs }),
      ...(config.reconnect === undefined ? {} : { reconnect: config.reconnect }),
      ...(config.socketOptions === undefined ? {} : { socketOptions: config.socketOptions })
    })
  }
  if (config.mode === "development") {
    const { mode: _mode, requestTimeoutMs: _t, ...rest } = config
    return deferred(async () => (await loadInProcess()).makeInProcessTransport({ ...rest, requestTimeoutMs }))
  }
  throw new TypeError(`mode must be "development" or "production"`)
}

/**
 * The client's own members; the accessors of its entities are added by the constructor (see
 * `Client` for the full type).
 */
export class ClientBase<E extends EntityTable<E>, A extends AccessorTable<E, A>> {
  /** The same API as Effects that fail with DbalError. */
  readonly effect: EffectClient<E, A>
  readonly mode: "development" | "production"
  private readonly transport: Transport
  /** The client's own Effects, as the implementation sees them. */
  private readonly fx: {
    readonly getCapabilities: (options?: CallOptions) => Effect.Effect<Capabilities, DbalError>
    readonly getSchema: (options?: CallOptions) => Effect.Effect<SchemaResult, DbalError>
    readonly transaction: (ops: ReadonlyArray<TransactionOp>, options?: CallOptions) => Effect.Effect<ReadonlyArray<unknown>, DbalError>
  }

  constructor(config: DBALClientConfig, accessors: A) {
    this.mode = config.mode
    const t = makeTransport(config)
    this.transport = t
    const effects: Record<string, EntityEffects<EntityTypes>> = {}
    const byEntity = new Map<string, EntityEffects<EntityTypes>>()
    const forEntity = (name: string) => {
      let e = byEntity.get(name)
      if (e === undefined) byEntity.set(name, (e = entityEffects(t, name)))
      return e
    }
    for (const [accessor, entity] of Object.entries(accessors) as Array<[string, string]>) {
      if (reservedAccessors.includes(accessor))
        throw new TypeError(`accessor ${accessor} is a member of the client: give ${entity} another client.accessor`)
      effects[accessor] = forEntity(entity)
    }
    this.fx = {
      getCapabilities: (options?: CallOptions) => t.request("getCapabilities", [], options) as Effect.Effect<Capabilities, DbalError>,
      getSchema: (options?: CallOptions) => t.request("getSchema", [], options) as Effect.Effect<SchemaResult, DbalError>,
      transaction: (ops: ReadonlyArray<TransactionOp>, options?: CallOptions) =>
        t.request("transaction", [ops], options) as Effect.Effect<ReadonlyArray<unknown>, DbalError>
    }
    const methods = { entity: (name: string) => forEntity(name), ...this.fx, connect: t.connect, close: t.close }
    this.effect = { ...effects, ...methods } as unknown as EffectClient<E, A>
    const self = this as unknown as Record<string, unknown>
    for (const [accessor, entity] of Object.entries(accessors) as Array<[string, string]>)
      self[accessor] = promised(effects[accessor]!, t, entity)
    const promisedByEntity = new Map<string, EntityApi<EntityTypes>>()
    this.entity = ((name: string) => {
      let p = promisedByEntity.get(name)
      if (p === undefined) promisedByEntity.set(name, (p = promised(forEntity(name), t, name)))
      return p
    }) as ClientBase<E, A>["entity"]
  }

  /** Any entity the daemon serves, by name: typed for the generated ones, untyped for others. */
  readonly entity: {
    <N extends keyof E & string>(name: N): EntityApi<E[N]>
    (name: string): EntityApi<AnyEntity>
  }

  getCapabilities(options?: CallOptions): Promise<Capabilities> {
    return runToPromise(this.fx.getCapabilities(options))
  }

  /** The entities and fields this caller may use. */
  getSchema(options?: CallOptions): Promise<SchemaResult> {
    return runToPromise(this.fx.getSchema(options))
  }

  /** All or nothing: see `EffectClient.transaction`. */
  transaction(ops: ReadonlyArray<TransactionOp>, options?: CallOptions): Promise<ReadonlyArray<unknown>> {
    return runToPromise(this.fx.transaction(ops, options))
  }

  /** Connects now (production) or starts the in-process daemon (development); otherwise the first request does. */
  connect(): Promise<void> {
    return runToPromise(this.transport.connect)
  }

  /** Fails what is still waiting, stops reconnecting, releases the connection or the in-process daemon. */
  close(): Promise<void> {
    return runToPromise(this.transport.close)
  }

  get connectionState(): ConnectionState {
    return this.transport.state()
  }

  /** Calls `listener` on every change of `connectionState`; returns the function that unsubscribes. */
  onConnectionStateChange(listener: (state: ConnectionState) => void): () => void {
    return this.transport.onStateChange(listener)
  }
}

/** A client of the entities `E` with accessors `A` (what a generated `createClient` returns). */
export type Client<E extends EntityTable<E>, A extends AccessorTable<E, A>> = ClientBase<E, A> & PromiseAccessors<E, A>

/** Called by generated modules: the client of their entities. */
export const makeClient = <E extends EntityTable<E>, A extends AccessorTable<E, A>>(config: DBALClientConfig, accessors: A): Client<E, A> =>
  new ClientBase<E, A>(config, accessors) as Client<E, A>
