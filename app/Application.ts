/**
 * The live application: every layer composed. Tests build the same graph with some layers
 * swapped (see test/support).
 */
import { Layer } from "effect"
import type { AppConfig } from "../src/Config.js"
import * as RpcHandler from "../layers/RpcHandler.js"
import * as Acl from "../layers/Acl.js"
import * as AuditLog from "../layers/AuditLog.js"
import * as Auth from "../layers/Auth.js"
import * as Changes from "../layers/Changes.js"
import * as Config from "../layers/Config.js"
import * as Database from "../layers/Database.js"
import * as Entities from "../layers/Entities.js"
import * as RateLimiter from "../layers/RateLimiter.js"
import * as Realtime from "../layers/Realtime.js"
import * as ResultCache from "../layers/ResultCache.js"
import * as Tracing from "../layers/Tracing.js"
import * as WebSocketServer from "../layers/WebSocketServer.js"

/** Everything below the server: config, entities, database and the request services. */
export const core = (configFile: string, env?: Record<string, string | undefined>) => coreWith(Config.layer(configFile, env))

/** `core` on a given Config layer (the in-process client builds its configuration in memory). */
export const coreWith = <E>(config: Layer.Layer<AppConfig, E>) => {
  const withEntities = Layer.provideMerge(Entities.layer, config)
  const withDatabase = Layer.provideMerge(Database.layer, withEntities)
  const services = Layer.provideMerge(
    Layer.mergeAll(Auth.layer, Acl.layer, RateLimiter.layer, AuditLog.layer, ResultCache.layer),
    Changes.layer
  )
  const withRealtime = Layer.provideMerge(Realtime.layer, services)
  return Layer.provideMerge(Layer.provideMerge(RpcHandler.layer, withRealtime), withDatabase)
}

/**
 * The server on top of `core`, with span export (`tracing`, off by default) installed before it:
 * the tracer set by Tracing.layer is in the runtime the server runs each request with.
 */
export const live = (configFile: string, env?: Record<string, string | undefined>) =>
  Layer.provideMerge(WebSocketServer.layer, Layer.provideMerge(Tracing.layer, core(configFile, env)))
