/**
 * Values the daemon makes for `default_fn` fields and string ids: UUID v4, and cuid, the
 * 25-character collision-resistant id of Prisma's `cuid()` ("c", then base-36 blocks of the
 * time, a counter, a host fingerprint and randomness), so that records the daemon creates look
 * like the ones a Prisma client creates in the same table.
 */
import { randomBytes, randomUUID } from "node:crypto"
import * as os from "node:os"
import type { DefaultFn } from "./Model.js"

const BLOCK = 4
const BASE = 36
const MAX = BASE ** BLOCK

const pad = (s: string, n: number): string => (s.length >= n ? s.slice(s.length - n) : "0".repeat(n - s.length) + s)

const fingerprint = ((): string => {
  const pid = pad(process.pid.toString(BASE), 2)
  const host = os.hostname()
  let sum = host.length + BASE
  for (const c of host) sum += c.charCodeAt(0)
  return pid + pad(sum.toString(BASE), 2)
})()

let counter = randomBytes(4).readUInt32BE(0) % MAX

const randomBlock = (): string => pad((randomBytes(4).readUInt32BE(0) % MAX).toString(BASE), BLOCK)

/** A new cuid (v1 layout: c + 8 time + 4 counter + 4 fingerprint + 8 random = 25 characters). */
export const cuid = (): string => {
  counter = (counter + 1) % MAX
  return `c${pad(Date.now().toString(BASE), 8)}${pad(counter.toString(BASE), BLOCK)}${fingerprint}${randomBlock()}${randomBlock()}`
}

export const generate = (fn: DefaultFn): string => (fn === "uuid" ? randomUUID() : cuid())
