/**
 * A read by id through the RpcHandler in this process (no network), as `npm run bench` sets the
 * daemon up: a session user whose rule has a row filter, rate limit on, audit log on. Prints the
 * Effect operations the fiber runtime evaluates per read (a Supervisor with op supervision on,
 * by op code) and, in a separate run without supervision, the CPU per read.
 *
 *   npx tsx bench/read-steps.ts            (PostgreSQL; READ_DB=sqlite for SQLite)
 *   READ_N (5000 timed reads), READ_SERVICE=1 (a service token: no session, no row filter)
 */
import { Effect, FiberId, FiberRef, FiberRefs, Layer, ManagedRuntime, Runtime, RuntimeFlags, Supervisor } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { core } from "../app/Application.js"
import * as Tracing from "../layers/Tracing.js"
import { requestRuntime } from "../src/query/Timeout.js"
import { type Connection, RpcHandler } from "../src/rpc/Handler.js"
import { createDatabase, daemonConfig, serviceAuth, tempDir, writeConfig } from "../test/support/services.js"

const N = Number(process.env.READ_N ?? 5000)
const db = await createDatabase(process.env.READ_DB === "sqlite" ? "sqlite" : "postgresql")
const dir = tempDir("read-steps")
const rules = path.join(dir, "rules.yaml")
fs.writeFileSync(
  rules,
  JSON.stringify({ rules: [{ roles: ["god"], entities: ["PageView"], operations: "*", filter: { isActive: true } }] })
)
const file = writeConfig(
  {
    ...daemonConfig(db),
    security: {
      audit_log: true,
      audit_log_path: path.join(dir, "audit.log"),
      acl: { rules_file: rules },
      rate_limit: { enabled: true, requests_per_minute: 1e9, burst: 1e9 },
      auth: { service_tokens: [{ name: "tests", token: serviceAuth.token }] }
    }
  },
  dir
)

/** Counts every operation a supervised fiber evaluates, by op code, while `on`. */
class OpCounter extends Supervisor.AbstractSupervisor<void> {
  on = false
  total = 0
  readonly byOp = new Map<string, number>()
  get value() {
    return Effect.void
  }
  trace: Array<string> | undefined
  override onEffect(_fiber: unknown, effect: unknown) {
    if (!this.on) return
    this.total++
    const op = String((effect as { _op?: unknown })._op ?? "?")
    if (this.trace !== undefined) {
      const e = effect as { effect_instruction_i0?: unknown; effect_instruction_i1?: unknown; constructor?: { name?: string } }
      const fn = (x: unknown) => (typeof x === "function" ? x.name || String(x).slice(0, 60).replace(/\s+/g, " ") : "")
      this.trace.push(
        `${op} ${fn(e.effect_instruction_i1) || fn(e.effect_instruction_i0)} ${op === "Commit" ? (e.constructor?.name ?? "") : ""}`
      )
    }
    this.byOp.set(op, (this.byOp.get(op) ?? 0) + 1)
  }
}
const counter = new OpCounter()

const rt = ManagedRuntime.make(Layer.provideMerge(Tracing.layer, core(file)))
const handler = await rt.runPromise(RpcHandler)
const base = requestRuntime(await rt.runtime())
const plain = Runtime.runPromise(base)
// The supervisor is a FiberRef of the runtime: set for the supervised runner only.
const supervised = Runtime.runPromise(
  Runtime.enableRuntimeFlag(
    Runtime.make({
      context: base.context,
      runtimeFlags: base.runtimeFlags,
      fiberRefs: FiberRefs.updateAs(base.fiberRefs, { fiberId: FiberId.none, fiberRef: FiberRef.currentSupervisor, value: counter })
    }),
    RuntimeFlags.OpSupervision
  )
)
const withCounter = <A>(e: Effect.Effect<A>) => e

const conn: Connection = { remoteAddress: "127.0.0.1", auth: undefined }
let id = 0
const frame = (method: string, params: ReadonlyArray<unknown>, auth: object) => JSON.stringify({ id: ++id, method, params, auth })
const call = async (method: string, params: ReadonlyArray<unknown>, auth: object = serviceAuth) =>
  JSON.parse(await plain(handler.handle(conn, frame(method, params, auth)))) as { result: { id: string }; error?: unknown }
const user = (await call("create", ["User", { username: "steps", email: "steps@example.com", role: "god" }])).result
await call("create", ["Session", { userId: user.id, token: "steps-session-token", expiresAt: "2099-01-01T00:00:00Z" }])
const page = (await call("create", ["PageView", { slug: "steps", title: "S", level: 1, layout: {} }])).result
const asUser = process.env.READ_SERVICE === "1" ? serviceAuth : { token: "steps-session-token", user_id: user.id }
const read = () => handler.handle(conn, frame("read", ["PageView", page.id], asUser))
for (let i = 0; i < 1000; i++) await plain(read())
const check = JSON.parse(await plain(read())) as { result?: { id?: string } }
if (check.result?.id !== page.id) throw new Error(`the read failed: ${JSON.stringify(check)}`)

// Operations per read: the handler's own fiber (the server forks each frame on the request runtime).
const COUNTED = 200
counter.on = true
for (let i = 0; i < COUNTED; i++) await supervised(withCounter(read()))
counter.on = false
const perRead = counter.total / COUNTED
if (process.env.READ_TRACE === "1") {
  counter.trace = []
  counter.on = true
  await supervised(withCounter(read()))
  counter.on = false
  console.log(counter.trace.join("\n"))
}
const ops = [...counter.byOp].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${(n / COUNTED).toFixed(1)}`)
console.log(`Effect operations per read: ${perRead.toFixed(1)} (${ops.join(", ")})`)

const t0 = process.cpuUsage()
const w0 = performance.now()
for (let i = 0; i < N; i++) await plain(read())
const cpu = process.cpuUsage(t0)
console.log(
  `${N} reads: ${((cpu.user + cpu.system) / N).toFixed(0)} µs CPU and ${(((performance.now() - w0) * 1000) / N).toFixed(0)} µs wall per read`
)
await rt.dispose()
await db.drop()
fs.rmSync(dir, { recursive: true, force: true })
