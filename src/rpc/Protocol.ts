/**
 * The wire protocol (docs/protocol.md): one JSON object per text frame.
 * Request `{id, method, params?, auth?}`; success `{id, result}`; failure `{id, error}`.
 */
import { BadRequest, type WireError } from "../Errors.js"
import type { Credentials } from "../services/Auth.js"
import { isRecord } from "../Json.js"
import { type Method, MethodNames } from "./Methods.js"

export type RequestId = string | number

/** The protocol's methods: the method table's keys (src/rpc/Methods.ts), the one list of them. */
export const Methods = MethodNames
export type { Method }

const METHODS: ReadonlySet<string> = new Set(Methods)
const MAX_ID_LENGTH = 256

export interface Request {
  readonly id: RequestId
  readonly method: Method
  readonly params: ReadonlyArray<unknown>
  readonly auth?: Credentials
  /** W3C trace context of the caller (`traceparent` of the frame): the request's spans join its trace. */
  readonly traceparent?: string
}

/** A frame that could not become a request, with the id to answer it under. */
export interface Rejected {
  readonly id: RequestId | null
  readonly error: BadRequest
}

const usableId = (id: unknown): id is RequestId =>
  (typeof id === "string" && id.length <= MAX_ID_LENGTH) || (typeof id === "number" && Number.isFinite(id))

export const decodeCredentials = (raw: unknown): Credentials | string => {
  if (!isRecord(raw)) return "auth must be an object {token, user_id}"
  const token = raw.token
  if (typeof token !== "string" || token.length === 0 || token.length > 4096) return "auth.token must be a non-empty string"
  const userId = raw.user_id ?? raw.userId
  if (userId !== undefined && userId !== null && (typeof userId !== "string" || userId.length > 256)) return "auth.user_id must be a string"
  return typeof userId === "string" ? { token, userId } : { token }
}

/** Parses one text frame. Never throws. */
export const decodeFrame = (text: string): Request | Rejected => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return { id: null, error: new BadRequest({ reason: "the frame is not valid JSON" }) }
  }
  if (!isRecord(raw)) return { id: null, error: new BadRequest({ reason: "the frame must be a JSON object {id, method, params, auth}" }) }
  if (!usableId(raw.id)) {
    return { id: null, error: new BadRequest({ reason: `id must be a string (at most ${MAX_ID_LENGTH} characters) or a number` }) }
  }
  const id = raw.id
  if (typeof raw.method !== "string" || !METHODS.has(raw.method)) {
    return { id, error: new BadRequest({ reason: typeof raw.method === "string" ? "unknown method" : "method must be a string" }) }
  }
  const params = raw.params === undefined || raw.params === null ? [] : raw.params
  if (!Array.isArray(params)) return { id, error: new BadRequest({ reason: "params must be an array (positional parameters)" }) }
  let auth: Credentials | undefined
  if (raw.auth !== undefined && raw.auth !== null) {
    const c = decodeCredentials(raw.auth)
    if (typeof c === "string") return { id, error: new BadRequest({ reason: c }) }
    auth = c
  }
  return {
    id,
    method: raw.method as Method,
    params,
    ...(auth === undefined ? {} : { auth }),
    ...(typeof raw.traceparent === "string" ? { traceparent: raw.traceparent } : {})
  }
}

export const isRejected = (r: Request | Rejected): r is Rejected => "error" in r

export const encodeResult = (id: RequestId | null, result: unknown): string => JSON.stringify({ id, result })
export const encodeError = (id: RequestId | null, error: WireError): string => JSON.stringify({ id, error })
