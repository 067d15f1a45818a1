import { describe, expect, it } from "vitest"
import { toWireError } from "../../src/Errors.js"
import {
  decodeCredentials,
  decodeFrame,
  encodeError,
  encodeResult,
  isRejected,
  type Rejected,
  type Request
} from "../../src/rpc/Protocol.js"

const rejected = (text: string): Rejected => {
  const r = decodeFrame(text)
  if (!isRejected(r)) throw new Error(`expected a rejection, got ${JSON.stringify(r)}`)
  expect(toWireError(r.error).code).toBe(400)
  return r
}

const accepted = (text: string): Request => {
  const r = decodeFrame(text)
  if (isRejected(r)) throw new Error(`expected a request, got ${r.error.reason}`)
  return r
}

describe("decodeFrame: frames that are not requests", () => {
  it("answers non-JSON with id null and 400", () => {
    const r = rejected("{not json")
    expect(r.id).toBeNull()
    expect(r.error.reason).toMatch(/not valid JSON/)
  })

  it("answers an empty frame with id null", () => {
    expect(rejected("").id).toBeNull()
  })

  it("refuses a JSON array frame (even one holding a request) with id null", () => {
    const r = rejected(JSON.stringify([{ id: 1, method: "count", params: ["User"] }]))
    expect(r.id).toBeNull()
    expect(r.error.reason).toMatch(/JSON object/)
  })

  it("refuses JSON scalars and null with id null", () => {
    for (const t of ["null", "42", '"x"', "true"]) expect(rejected(t).id).toBeNull()
  })

  it("answers a frame without id with id null", () => {
    const r = rejected(JSON.stringify({ method: "count", params: ["User"] }))
    expect(r.id).toBeNull()
    expect(r.error.reason).toMatch(/^id must be/)
  })

  it("answers object, boolean, null and array ids with id null", () => {
    for (const id of [{ a: 1 }, true, false, null, [1]]) {
      const r = rejected(JSON.stringify({ id, method: "count", params: ["User"] }))
      expect(r.id).toBeNull()
    }
  })

  it("answers an overlong string id with id null", () => {
    expect(rejected(JSON.stringify({ id: "x".repeat(257), method: "count" })).id).toBeNull()
    expect(accepted(JSON.stringify({ id: "x".repeat(256), method: "count" })).id).toBe("x".repeat(256))
  })
})

describe("decodeFrame: ids", () => {
  it("keeps a string id exactly as sent", () => {
    for (const id of ["007", "ñ", "", " 1 ", "1e3", "💥"]) {
      const r = accepted(JSON.stringify({ id, method: "getCapabilities" }))
      expect(r.id).toBe(id)
      expect(typeof r.id).toBe("string")
    }
  })

  it("keeps a numeric id as a number", () => {
    for (const id of [0, 7, -3, 1.5, 1e21]) {
      const r = accepted(JSON.stringify({ id, method: "getCapabilities" }))
      expect(r.id).toBe(id)
      expect(typeof r.id).toBe("number")
    }
  })

  it("keeps the id when the method is unknown", () => {
    const r = rejected(JSON.stringify({ id: "007", method: "dropTable", params: [] }))
    expect(r.id).toBe("007")
    expect(r.error.reason).toBe("unknown method")
  })

  it("keeps the id when the method is not a string", () => {
    const r = rejected(JSON.stringify({ id: 9, method: 3 }))
    expect(r.id).toBe(9)
    expect(r.error.reason).toBe("method must be a string")
  })

  it("does not treat inherited names as methods", () => {
    expect(rejected(JSON.stringify({ id: 1, method: "toString" })).id).toBe(1)
    expect(rejected(JSON.stringify({ id: 1, method: "constructor" })).error.reason).toBe("unknown method")
  })
})

describe("decodeFrame: params and auth", () => {
  it("reads method and positional params", () => {
    const r = accepted(JSON.stringify({ id: 1, method: "read", params: ["User", "abc"] }))
    expect(r.method).toBe("read")
    expect(r.params).toEqual(["User", "abc"])
    expect(r.auth).toBeUndefined()
  })

  it("treats missing or null params as an empty list", () => {
    expect(accepted(JSON.stringify({ id: 1, method: "getCapabilities" })).params).toEqual([])
    expect(accepted(JSON.stringify({ id: 1, method: "getCapabilities", params: null })).params).toEqual([])
  })

  it("refuses params that are not an array with 400, keeping the id", () => {
    for (const params of [{ entity: "User" }, "User", 3, true]) {
      const r = rejected(JSON.stringify({ id: "p", method: "count", params }))
      expect(r.id).toBe("p")
      expect(r.error.reason).toMatch(/params must be an array/)
    }
  })

  it("reads auth with user_id", () => {
    const r = accepted(JSON.stringify({ id: 1, method: "count", params: ["User"], auth: { token: "t", user_id: "u1" } }))
    expect(r.auth).toEqual({ token: "t", userId: "u1" })
  })

  it("accepts userId as an alias of user_id", () => {
    const r = accepted(JSON.stringify({ id: 1, method: "count", params: ["User"], auth: { token: "t", userId: "u2" } }))
    expect(r.auth).toEqual({ token: "t", userId: "u2" })
  })

  it("accepts auth without a user id", () => {
    expect(accepted(JSON.stringify({ id: 1, method: "count", auth: { token: "t" } })).auth).toEqual({ token: "t" })
  })

  it("refuses an empty or missing token with 400, keeping the id", () => {
    for (const auth of [{ token: "" }, { user_id: "u" }, { token: 5 }, "token"]) {
      const r = rejected(JSON.stringify({ id: 4, method: "count", params: ["User"], auth }))
      expect(r.id).toBe(4)
      expect(r.error.reason).toMatch(/^auth/)
    }
  })

  it("refuses a user_id that is not a string", () => {
    const r = rejected(JSON.stringify({ id: 4, method: "count", auth: { token: "t", user_id: 12 } }))
    expect(r.error.reason).toBe("auth.user_id must be a string")
  })

  it("decodeCredentials explains what is wrong", () => {
    expect(decodeCredentials(null)).toMatch(/auth must be an object/)
    expect(decodeCredentials({ token: "x".repeat(4097) })).toBe("auth.token must be a non-empty string")
    expect(decodeCredentials({ token: "x", user_id: null })).toEqual({ token: "x" })
  })
})

describe("encoding answers", () => {
  it("echoes the id of the request, string or number", () => {
    expect(JSON.parse(encodeResult("007", 3))).toEqual({ id: "007", result: 3 })
    expect(JSON.parse(encodeResult(7, null))).toEqual({ id: 7, result: null })
    expect(JSON.parse(encodeError(null, { code: 400, message: "Bad request" }))).toEqual({
      id: null,
      error: { code: 400, message: "Bad request" }
    })
  })
})
