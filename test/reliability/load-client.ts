/**
 * Load generator of test/reliability/load.test.ts, run as a child process (`fork` with
 * `--import tsx`) so that the generator, the daemon and the test runner each have their own event
 * loop. It opens many real WebSocket connections to the daemon, each doing a mix of operations
 * at a steady modest rate (one request at a time per connection, then a random think time), and
 * reports latencies per operation class, errors by code and dropped connections.
 *
 * Protocol over the IPC channel (types below): the parent sends `start` with the plan; the child
 * answers `opened` once every connection is open (or refused), then runs the mix on all of them. `mark` resets
 * the statistics (end of the warm-up); `stop` lets the in-flight requests finish and answers
 * `stats`; `close` closes every connection (1000) and answers `closed`, then the child exits.
 */
import WebSocket from "ws"

export interface Group {
  /** Service token name (the principal's user id) and its token. */
  readonly principal: string
  readonly token: string
  readonly connections: number
  /**
   * Mean think time between an answer and the next request of one connection; for a greedy
   * connection, the mean time between its requests, which it sends without waiting for the
   * answers (at most `GREEDY_IN_FLIGHT` pending), so that it stays over its rate limit however
   * slow the answers are.
   */
  readonly meanPeriodMs: number
  /** Greedy connections only read (their requests overlap: no own records to race on). */
  readonly greedy: boolean
}

export interface Plan {
  readonly port: number
  readonly groups: ReadonlyArray<Group>
  /** Prefix making this run's usernames unique in the database. */
  readonly tag: string
  /** Connections opened at once while connecting. */
  readonly openConcurrency: number
  /** A request without an answer after this long counts as an error `timeout`. */
  readonly requestTimeoutMs: number
  /** A User every greedy connection reads. */
  readonly seedUserId: string
  /** Each connection's first request comes at a random time within this (the warm-up). */
  readonly startSpreadMs: number
}

export type OpClass = "create" | "read" | "update" | "delete" | "list" | "count" | "include"

