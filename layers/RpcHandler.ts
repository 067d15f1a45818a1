/**
 * The request handler as a layer: the program of src/rpc/Handler.ts (`make`) over the services
 * it needs (configuration, registry, database, auth, access, rate limiter, audit, changes, cache).
 */
import { Layer } from "effect"
import { make, RpcHandler } from "../src/rpc/Handler.js"

export const layer = Layer.effect(RpcHandler, make)
