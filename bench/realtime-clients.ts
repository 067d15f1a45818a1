/**
 * The clients of bench/realtime.ts: a WebSocket connection that makes requests and notes when
 * pushed frames arrive, and the subscribing side (100 connections × 100 subscriptions) as one
 * object, run in the benchmark's thread or in a worker thread (bench/realtime-subscribers.ts).
 */
import WebSocket from "ws"

export type Rec = Record<string, unknown>

/** Milliseconds on a clock shared by the threads of the process. */
export const now = (): number => performance.timeOrigin + performance.now()

export interface Conn {
  readonly ws: WebSocket
  readonly call: (method: string, params: ReadonlyArray<unknown>) => Promise<Rec>
  /** Sees the receipt time of every pushed frame. */
  onPush: ((at: number) => void) | undefined
}

/** `{"s`: a pushed frame starts `{"subscription"`, an answer `{"id"`. Tested on the bytes: pushed frames are not parsed. */
const isPushed = (data: Buffer): boolean => data[0] === 0x7b && data[2] === 0x73

export const open = (port: number, auth: Rec): Promise<Conn> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    const pending = new Map<string, (a: Rec) => void>()
    let n = 0
    const conn: Conn = {
      ws,
      onPush: undefined,
      call: (method, params) =>
        new Promise((ok) => {
          const id = `r${++n}`
          pending.set(id, ok)
          ws.send(JSON.stringify({ id, method, params }))
        })
    }
    ws.on("message", (data: Buffer) => {
      if (isPushed(data)) return conn.onPush?.(now())
      const a = JSON.parse(String(data)) as Rec
      const r = pending.get(a.id as string)
      pending.delete(a.id as string)
      r?.(a)
    })
    ws.once("error", reject)
    ws.once("open", async () => {
      const a = await conn.call("authenticate", [auth])
      if (a.error !== undefined) return reject(new Error(`authenticate: ${JSON.stringify(a.error)}`))
      resolve(conn)
    })
  })

export const ok = async (c: Conn, method: string, params: ReadonlyArray<unknown>): Promise<Rec> => {
  const a = await c.call(method, params)
  if (a.error !== undefined) throw new Error(`${method}: ${JSON.stringify(a.error)}`)
  return a.result as Rec
}

export interface SubscribersSetup {
  readonly port: number
  readonly principals: ReadonlyArray<Rec>
  readonly connections: number
  readonly perConnection: number
  readonly filters: ReadonlyArray<Rec | undefined>
}

/** The subscribing side. Every method resolves when done; `arm` then `done` time one change's events. */
export interface Subscribers {
  /** Subscribes every connection `perConnection` times (each connection one request after another); seconds taken. */
  readonly subscribeAll: () => Promise<number>
  readonly unsubscribeAll: () => Promise<void>
  /** Starts noting receipt times; `done` resolves with them once `count` frames arrived (fails after 30 s). */
  readonly arm: (count: number) => Promise<void>
  readonly done: () => Promise<Array<number>>
  readonly close: () => Promise<void>
}

export const makeSubscribers = async (s: SubscribersSetup): Promise<Subscribers> => {
  const conns: Array<Conn> = []
  for (let i = 0; i < s.connections; i++) conns.push(await open(s.port, s.principals[i % s.principals.length]!))
  const subscribed: Array<[Conn, string]> = []
  let finished: Promise<Array<number>> = Promise.resolve([])
  return {
    subscribeAll: async () => {
      const t0 = performance.now()
      await Promise.all(
        conns.map(async (c, i) => {
          for (let k = 0; k < s.perConnection; k++) {
            const f = s.filters[(i + k) % s.filters.length]
            const a = await ok(c, "subscribe", ["PageView", ...(f === undefined ? [] : [f])])
            subscribed.push([c, String(a.subscription)])
          }
        })
      )
      return (performance.now() - t0) / 1000
    },
    unsubscribeAll: async () => {
      const byConn = new Map<Conn, Array<string>>()
      for (const [c, id] of subscribed.splice(0)) byConn.set(c, [...(byConn.get(c) ?? []), id])
      await Promise.all(
        [...byConn].map(async ([c, ids]) => {
          for (const id of ids) await ok(c, "unsubscribe", [id])
        })
      )
    },
    arm: async (count) => {
      const times: Array<number> = []
      finished = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${count - times.length} events missing after 30 s`)), 30_000)
        for (const c of conns)
          c.onPush = (at) => {
            times.push(at)
            if (times.length === count) {
              clearTimeout(timer)
              for (const x of conns) x.onPush = undefined
              resolve(times)
            }
          }
      })
      // Unhandled until `done` is called.
      finished.catch(() => undefined)
    },
    done: () => finished,
    close: async () => {
      for (const c of conns) c.ws.terminate()
    }
  }
}
