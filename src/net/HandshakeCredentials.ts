/**
 * Credentials presented when a WebSocket connection is opened (the HTTP upgrade request), for
 * clients that cannot put `auth` in their frames. Looked for in this order, the first found wins:
 * 1. `Authorization: Bearer <token>` (server-side clients);
 * 2. the subprotocol `dbal.bearer.<token>` (browsers, which cannot set headers); the daemon
 *    answers with the subprotocol `dbal`, so the client offers both;
 * 3. the query parameter `token`, only with `security.auth.query_token` (URLs leak: proxy logs,
 *    browser history).
 * Pure: it only reads the request.
 */
import type { IncomingHttpHeaders } from "node:http"

/** The subprotocol the daemon selects. */
export const SUBPROTOCOL = "dbal"
export const BEARER_SUBPROTOCOL_PREFIX = "dbal.bearer."
/** As for `auth.token` in a frame. */
const MAX_TOKEN_LENGTH = 4096

export type HandshakeCredential =
  | { readonly kind: "none" }
  | { readonly kind: "token"; readonly token: string; readonly via: "authorization" | "subprotocol" | "query" }
  /** Presented but not usable (malformed, or a query token while they are off): refused with 401 unchecked. */
  | { readonly kind: "unusable"; readonly reason: string }

const tokenOf = (token: string, via: "authorization" | "subprotocol" | "query"): HandshakeCredential =>
  token.length === 0
    ? { kind: "unusable", reason: `the ${via} credential is empty` }
    : token.length > MAX_TOKEN_LENGTH
      ? { kind: "unusable", reason: `the ${via} credential is longer than ${MAX_TOKEN_LENGTH} characters` }
      : { kind: "token", token, via }

/** The subprotocols a client offered (`Sec-WebSocket-Protocol`, comma-separated). */
export const offeredSubprotocols = (headers: IncomingHttpHeaders): ReadonlyArray<string> => {
  const raw = headers["sec-websocket-protocol"]
  return raw === undefined
    ? []
    : raw
        .split(",")
        .map((p) => p.trim())
        .filter((p) => p.length > 0)
}

/** The query of a request target (`/path?a=b`), undefined without one. */
const queryOf = (url: string | undefined): URLSearchParams | undefined => {
  const q = url?.indexOf("?") ?? -1
  return q < 0 ? undefined : new URLSearchParams(url!.slice(q + 1))
}

export const handshakeCredential = (
  headers: IncomingHttpHeaders,
  url: string | undefined,
  queryTokenAllowed: boolean
): HandshakeCredential => {
  const authorization = headers.authorization
  if (authorization !== undefined) {
    const m = /^Bearer(?:[ ]+(.*))?$/i.exec(authorization.trim())
    // Another scheme (Basic, ...) is not ours to judge: a proxy in front may use it.
    if (m !== null) return tokenOf((m[1] ?? "").trim(), "authorization")
  }
  const bearer = offeredSubprotocols(headers).find((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX))
  if (bearer !== undefined) return tokenOf(bearer.slice(BEARER_SUBPROTOCOL_PREFIX.length), "subprotocol")
  const query = queryOf(url)
  const token = query?.get("token")
  if (token !== null && token !== undefined) {
    if (!queryTokenAllowed) {
      return {
        kind: "unusable",
        reason:
          "credentials in the URL are off (security.auth.query_token); send Authorization: Bearer or the subprotocol dbal.bearer.<token>"
      }
    }
    return tokenOf(token, "query")
  }
  return { kind: "none" }
}
