/**
 * The push side of one WebSocket connection (src/services/Realtime.ts `PushChannel`), used by
 * layers/WebSocketServer.ts.
 *
 * One change fanned out to a connection's subscriptions is many small frames. `ws.send` costs a
 * header buffer, a payload buffer and two stream writes per frame; here the frames queued by
 * `push` are laid out as WebSocket frames in one buffer and written with one socket write at
 * `flush` (called by the realtime layer after each slice of a fan-out, and on the next tick at the
 * latest). A frame's text is given in two parts so that nothing is concatenated per subscriber:
 * its subscription's own prefix and the event text shared by every subscriber with the same view.
 *
 * Writing to the socket under `ws` is sound because the server never compresses
 * (perMessageDeflate: false) and sends only text: `ws` then writes each of its own frames
 * synchronously and whole, so frames never interleave. `bufferedAmount` counts these writes too.
 */
import type * as net from "node:net"
import type { WebSocket } from "ws"
import type { PushChannel } from "../services/Realtime.js"

const headerSize = (n: number): number => (n < 126 ? 2 : n < 65536 ? 4 : 10)

/** Server-to-client text frames (FIN, opcode 1, unmasked) of the payloads `parts[2i] + parts[2i+1]`. */
export const encodeTextFrames = (parts: ReadonlyArray<Uint8Array>, size: number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (let i = 0; i < parts.length; i += 2) {
    const head = parts[i]!
    const tail = parts[i + 1]!
    const n = head.length + tail.length
    out[at++] = 0x81
    if (n < 126) out[at++] = n
    else if (n < 65536) {
      out[at++] = 126
      out.writeUInt16BE(n, at)
      at += 2
    } else {
      out[at++] = 127
      out.writeUInt32BE(Math.floor(n / 2 ** 32), at)
      out.writeUInt32BE(n >>> 0, at + 4)
      at += 8
    }
    out.set(head, at)
    at += head.length
    out.set(tail, at)
    at += tail.length
  }
  return out
}

export const EMPTY = new Uint8Array(0)

export interface PushSocketOptions {
  /** Unsent bytes past which the connection is dropped as a slow subscriber. */
  readonly maxBufferedBytes: number
  readonly slowCloseCode: number
  /** How long a dropped slow subscriber gets to read what was queued before its close frame. */
  readonly slowGraceMs: number
}

/**
 * A channel that pushes to the WebSocket given to `attach` (frames pushed before that, or after
 * the socket closed, are refused as "closed"); `ended` runs the onClose hooks once.
 */
export const makePushSocket = (o: PushSocketOptions) => {
  let ws: WebSocket | undefined
  let socket: net.Socket | undefined
  let over = false
  let done = false
  const hooks: Array<() => void> = []
  let parts: Array<Uint8Array> = []
  let queued = 0
  let scheduled = false

  const ended = () => {
    if (done) return
    done = true
    parts = []
    queued = 0
    for (const f of hooks.splice(0)) f()
  }

  const flush = () => {
    scheduled = false
    if (parts.length === 0) return
    const frames = encodeTextFrames(parts, queued)
    parts = []
    queued = 0
    if (ws !== undefined && socket !== undefined && ws.readyState === ws.OPEN) socket.write(frames)
  }

  const channel: PushChannel = {
    push: (head, tail) => {
      if (over || ws === undefined || socket === undefined || ws.readyState !== ws.OPEN) return "closed"
      const n = head.length + tail.length
      parts.push(head, tail)
      queued += headerSize(n) + n
      if (!scheduled) {
        scheduled = true
        process.nextTick(flush)
      }
      if (ws.bufferedAmount + queued <= o.maxBufferedBytes) return "sent"
      // What was queued before the close frame still goes out; the peer gets a grace to read it.
      flush()
      over = true
      const slow = ws
      slow.close(o.slowCloseCode, "slow subscriber: too many unread events")
      setTimeout(() => slow.terminate(), o.slowGraceMs).unref()
      return "slow"
    },
    flush,
    onClose: (f) => {
      if (done) f()
      else hooks.push(f)
    }
  }
  return {
    channel,
    attach: (s: WebSocket) => {
      ws = s
      // `ws` keeps its socket private; it is the one `ws` itself writes its frames to.
      socket = (s as unknown as { readonly _socket?: net.Socket })._socket
      s.once("close", ended)
    },
    ended
  }
}
