/**
 * The daemon in-process, without its WebSocket server: every layer of `core` built from a
 * configuration file, and frames answered by the real RpcHandler on one connection.
 */
import { ManagedRuntime } from "effect"
import { core } from "../../app/Application.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"

export interface InProcess {
  readonly runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  /** Answers one frame as the daemon would over the wire. */
  readonly handle: (frame: string) => Promise<string>
}

export const startInProcess = async (configFile: string): Promise<InProcess> => {
  const runtime = ManagedRuntime.make(core(configFile)) as unknown as ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  const handler = await runtime.runPromise(RpcHandler)
  const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
  return { runtime, handle: (frame) => runtime.runPromise(handler.handle(conn, frame)) }
}
