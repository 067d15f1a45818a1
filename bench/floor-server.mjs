/**
 * The transport floor of `npm run bench`: the least a separate WebSocket server process can cost.
 * A bare `ws` server with a `pg` pool that answers {id, params: [entity, id]} with the row the
 * daemon's read by id returns (the same SQL, as a named prepared statement) — and nothing else: no
 * authentication, access rules, rate limit, audit, validation or Effect runtime.
 * What it adds over the same query run in the benchmark's own process is what the hop itself
 * (a second process, a WebSocket frame each way, JSON) costs on this machine; no daemon can add
 * less. Plain JavaScript run by node, so that no loader or compiler is measured.
 *
 * argv: <postgres url> <pool size> <select sql with $1 for the id>. Prints {"port": n} when listening.
 */
import pg from "pg"
import { WebSocketServer } from "ws"

const [url, poolSize, text] = process.argv.slice(2)
const pool = new pg.Pool({ connectionString: url, max: Number(poolSize) })
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
