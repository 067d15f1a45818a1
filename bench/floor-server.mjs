/**
 * The transport floor of `npm run bench`: the least a separate WebSocket server process can cost.
 * A bare `ws` server with a `pg` pool that answers {id, params: [entity, id]} with the row the
 * daemon's read by id returns (the same SQL, as a named prepared statement) — and nothing else: no
 * authentication, access rules, rate limit, audit, validation or Effect runtime.
 * What it adds over the same query run in the benchmark's own process is what the hop itself
 * (a second process, a WebSocket frame each way, JSON) costs on this machine; no daemon can add
 * less. Plain JavaScript run by node, so that no loader or compiler is measured.
 *
 * argv: <postgres url> <pool size> <select sql with $1 for the id> [<cpu>]. Prints {"port": n} when
 * listening.
 * With <cpu> (the bench's placement measurement: every process of a read on one vCPU), the server
 * first pins itself, all its threads, to that CPU (`taskset -a -pc`), and the pool pins the
 * PostgreSQL backend of each new connection (`SELECT pg_backend_pid()`, then `taskset -pc`) in its
 * onConnect hook, which pg-pool awaits before the connection serves a query; the pool then keeps
 * its connections (no idle timeout), so that no unpinned-then-pinned reconnect lands in a
 * measurement. One connection is opened before listening: if pinning fails (no taskset, not
 * allowed, a backend that is not a local postgres process) it prints {"error": "..."} and exits 1.
 * The pinned backends exit with their connections (SIGTERM ends the pool).
 */
import { execFileSync } from "node:child_process"
import pg from "pg"
import { WebSocketServer } from "ws"
import { pinBackendTo } from "./pin-backend.mjs"

const [url, poolSize, text, pinCpu = ""] = process.argv.slice(2)
const pinned = pinCpu !== ""
const pool = new pg.Pool({
  connectionString: url,
  max: Number(poolSize),
  ...(pinned ? { onConnect: pinBackendTo(pinCpu), idleTimeoutMillis: 0 } : {})
})
if (pinned) {
  try {
    execFileSync("taskset", ["-a", "-pc", pinCpu, String(process.pid)], { stdio: ["ignore", "ignore", "pipe"] })
    ;(await pool.connect()).release()
  } catch (e) {
    const why = String(e?.stderr?.toString().trim() || e?.message || e).split("\n")[0]
    console.log(JSON.stringify({ error: `pinning to CPU ${pinCpu} failed: ${why}` }))
    await pool.end().catch(() => undefined)
    process.exit(1)
  }
}
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false })
wss.on("listening", () => console.log(JSON.stringify({ port: wss.address().port })))
wss.on("connection", (ws) => {
  ws.on("message", (data) => {
    const req = JSON.parse(data.toString("utf8"))
    pool.query({ name: "floor_read", text, values: [req.params[1]] }).then(
      (r) => ws.send(JSON.stringify({ id: req.id, result: r.rows[0] ?? null })),
      (e) => ws.send(JSON.stringify({ id: req.id, error: { code: 500, message: String(e.message) } }))
    )
  })
})
process.on("SIGTERM", () => {
  wss.close()
  void pool.end().finally(() => process.exit(0))
})
