/**
 * The pure parts of client-address resolution: the strict PROXY protocol parser (v1, v2, partial
 * input, malformed headers) and X-Forwarded-For walked from the right past trusted proxies.
 */
import { describe, expect, it } from "vitest"
import { clientFromForwardedFor, makeTrustedProxies, parseCidr } from "../../src/net/ClientAddress.js"
import { buildV1, buildV2, parseProxyHeader, V2_SIGNATURE } from "../../src/net/ProxyProtocol.js"

describe("PROXY protocol parser", () => {
  it("v1: TCP4 and TCP6 give the source and the header length; the rest is left alone", () => {
    const h = buildV1("203.0.113.9", 4000, "10.0.0.1", 50051)
    expect(parseProxyHeader(Buffer.concat([h, Buffer.from("GET / HTTP/1.1\r\n")]))).toEqual({
      kind: "proxied",
      source: "203.0.113.9",
      length: h.length
    })
    expect(parseProxyHeader(buildV1("2001:db8::9", 1, "2001:db8::1", 2))).toMatchObject({ kind: "proxied", source: "2001:db8::9" })
    expect(parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\n"))).toEqual({ kind: "local", length: 15 })
  })

  it("v1: partial input is incomplete; bad addresses, ports, protocols, lengths are invalid", () => {
    const h = buildV1("203.0.113.9", 4000, "10.0.0.1", 50051)
    for (let n = 1; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n)).kind).toBe("incomplete")
    for (const bad of [
      "PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n",
      "PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
      "PROXY TCP4 1.2.3.4 10.0.0.1 1 65536\r\n",
      "PROXY TCP4 1.2.3.4 10.0.0.1 01 2\r\n",
      "PROXY TCP4  1.2.3.4 10.0.0.1 1 2\r\n",
      "PROXY UDP4 1.2.3.4 10.0.0.1 1 2\r\n",
      `PROXY TCP4 1.2.3.4 10.0.0.1 1 2${" ".repeat(100)}\r\n`
    ]) {
      expect(parseProxyHeader(Buffer.from(bad)).kind, bad).toBe("invalid")
    }
    expect(parseProxyHeader(Buffer.from(`PROXY TCP4 ${"1".repeat(120)}`)).kind).toBe("invalid")
  })

  it("v2: IPv4 with TLVs skipped by the declared length; LOCAL; partial; wrong version or command", () => {
    const tlvs = Buffer.from([0x05, 0x00, 0x02, 0x61, 0x62])
    const h = buildV2({ source: "198.51.100.3", sourcePort: 1, destination: "10.0.0.1", destinationPort: 2, tlvs })
    expect(parseProxyHeader(Buffer.concat([h, Buffer.from("GET")]))).toEqual({
      kind: "proxied",
      source: "198.51.100.3",
      length: 16 + 12 + 5
    })
    for (let n = 1; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n)).kind).toBe("incomplete")
    expect(
      parseProxyHeader(buildV2({ command: "LOCAL", source: "0.0.0.0", sourcePort: 0, destination: "0.0.0.0", destinationPort: 0 })).kind
    ).toBe("local")
    const v1ver = Buffer.from(h)
    v1ver[12] = 0x11
    expect(parseProxyHeader(v1ver).kind).toBe("invalid")
    const cmd = Buffer.from(h)
    cmd[12] = 0x22
    expect(parseProxyHeader(cmd).kind).toBe("invalid")
    const short = Buffer.from(h.subarray(0, 16 + 8))
    short.writeUInt16BE(8, 14)
    expect(parseProxyHeader(short).kind).toBe("invalid")
  })

  it("v2: IPv6 and IPv4-mapped IPv6 sources", () => {
    const head = Buffer.alloc(16)
    V2_SIGNATURE.copy(head)
    head[12] = 0x21
    head[13] = 0x21
    head.writeUInt16BE(36, 14)
    const addr = Buffer.alloc(36)
    addr.writeUInt16BE(0x2001, 0)
    addr.writeUInt16BE(0x0db8, 2)
    addr.writeUInt16BE(0x0001, 14)
    expect(parseProxyHeader(Buffer.concat([head, addr]))).toMatchObject({ kind: "proxied", source: "2001:db8::1" })
    const mapped = Buffer.alloc(36)
    mapped[10] = 0xff
    mapped[11] = 0xff
    mapped.set([192, 0, 2, 7], 12)
    expect(parseProxyHeader(Buffer.concat([head, mapped]))).toMatchObject({ kind: "proxied", source: "192.0.2.7" })
  })

  it("bytes of an HTTP request or a TLS hello are not a PROXY header", () => {
    expect(parseProxyHeader(Buffer.from("GET / HTTP/1.1\r\n")).kind).toBe("absent")
    expect(parseProxyHeader(Buffer.from("POST"))).toEqual({ kind: "absent" })
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])).kind).toBe("absent")
  })
})

describe("X-Forwarded-For", () => {
  const trusted = makeTrustedProxies(["10.0.0.0/8", "2001:db8:ff::/48", "192.0.2.1"])

  it("CIDR blocks and single addresses are parsed; malformed ones are not", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ address: "10.0.0.0", prefix: 8, family: "ipv4" })
    expect(parseCidr("192.0.2.1")).toMatchObject({ prefix: 32 })
    for (const bad of ["10.0.0.0/33", "10.0.0/8", "::/129", "10.0.0.0/08", "x", ""]) expect(parseCidr(bad), bad).toBeUndefined()
  })

  it("the right-most address that is not a trusted proxy is the client", () => {
    expect(clientFromForwardedFor("10.1.1.1", ["6.6.6.6, 203.0.113.5, 10.2.2.2"], trusted)).toBe("203.0.113.5")
    expect(clientFromForwardedFor("10.1.1.1", ["6.6.6.6", "203.0.113.5"], trusted)).toBe("203.0.113.5")
    expect(clientFromForwardedFor("::ffff:10.1.1.1", ["203.0.113.6:443"], trusted)).toBe("203.0.113.6")
    expect(clientFromForwardedFor("2001:db8:ff::1", ["[2001:db8:1::7]:80"], trusted)).toBe("2001:db8:1::7")
    expect(clientFromForwardedFor("10.1.1.1", ["10.3.3.3, 10.2.2.2"], trusted), "all trusted: the left-most").toBe("10.3.3.3")
    expect(clientFromForwardedFor("10.1.1.1", ["1.2.3.4, garbage"], trusted), "garbage stops at the proxy").toBe("10.1.1.1")
    expect(clientFromForwardedFor("10.1.1.1", [""], trusted)).toBe("10.1.1.1")
  })
})
