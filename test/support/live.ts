/**
 * A WebSocket client of the daemon for realtime tests: requests by id, and every pushed frame
 * (a frame without `id`: a subscription's event or its ending error) kept per subscription in
 * arrival order. Waits are bounded; the absence of an event is shown with a later event the
 * subscriber must get (events of one replica arrive in the order it handled the changes).
 */
import WebSocket from "ws"
import type { Answer, Rec, WireError } from "./types.js"

export interface Pushed {
  readonly subscription: string
  readonly event?: "create" | "update" | "delete"
  readonly record?: Rec
  readonly error?: WireError
}

export interface LiveClient {
  readonly ws: WebSocket
  readonly call: (method: string, params?: ReadonlyArray<unknown>, auth?: Rec | null) => Promise<Answer>
  /** Subscribes (expects success) and returns the subscription id. */
  readonly subscribe: (entity: string, options?: Rec, auth?: Rec | null) => Promise<string>
  /**
   * The frames of `subscription` up to and including the first that satisfies `until`, removed
   * from the queue; fails after `timeoutMs` with what had arrived.
   */
  readonly upTo: (subscription: string, until: (p: Pushed) => boolean, timeoutMs?: number) => Promise<Array<Pushed>>
  /** The frames of `subscription` received and not yet taken. */
  readonly pending: (subscription: string) => ReadonlyArray<Pushed>
  /** Resolves with the close code (bounded). */
  readonly closed: (timeoutMs?: number) => Promise<number>
  readonly close: () => Promise<void>
}

export const connectLive = (port: number, defaultAuth?: Rec): Promise<LiveClient> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { maxPayload: 64 * 1024 * 1024 })
    const pending = new Map<unknown, { ok: (a: Answer) => void; fail: (e: Error) => void }>()
    const pushed = new Map<string, Array<Pushed>>()
    const watchers = new Set<() => void>()
    let closeCode: number | undefined
    const closeWaiters: Array<(code: number) => void> = []
    let next = 0
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Rec
      if (!("id" in frame) && typeof frame.subscription === "string") {
        const list = pushed.get(frame.subscription) ?? []
        list.push(frame as unknown as Pushed)
        pushed.set(frame.subscription, list)
        for (const w of [...watchers]) w()
        return
      }
      const r = pending.get(frame.id)
      pending.delete(frame.id)
      r?.ok(frame as unknown as Answer)
    })
    ws.on("close", (code) => {
      closeCode = code
      for (const w of pending.values()) w.fail(new Error(`connection closed (${code})`))
      pending.clear()
      for (const w of closeWaiters.splice(0)) w(code)
      for (const w of [...watchers]) w()
    })
    ws.once("error", reject)
    const call = (method: string, params: ReadonlyArray<unknown> = [], auth: Rec | null | undefined = defaultAuth) =>
      new Promise<Answer>((ok, fail) => {
        if (closeCode !== undefined) return fail(new Error(`connection closed (${closeCode})`))
        const id = `r${++next}`
        pending.set(id, { ok, fail })
        ws.send(JSON.stringify({ id, method, params, ...(auth === null || auth === undefined ? {} : { auth }) }))
      })
    ws.once("open", () =>
      resolve({
        ws,
        call,
        subscribe: async (entity, options, auth) => {
          const a = await call("subscribe", options === undefined ? [entity] : [entity, options], auth)
          if (a.error !== undefined) throw new Error(`subscribe ${entity} failed: ${JSON.stringify(a.error)}`)
          return (a.result as { subscription: string }).subscription
        },
        upTo: (subscription, until, timeoutMs = 10_000) =>
          new Promise((ok, fail) => {
            const check = () => {
              const list = pushed.get(subscription) ?? []
              const i = list.findIndex(until)
              if (i < 0) {
                if (closeCode !== undefined) finish(new Error(`connection closed (${closeCode}); frames: ${JSON.stringify(list)}`))
                return
              }
              finish(list.splice(0, i + 1))
            }
            const finish = (r: Array<Pushed> | Error) => {
              watchers.delete(check)
              clearTimeout(timer)
              if (r instanceof Error) fail(r)
              else ok(r)
            }
            const timer = setTimeout(
              () =>
                finish(
                  new Error(
                    `no matching frame for ${subscription} within ${timeoutMs} ms; frames: ${JSON.stringify(pushed.get(subscription) ?? [])}`
                  )
                ),
              timeoutMs
            )
            watchers.add(check)
            check()
          }),
        pending: (subscription) => pushed.get(subscription) ?? [],
        closed: (timeoutMs = 10_000) =>
          new Promise((ok, fail) => {
            if (closeCode !== undefined) return ok(closeCode)
            const timer = setTimeout(() => fail(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs)
            closeWaiters.push((code) => {
              clearTimeout(timer)
              ok(code)
            })
          }),
        close: () =>
          new Promise((r) => {
            if (ws.readyState === ws.CLOSED) return r()
            ws.once("close", () => r())
            ws.close()
          })
      })
    )
  })

/** `[event, id]` of each frame: the shape most assertions compare. */
export const eventsOf = (frames: ReadonlyArray<Pushed>): Array<[string | undefined, unknown]> =>
  frames.map((f) => [f.event ?? (f.error === undefined ? undefined : `error ${f.error.code}`), f.record?.id])
