/**
 * The listening server as the rest of the program sees it: where it listens, its connection
 * counts, and the TLS reload that SIGHUP triggers. Implemented by layers/WebSocketServer.ts.
 */
import { Context, type Effect } from "effect"

export interface ServerInfoShape {
  readonly port: number
  readonly host: string
  readonly tls: boolean
  readonly connections: () => { readonly active: number; readonly total: number }
  /** Re-reads the TLS certificate files (what SIGHUP does). */
  readonly reloadTls: Effect.Effect<void, Error>
}

export class ServerInfo extends Context.Tag("dbal/ServerInfo")<ServerInfo, ServerInfoShape>() {}
