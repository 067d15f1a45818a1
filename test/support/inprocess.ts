/**
 * The daemon in this process, the one way the suites build it (the same layers as the real
 * process, app/Application.ts):
 * - `startInProcess(file)`: every layer of `core` (no WebSocket server), frames answered by the
 *   real RpcHandler on one connection;
 * - `startServing(file)`: the `live` application, a real server on the configured (free) port.
 */
import { Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { core, live } from "../../app/Application.js"
import { type Connection, RpcHandler } from "../../src/rpc/Handler.js"
import { ServerInfo, type ServerInfoShape } from "../../src/services/ServerInfo.js"

export interface InProcess {
  readonly runtime: ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  /** Answers one frame as the daemon would over the wire. */
  readonly handle: (frame: string) => Promise<string>
}

export const startInProcess = async (configFile: string): Promise<InProcess> => {
  const runtime = ManagedRuntime.make(core(configFile)) as unknown as ManagedRuntime.ManagedRuntime<RpcHandler, unknown>
  try {
    const handler = await runtime.runPromise(RpcHandler)
    const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
    return { runtime, handle: (frame) => runtime.runPromise(handler.handle(conn, frame)) }
  } catch (e) {
    await runtime.dispose()
    throw e
  }
}

export interface Serving {
  readonly port: number
  readonly info: ServerInfoShape
  readonly dispose: () => Promise<void>
}

/** The live application listening; with `quiet`, only the daemon's warnings and errors reach the test output. */
export const startServing = async (configFile: string, opts: { readonly quiet?: boolean } = {}): Promise<Serving> => {
  const app = live(configFile)
  const rt = ManagedRuntime.make(opts.quiet === true ? Layer.provide(app, Logger.minimumLogLevel(LogLevel.Warning)) : app)
  try {
    const info = await rt.runPromise(ServerInfo)
    return { port: info.port, info, dispose: () => rt.dispose() }
  } catch (e) {
    await rt.dispose()
    throw e
  }
}
