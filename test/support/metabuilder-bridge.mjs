// A stand-in for metabuilder's DBAL WebSocket bridge (dbal/development/src/bridges/websocket-bridge/
// and bridges/utils/generate-request-id.ts), written to behave exactly as it does on the wire:
// - the global WebSocket (this file runs under `node --experimental-websocket` on Node 20, where
//   it is otherwise absent; Node 22+ has it by default), opened on the endpoint URL as given
//   (the only place its credential can travel is `?token=`), with no subprotocol and no headers;
// - frames `{id, method, params}` with `id = "req_" + Date.now() + "_" + counter`, never `auth`,
//   params built as `[entity, ...args]` (an omitted optional argument becomes `null` in JSON);
// - answers routed by string id: `error` rejects with {message, code, details}, else `result`.
// The test drives it over stdin/stdout, one JSON line per call:
//   in:  {"seq": 1, "method": "create", "args": ["User", {...}]}
//   out: {"seq": 1, "ok": true, "value": ...} or {"seq": 1, "ok": false, "error": {message, code, details}}
import { createInterface } from "node:readline"

if (typeof WebSocket !== "function") {
  console.error("no global WebSocket (run with --experimental-websocket on Node 20)")
  process.exit(2)
}

const endpoint = process.argv[2]
let requestIdCounter = 0
const generateRequestId = () => `req_${Date.now()}_${++requestIdCounter}`

const state = { ws: null, endpoint, pendingRequests: new Map() }
let connectionPromise = null

class DBALError extends Error {
  constructor(message, code, details) {
    super(message)
    this.code = code
    this.details = details
  }
}

const isRecord = (v) => typeof v === "object" && v !== null && !Array.isArray(v)
const isRPCError = (v) =>
  isRecord(v) && typeof v.code === "number" && typeof v.message === "string" && (v.details === undefined || isRecord(v.details))
const isRPCResponse = (v) => {
  if (!isRecord(v)) return false
  const hasId = typeof v.id === "string"
  const hasResult = Object.prototype.hasOwnProperty.call(v, "result")
  const hasError = isRPCError(v.error) || v.error === undefined
  return hasId && (hasResult || isRPCError(v.error)) && hasError
}

const handle = (raw) => {
  if (typeof raw !== "string") {
    console.error("Ignoring non-string WebSocket message")
    return
  }
  try {
    const response = JSON.parse(raw)
    if (!isRPCResponse(response)) throw new Error("Invalid RPC response shape")
    const pending = state.pendingRequests.get(response.id)
    if (!pending) {
      console.error(`No pending request for response ${response.id}`)
      return
    }
    state.pendingRequests.delete(response.id)
    if (response.error) pending.reject(new DBALError(response.error.message, response.error.code, response.error.details))
    else pending.resolve(response.result)
  } catch (error) {
    console.error("Failed to process WebSocket message", error)
  }
}

const rejectPending = (error) => {
  state.pendingRequests.forEach(({ reject }) => reject(error))
  state.pendingRequests.clear()
}
const resetConnection = () => {
  connectionPromise = null
  state.ws = null
}

const ensureConnection = async () => {
  if (state.ws?.readyState === WebSocket.OPEN) return
  if (connectionPromise) return connectionPromise
  connectionPromise = new Promise((resolve, reject) => {
    const ws = new WebSocket(state.endpoint)
    state.ws = ws
    ws.onopen = () => resolve()
    ws.onerror = (error) => {
      const e = new DBALError(`WebSocket connection failed: ${error}`, 500)
      rejectPending(e)
      resetConnection()
      reject(e)
    }
    ws.onclose = () => {
      rejectPending(new DBALError("WebSocket connection closed", 500))
      resetConnection()
    }
    ws.onmessage = (event) => handle(event.data)
  })
  return connectionPromise
}

const send = async (message) => {
  await ensureConnection()
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) throw new DBALError("WebSocket connection not open", 500)
  state.ws.send(JSON.stringify(message))
}

const rpcCall = (method, ...params) => {
  const id = generateRequestId()
  const message = { id, method, params }
  return new Promise((resolve, reject) => {
    state.pendingRequests.set(id, { resolve, reject })
    send(message).catch((error) => {
      state.pendingRequests.delete(id)
      reject(error)
    })
    setTimeout(() => {
      if (state.pendingRequests.has(id)) {
        state.pendingRequests.delete(id)
        reject(new DBALError("Request timed out", 504))
      }
    }, 30000)
  })
}

// The bridge's operations (operations.ts), argument for argument.
const operations = {
  create: (entity, data) => rpcCall("create", entity, data),
  read: (entity, id) => rpcCall("read", entity, id),
  update: (entity, id, data) => rpcCall("update", entity, id, data),
  delete: (entity, id) => rpcCall("delete", entity, id),
  list: (entity, options) => rpcCall("list", entity, options),
  findFirst: (entity, filter) => rpcCall("findFirst", entity, filter),
  findByField: (entity, field, value) => rpcCall("findByField", entity, field, value),
  upsert: (entity, filter, createData, updateData) => rpcCall("upsert", entity, filter, createData, updateData),
  updateByField: (entity, field, value, data) => rpcCall("updateByField", entity, field, value, data),
  deleteByField: (entity, field, value) => rpcCall("deleteByField", entity, field, value),
  deleteMany: (entity, filter) => rpcCall("deleteMany", entity, filter),
  createMany: (entity, data) => rpcCall("createMany", entity, data),
  updateMany: (entity, filter, data) => rpcCall("updateMany", entity, filter, data),
  getCapabilities: () => rpcCall("getCapabilities")
}

const out = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  const { seq, method, args } = JSON.parse(line)
  const op = operations[method]
  if (op === undefined) return out({ seq, ok: false, error: { message: `the bridge has no method ${method}`, code: -1 } })
  // An `undefined` argument stands for an omitted optional one (JSON cannot carry undefined).
  op(...args.map((a) => (a === "__undefined__" ? undefined : a))).then(
    (value) => out({ seq, ok: true, value: value === undefined ? "__undefined__" : value }),
    (e) => out({ seq, ok: false, error: { message: e.message, code: e.code, details: e.details } })
  )
})
lines.on("close", () => {
  state.ws?.close()
  process.exit(0)
})
