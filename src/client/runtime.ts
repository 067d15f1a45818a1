/**
 * What a generated client module imports: the client over any entities, its types and errors.
 * (index.ts adds DBALClient and the shipped entities on top.)
 */
export * from "./core.js"
export * from "./types.js"
export { DbalError, isDbalError, type DbalErrorKind, type FieldError } from "./errors.js"
export type { CallOptions, ConnectionState, ReconnectOptions, SocketOptions } from "./options.js"
