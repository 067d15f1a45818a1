/**
 * dbal-daemon/client: a typed client of the daemon (see core.ts).
 *
 *   const db = new DBALClient({ mode: "production", endpoint: "wss://dbal.example.com:50051", auth: { token } })
 *   const user = await db.users.create({ username: "ada", email: "ada@example.com" })
 *   // The Effect API's types: import type {} from "dbal-daemon/client/effect" (effect.ts)
 *   const page = await Effect.runPromise(db.effect.pages.list({ filter: { level: { gte: 2 } } }))
 *
 * DBALClient serves the shipped entities; `dbal-daemon generate` writes a module with
 * `createClient` for your own (it imports what it needs from here).
 */
export * from "./runtime.js"
export { DBALClient } from "./client.js"
export * from "./entities.js"
// The generic client type (generated modules name theirs `Client` too).
export type { Client } from "./runtime.js"
