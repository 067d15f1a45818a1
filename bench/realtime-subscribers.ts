/**
 * Worker thread of bench/realtime.ts: runs the subscribing side (bench/realtime-clients.ts) off
 * the thread of the readers, so that receiving 10,000 frames per change does not stall their
 * event loop (it still uses the same CPUs). Requests `{n, method}` from the parent are answered
 * `{n, result}` or `{n, error}`.
 */
import { parentPort, workerData } from "node:worker_threads"
import { makeSubscribers, type Subscribers, type SubscribersSetup } from "./realtime-clients.js"

const port = parentPort!
const ready: Promise<Subscribers> = makeSubscribers(workerData as SubscribersSetup)

port.on("message", (m: { n: number; method: keyof Subscribers; arg?: number }) => {
  ready
    .then((s): Promise<unknown> => (m.method === "arm" ? s.arm(m.arg ?? 0) : s[m.method]()))
    .then(
      (result) => port.postMessage({ n: m.n, result }),
      (e: unknown) => port.postMessage({ n: m.n, error: e instanceof Error ? e.message : String(e) })
    )
})
ready.then(
  () => port.postMessage({ n: 0, result: "ready" }),
  (e: unknown) => port.postMessage({ n: 0, error: e instanceof Error ? e.message : String(e) })
)