export interface Latency {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/**
 * Latencies, request counts and the timeline cover the requests sent after the `mark` (the
 * measured run); errors, successes and drops cover the whole run, warm-up included.
 */
export interface Stats {
  /** Requests sent after the `mark` and answered (or timed out). */
  readonly requests: number
  readonly elapsedMs: number
  readonly latency: Record<string, Latency>
  /** All operations together, 429s excluded (a 429 is answered before any work). */
  readonly overall: Latency
  /** Error answers by code (plus `timeout`, `send`), for normal and greedy principals. */
  readonly errors: { readonly normal: Record<string, number>; readonly greedy: Record<string, number> }
  /** Requests answered without error, by kind of principal. */
  readonly ok: { readonly normal: number; readonly greedy: number }
  readonly open: number
  /** Per second since the `mark`: answers, and the slowest of them (ms). */
  readonly timeline: ReadonlyArray<readonly [number, number]>
  /** Connections the daemon closed (or that failed) while the test had not asked for it, by close code and reason. */
  readonly dropped: Record<string, number>
}

export type ToChild = { type: "start"; plan: Plan } | { type: "mark" } | { type: "stop" } | { type: "close" }

export type FromChild =
  | { type: "opened"; open: number; refused: Record<string, number>; ms: number; connect: Latency }
  | { type: "progress"; requests: number; errors: number; open: number }
  | { type: "stats"; stats: Stats }
  | { type: "closed"; closedCleanly: number }
  | { type: "failed"; message: string }

const send = (m: FromChild) => process.send?.(m)

interface Answer {
  readonly id: unknown
  readonly result?: unknown
  readonly error?: { readonly code: number }
}

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const summarize = (samples: ReadonlyArray<number>): Latency => {
  const s = [...samples].sort((a, b) => a - b)
  const r = (x: number) => Math.round(x * 10) / 10
  return { n: s.length, p50: r(percentile(s, 50)), p99: r(percentile(s, 99)), max: r(s[s.length - 1] ?? 0) }
}

/** The operation mix (weights), applied per connection. */
const MIX: ReadonlyArray<readonly [OpClass, number]> = [
  ["create", 15],
  ["read", 20],
  ["update", 15],
  ["list", 20],
  ["count", 10],
  ["delete", 10],
  ["include", 10]
]
const MIX_TOTAL = MIX.reduce((n, [, w]) => n + w, 0)
const READS: ReadonlyArray<OpClass> = ["read", "list", "count", "include"]
const GREEDY_IN_FLIGHT = 8
/** Records a connection keeps at most: past it, a create becomes a delete (the tables stay small). */
const MAX_OWN = 4

const pick = (): OpClass => {
  let x = Math.random() * MIX_TOTAL
  for (const [op, w] of MIX) {
    x -= w
    if (x < 0) return op
  }
  return "read"
}

const run = (plan: Plan) => {
  const url = `ws://127.0.0.1:${plan.port}`
  let stopping = false
  let closing = false
  /** No request is measured before the first `mark`. */
  let markAt = Number.POSITIVE_INFINITY
  let stopAt = 0
  let requests = 0
  let samples = new Map<OpClass, Array<number>>()
  const errors = { normal: {} as Record<string, number>, greedy: {} as Record<string, number> }
  const ok = { normal: 0, greedy: 0 }
  let timeline: Array<[number, number]> = []
  const dropped: Record<string, number> = {}
  const sockets: Array<WebSocket> = []
  /** Starts each connection's loop once every connection is open. */
  const starters: Array<() => void> = []
  const connectMs: Array<number> = []
  const inFlight = new Set<Promise<void>>()
  const count = (bag: Record<string, number>, key: string) => {
    bag[key] = (bag[key] ?? 0) + 1
  }

  const connection = (index: number, group: Group) => {
    const opening = performance.now()
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const auth = { token: group.token, user_id: group.principal }
    const pending = new Map<string, (a: Answer) => void>()
    const own: Array<string> = []
    let seq = 0
    let timer: NodeJS.Timeout | undefined
    ws.on("message", (data) => {
      const a = JSON.parse(String(data)) as Answer
      const w = pending.get(String(a.id))
      pending.delete(String(a.id))
      w?.(a)
    })
    const call = (method: string, params: ReadonlyArray<unknown>): Promise<Answer> =>
      new Promise((resolve) => {
        const id = `${index}.${++seq}`
        const t = setTimeout(() => {
          pending.delete(id)
          resolve({ id, error: { code: -1 } })
        }, plan.requestTimeoutMs)
        pending.set(id, (a) => {
          clearTimeout(t)
          resolve(a)
        })
        ws.send(JSON.stringify({ id, method, params, auth }), (e) => {
          if (e === undefined || e === null) return
          clearTimeout(t)
          pending.delete(id)
          resolve({ id, error: { code: -2 } })
        })
      })
    let pendingCalls = 0
    const one = async () => {
      let op = pick()
      if (group.greedy) op = READS[Math.floor(Math.random() * READS.length)]!
      if ((op === "read" || op === "update" || op === "delete") && own.length === 0 && !group.greedy) op = "create"
      if (op === "create" && own.length >= MAX_OWN) op = "delete"
      const mine = group.greedy ? plan.seedUserId : own[Math.floor(Math.random() * own.length)]
      const name = `${plan.tag}${index}_${seq + 1}`
      const [method, params]: [string, ReadonlyArray<unknown>] =
        op === "create"
          ? ["create", ["User", { username: name, email: `${name}@example.com` }]]
          : op === "read"
            ? ["read", ["User", mine]]
            : op === "update"
              ? ["update", ["User", mine, { role: Math.random() < 0.5 ? "admin" : "user" }]]
              : op === "delete"
                ? ["delete", ["User", mine]]
                : op === "list"
                  ? [
                      "list",
                      [
                        "User",
                        {
                          filter: { username: { startsWith: `${plan.tag}${index % 50}` }, role: { in: ["user", "admin"] } },
                          sort: [{ createdAt: "desc" }],
                          limit: 10
                        }
                      ]
                    ]
                  : op === "count"
                    ? ["count", ["User", { role: "admin" }]]
                    : ["list", ["LuaScript", { include: ["creator"], sort: { name: "asc" }, limit: 5 }]]
      const t0 = performance.now()
      const measured = t0 >= markAt
      pendingCalls++
      const a = await call(method, params).finally(() => pendingCalls--)
      const ms = performance.now() - t0
      if (measured) {
        requests++
        const second = Math.floor((performance.now() - markAt) / 1000)
        while (timeline.length <= second) timeline.push([0, 0])
        const slot = timeline[second]!
        slot[0]++
        slot[1] = Math.max(slot[1], Math.round(ms))
      }
      const kind = group.greedy ? "greedy" : "normal"
      if (a.error !== undefined) {
        const code = a.error.code === -1 ? "timeout" : a.error.code === -2 ? "send" : String(a.error.code)
        count(errors[kind], code)
        return
      }
      ok[kind]++
      if (measured) {
        let list = samples.get(op)
        if (list === undefined) samples.set(op, (list = []))
        list.push(ms)
      }
      if (op === "create") own.push((a.result as { id: string }).id)
      if (op === "delete") own.splice(own.indexOf(mine!), 1)
    }
    // Exponential think times, cut at 3 × the mean: a connection is never idle for long (the
    // daemon's idle timeout is for connections that stopped working, not for slow ones).
    const think = () => Math.min(3, -Math.log(1 - Math.random())) * group.meanPeriodMs
    const loop = () => {
      if (stopping) return
      if (group.greedy && pendingCalls >= GREEDY_IN_FLIGHT) {
        timer = setTimeout(loop, think())
        return
      }
      const p = one().finally(() => {
        inFlight.delete(p)
        if (!stopping && !group.greedy) timer = setTimeout(loop, think())
      })
      inFlight.add(p)
      if (group.greedy) timer = setTimeout(loop, think())
    }
    return new Promise<{ ws?: WebSocket; refused?: string }>((resolve) => {
      ws.once("open", () => {
        ws.on("close", (code, reason) => {
          if (timer !== undefined) clearTimeout(timer)
          if (!closing) count(dropped, `${code}${reason.length > 0 ? ` ${reason.toString()}` : ""}`)
          for (const w of pending.values()) w({ id: null, error: { code: -2 } })
          pending.clear()
        })
        resolve({ ws })
      })
      ws.once("unexpected-response", (_req, res) => {
        resolve({ refused: `http ${res.statusCode ?? 0}` })
        ws.terminate()
      })
      ws.once("error", (e) => resolve({ refused: (e as NodeJS.ErrnoException).code ?? e.message }))
    }).then((r) => {
      if (r.ws !== undefined) {
        connectMs.push(performance.now() - opening)
        sockets.push(r.ws)
        starters.push(() => (timer = setTimeout(loop, Math.random() * plan.startSpreadMs)))
      }
      return r
    })
  }

  const open = async () => {
    const t0 = performance.now()
    const refused: Record<string, number> = {}
    const todo: Array<[number, Group]> = []
    let i = 0
    for (const g of plan.groups) for (let k = 0; k < g.connections; k++) todo.push([i++, g])
    let next = 0
    const worker = async () => {
      while (next < todo.length) {
        const [index, g] = todo[next++]!
        const r = await connection(index, g)
        if (r.refused !== undefined) count(refused, r.refused)
      }
    }
    await Promise.all(Array.from({ length: plan.openConcurrency }, worker))
    const ms = Math.round(performance.now() - t0)
    for (const s of starters) s()
    send({
      type: "opened",
      open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length,
      refused,
      ms,
      connect: summarize(connectMs)
    })
  }

  const progress = setInterval(() => {
    const e = [...Object.values(errors.normal), ...Object.values(errors.greedy)].reduce((n, x) => n + x, 0)
    send({ type: "progress", requests, errors: e, open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length })
  }, 15_000)

  const stats = (): Stats => {
    const latency: Record<string, Latency> = {}
    const all: Array<number> = []
    for (const [op, s] of samples) {
      latency[op] = summarize(s)
      for (const x of s) all.push(x)
    }
    return {
      requests,
      elapsedMs: Number.isFinite(markAt) ? Math.round(stopAt - markAt) : 0,
      latency,
      overall: summarize(all),
      errors,
      ok,
      timeline,
      open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length,
      dropped
    }
  }

  process.on("message", (m: ToChild) => {
    if (m.type === "mark") {
      markAt = performance.now()
      requests = 0
      samples = new Map()
      timeline = []
    } else if (m.type === "stop") {
      stopping = true
      stopAt = performance.now()
      void Promise.all([...inFlight]).then(() => send({ type: "stats", stats: stats() }))
    } else if (m.type === "close") {
      closing = true
      clearInterval(progress)
      let clean = 0
      void Promise.all(
        sockets.map(
          (ws) =>
            new Promise<void>((r) => {
              if (ws.readyState === WebSocket.CLOSED) return r()
              const t = setTimeout(() => {
                ws.terminate()
                r()
              }, 10_000)
              ws.once("close", (code) => {
                if (code === 1000) clean++
                clearTimeout(t)
                r()
              })
              ws.close(1000)
            })
        )
      ).then(() => {
        send({ type: "closed", closedCleanly: clean })
        process.disconnect?.()
      })
    }
  })

  open().catch((e: unknown) => send({ type: "failed", message: e instanceof Error ? e.message : String(e) }))
}

if (process.send !== undefined && process.env.DBAL_LOAD_CLIENT === "1") {
  process.once("message", (m: ToChild) => {
    if (m.type === "start") run(m.plan)
  })
  // The parent going away ends the generator too.
  process.once("disconnect", () => process.exit(0))
}
