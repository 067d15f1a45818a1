/**
 * Which address a connection is from, when the daemon runs behind proxies: `server.trusted_proxies`
 * is a list of CIDR blocks, and only a peer inside one may say whose connection it forwards
 * (X-Forwarded-For, PROXY protocol). Pure functions; layers/WebSocketServer.ts applies them.
 */
import { BlockList, isIP, isIPv4 } from "node:net"

/** `10.0.0.0/8`, `2001:db8::/32`, or a single address (a /32 or /128). Undefined when malformed. */
export const parseCidr = (
  text: string
): { readonly address: string; readonly prefix: number; readonly family: "ipv4" | "ipv6" } | undefined => {
  const slash = text.indexOf("/")
  const address = slash < 0 ? text : text.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max) return undefined
  return { address, prefix: Number(prefixText), family: version === 4 ? "ipv4" : "ipv6" }
}

/** An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as a dual-stack socket reports it) as plain IPv4. */
export const normalizeAddress = (address: string): string => {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return m !== null && isIPv4(m[1]!) ? m[1]! : address
}

export interface TrustedProxies {
  /** Whether any proxy is trusted at all (without, forwarding headers are never read). */
  readonly any: boolean
  readonly trusts: (address: string) => boolean
}

export const makeTrustedProxies = (cidrs: ReadonlyArray<string>): TrustedProxies => {
  const list = new BlockList()
  for (const c of cidrs) {
    const p = parseCidr(c)
    if (p === undefined) throw new Error(`not a CIDR block: ${c}`)
    list.addSubnet(p.address, p.prefix, p.family)
  }
  return {
    any: cidrs.length > 0,
    trusts: (address) => {
      const a = normalizeAddress(address)
      const version = isIP(a)
      return version !== 0 && list.check(a, version === 4 ? "ipv4" : "ipv6")
    }
  }
}

/**
 * One X-Forwarded-For entry as an address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
 * `[2001:db8::1]` or `[2001:db8::1]:443`. Undefined when it is none of these.
 */
const forwardedEntry = (entry: string): string | undefined => {
  const e = entry.trim()
  if (isIP(e) !== 0) return normalizeAddress(e)
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d{1,5}$/.exec(e)
  if (v4 !== null && isIPv4(v4[1]!)) return v4[1]
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(e)
  if (v6 !== null && isIP(v6[1]!) === 6) return normalizeAddress(v6[1]!)
  return undefined
}

/**
 * The client's address given the peer (already trusted) and the X-Forwarded-For header values in
 * order: the list is read from the right, each trusted hop is skipped, and the first address that
 * is not a trusted proxy is the client. An entry that is not an address ends the walk at the hop
 * that appended it (what lies to its left is not vouched for by anyone trusted); when every entry
 * is a trusted proxy, the left-most one is the client.
 */
export const clientFromForwardedFor = (peer: string, headerValues: ReadonlyArray<string>, trusted: TrustedProxies): string => {
  const entries = headerValues.flatMap((v) => v.split(","))
  let client = peer
  for (let i = entries.length - 1; i >= 0; i--) {
    if (!trusted.trusts(client)) return client
    const hop = forwardedEntry(entries[i]!)
    if (hop === undefined) return client
    client = hop
  }
  return client
}
