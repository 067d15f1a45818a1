/**
 * dbal-daemon/client: a typed client of the daemon (see client.ts).
 *
 *   const db = new DBALClient({ mode: "production", endpoint: "wss://dbal.example.com:50051", auth: { token } })
 *   const user = await db.users.create({ username: "ada", email: "ada@example.com" })
 *   const page = await Effect.runPromise(db.effect.pages.list({ filter: { level: { gte: 2 } } }))
 */
export {
  DBALClient,
  runToPromise,
  type DBALClientConfig,
  type DevelopmentConfig,
  type EffectClient,
  type EntityApi,
  type EntityEffectApi,
  type LookupField,
  type ProductionConfig,
  type UpsertCreate
} from "./client.js"
export { DbalError, isDbalError, type DbalErrorKind, type FieldError } from "./errors.js"
export type { ConnectionSettings, DaemonSettings } from "./inprocess.js"
export type { CallOptions, ConnectionState } from "./transport.js"
export type { ReconnectOptions } from "./ws.js"
export * from "./types.js"
