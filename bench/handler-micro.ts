/**
 * In-process cost of one request through the RpcHandler (no network): reads by id on SQLite as a
 * session user with a row-filter rule. Prints µs of CPU per request. `npx tsx bench/handler-micro.ts`
 * MICRO_AUDIT=0 (no audit log), MICRO_RATE_LIMIT=0 (no rate limiter) and MICRO_AUTH=service (a
 * service token: no session, no row filter) take one stage away, to see what it costs;
 * MICRO_DB=postgresql runs it on the local PostgreSQL instead.
 */
import { Layer, ManagedRuntime, Runtime } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { core } from "../app/Application.js"
import * as Tracing from "../layers/Tracing.js"
import { requestRuntime } from "../src/query/Timeout.js"
import { type Connection, RpcHandler } from "../src/rpc/Handler.js"
import { createDatabase, daemonConfig, serviceAuth, tempDir, writeConfig } from "../test/support/services.js"

const N = Number(process.env.MICRO_N ?? 5000)
const db = await createDatabase(process.env.MICRO_DB === "postgresql" ? "postgresql" : "sqlite")
const dir = tempDir("micro")
const rules = path.join(dir, "rules.yaml")
fs.writeFileSync(
  rules,
  JSON.stringify({ rules: [{ roles: ["god"], entities: ["PageView"], operations: "*", filter: { isActive: true } }] })
)
const base = daemonConfig(db)
const file = writeConfig(
  {
    ...base,
    security: {
      audit_log: process.env.MICRO_AUDIT !== "0",
      audit_log_path: path.join(dir, "audit.log"),
      acl: { rules_file: rules },
      rate_limit: { enabled: process.env.MICRO_RATE_LIMIT !== "0", requests_per_minute: 1e9, burst: 1e9 },
      auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }] }
    }
  },
  dir
)
// As the daemon runs: with its tracing layer (spans off unless exported).
const rt = ManagedRuntime.make(Layer.provideMerge(Tracing.layer, core(file)))
const handler = await rt.runPromise(RpcHandler)
// As the server runs each frame: a fiber of the request runtime.
const run = Runtime.runPromise(requestRuntime(await rt.runtime()))
const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
let id = 0
const call = async (method: string, params: ReadonlyArray<unknown>, auth: object = serviceAuth) =>
  JSON.parse(await run(handler.handle(conn, JSON.stringify({ id: ++id, method, params, auth })))) as { result: { id: string } }
const user = (await call("create", ["User", { username: "micro", email: "micro@example.com", role: "god" }])).result
await call("create", ["Session", { userId: user.id, token: "micro-session-token", expiresAt: "2099-01-01T00:00:00Z" }])
const page = (await call("create", ["PageView", { slug: "micro", title: "M", level: 1, layout: {} }])).result
const asUser = process.env.MICRO_AUTH === "service" ? serviceAuth : { token: "micro-session-token", user_id: user.id }
for (let i = 0; i < 500; i++) await call("read", ["PageView", page.id], asUser)
const t0 = process.cpuUsage()
const w0 = performance.now()
for (let i = 0; i < N; i++) await call("read", ["PageView", page.id], asUser)
const cpu = process.cpuUsage(t0)
console.log(
  `${N} reads: ${((cpu.user + cpu.system) / N).toFixed(0)} µs CPU and ${(((performance.now() - w0) * 1000) / N).toFixed(0)} µs wall per request`
)
await rt.dispose()
await db.drop()
