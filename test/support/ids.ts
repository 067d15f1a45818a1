import { randomBytes } from "node:crypto"

let seq = 0
/** A short random suffix that is valid in usernames, slugs and names (lower-case letters and digits). */
export const uid = (): string => `${randomBytes(4).toString("hex")}${(++seq).toString(36)}`
