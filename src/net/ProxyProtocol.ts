/**
 * A strict parser of the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
 * that a TCP proxy or load balancer sends before the client's bytes. Pure: it looks at the bytes
 * received so far and says whether a header is complete, how long it is and whose connection it
 * carries; anything that does not follow the specification exactly is invalid.
 *
 * Not a published parser: the npm ones either accept a v1 line of any length with addresses
 * unchecked, or hand the TLVs of a v2 header on to the application as if they were its bytes.
 */
import { isIPv4, isIPv6 } from "node:net"

export type ProxyHeader =
  /** A proxied connection: `source` is the client's address. */
  | { readonly kind: "proxied"; readonly source: string; readonly length: number }
  /** v2 LOCAL, v1 UNKNOWN, or an address family without an IP: the connection is the proxy's own (e.g. a health check). */
  | { readonly kind: "local"; readonly length: number }

export type ProxyParse =
  | ProxyHeader
  /** More bytes are needed to decide. */
  | { readonly kind: "incomplete" }
  /** The bytes cannot start a PROXY header (neither signature). */
  | { readonly kind: "absent" }
  | { readonly kind: "invalid"; readonly reason: string }

const V1_PREFIX = Buffer.from("PROXY ", "latin1")
/** The longest v1 line, CRLF included. */
const V1_MAX = 107
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
/** Largest v2 header accepted (the addresses plus TLVs); real proxies send a few hundred bytes. */
export const V2_MAX = 16 + 1024

/** Whether `buf` is a prefix of `sig`, or starts with it. */
const matches = (buf: Buffer, sig: Buffer): "full" | "prefix" | "no" => {
  const n = Math.min(buf.length, sig.length)
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return "no"
  return buf.length >= sig.length ? "full" : "prefix"
}

const PORT = /^(0|[1-9][0-9]{0,4})$/
const validPort = (p: string) => PORT.test(p) && Number(p) <= 65535

const parseV1 = (buf: Buffer): ProxyParse => {
  const end = buf.indexOf("\r\n", 0, "latin1")
  if (end < 0) return buf.length >= V1_MAX ? { kind: "invalid", reason: "v1 header longer than 107 bytes" } : { kind: "incomplete" }
  const length = end + 2
  if (length > V1_MAX) return { kind: "invalid", reason: "v1 header longer than 107 bytes" }
  const line = buf.toString("latin1", 0, end)
  if (!/^[\x20-\x7e]*$/.test(line)) return { kind: "invalid", reason: "v1 header with characters other than printable ASCII" }
  const parts = line.split(" ")
  if (parts[1] === "UNKNOWN") return { kind: "local", length }
  if (parts.length !== 6) return { kind: "invalid", reason: "v1 header: expected PROXY TCP4|TCP6 source destination sport dport" }
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string]
  const valid = proto === "TCP4" ? isIPv4 : proto === "TCP6" ? isIPv6 : undefined
  if (valid === undefined) return { kind: "invalid", reason: "v1 header: the protocol must be TCP4, TCP6 or UNKNOWN" }
  if (!valid(src) || !valid(dst)) return { kind: "invalid", reason: `v1 header: an address is not ${proto === "TCP4" ? "IPv4" : "IPv6"}` }
  if (!validPort(sport) || !validPort(dport)) return { kind: "invalid", reason: "v1 header: a port is not a number from 0 to 65535" }
  return { kind: "proxied", source: src, length }
}

/** The text form of the IPv6 address at `at`; an IPv4-mapped one (::ffff:a.b.c.d) as plain IPv4. */
const ipv6 = (b: Buffer, at: number): string => {
  const mapped = b.subarray(at, at + 10).every((x) => x === 0) && b[at + 10] === 0xff && b[at + 11] === 0xff
  if (mapped) return `${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`
  const groups: Array<string> = []
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(at + 2 * i).toString(16))
  return compressIPv6(groups)
}

/** RFC 5952 text form: the longest run (of two or more) of zero groups becomes `::`. */
const compressIPv6 = (groups: ReadonlyArray<string>): string => {
  let best = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === "0") j++
    if (j - i > bestLen && j - i >= 2) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  if (best < 0) return groups.join(":")
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`
}

const parseV2 = (buf: Buffer): ProxyParse => {
  if (buf.length < 16) return { kind: "incomplete" }
  const verCmd = buf[12]!
  if (verCmd >> 4 !== 2) return { kind: "invalid", reason: "v2 header: version is not 2" }
  const command = verCmd & 0x0f
  if (command > 1) return { kind: "invalid", reason: "v2 header: unknown command" }
  const famProto = buf[13]!
  const len = buf.readUInt16BE(14)
  const length = 16 + len
  if (length > V2_MAX) return { kind: "invalid", reason: `v2 header longer than ${V2_MAX} bytes` }
  if (buf.length < length) return { kind: "incomplete" }
  const family = famProto >> 4
  const transport = famProto & 0x0f
  if (family > 3 || transport > 2) return { kind: "invalid", reason: "v2 header: unknown address family or transport" }
  // LOCAL: the proxy's own connection; its address block, if any, is to be skipped.
  if (command === 0) return { kind: "local", length }
  if (family === 0 || family === 3) return { kind: "local", length }
  if (transport !== 1) return { kind: "invalid", reason: "v2 header: a proxied connection to this daemon must be TCP (STREAM)" }
  if (family === 1) {
    if (len < 12) return { kind: "invalid", reason: "v2 header: too short for IPv4 addresses" }
    return { kind: "proxied", source: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, length }
  }
  if (len < 36) return { kind: "invalid", reason: "v2 header: too short for IPv6 addresses" }
  return { kind: "proxied", source: ipv6(buf, 16), length }
}

/** Reads a PROXY header (v1 or v2) at the start of `buf`, the bytes received so far. */
export const parseProxyHeader = (buf: Buffer): ProxyParse => {
  if (buf.length === 0) return { kind: "incomplete" }
  const v1 = matches(buf, V1_PREFIX)
  if (v1 === "full") return parseV1(buf)
  const v2 = matches(buf, V2_SIGNATURE)
  if (v2 === "full") return parseV2(buf)
  return v1 === "prefix" || v2 === "prefix" ? { kind: "incomplete" } : { kind: "absent" }
}

/** A v1 header line for a TCP connection from `source` (for tests and tools). */
export const buildV1 = (source: string, sourcePort: number, destination: string, destinationPort: number): Buffer =>
  Buffer.from(`PROXY ${isIPv4(source) ? "TCP4" : "TCP6"} ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`, "latin1")

/** A v2 PROXY (or LOCAL) header for a TCP/IPv4 connection, with optional TLV bytes after the addresses. */
export const buildV2 = (opts: {
  readonly command?: "PROXY" | "LOCAL"
  readonly source: string
  readonly sourcePort: number
  readonly destination: string
  readonly destinationPort: number
  readonly tlvs?: Buffer
}): Buffer => {
  const tlvs = opts.tlvs ?? Buffer.alloc(0)
  const head = Buffer.alloc(16)
  V2_SIGNATURE.copy(head)
  head[12] = 0x20 | (opts.command === "LOCAL" ? 0 : 1)
  head[13] = 0x11
  const addr = Buffer.alloc(12)
  opts.source.split(".").forEach((o, i) => (addr[i] = Number(o)))
  opts.destination.split(".").forEach((o, i) => (addr[4 + i] = Number(o)))
  addr.writeUInt16BE(opts.sourcePort, 8)
  addr.writeUInt16BE(opts.destinationPort, 10)
  head.writeUInt16BE(12 + tlvs.length, 14)
  return Buffer.concat([head, addr, tlvs])
}
