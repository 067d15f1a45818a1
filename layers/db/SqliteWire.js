// @ts-check
/**
 * Values over the JSON channel between the SQLite client (layers/db/Sqlite.ts) and its executor
 * processes (SqliteExecutor.js). Node's JSON IPC answers a read by id in about half the time of
 * its `advanced` (V8) serialization, but JSON has no bigint (SqlClient.SafeIntegers), no bytes
 * (BLOB) and no Infinity (a SQLite REAL may hold it). Those travel as tags, `{ $bigint: "12" }`,
 * `{ $bytes: "<base64>" }`, `{ $number: "Infinity" }`, and a message that carries any says so
 * (`tagged: true`), so that the common message is sent and read as it is.
 *
 * A SQLite value is a scalar: in a parameter list or a row, any object is a tag.
 */

/** @param {unknown} v */
const special = (v) => typeof v === "bigint" || v instanceof Uint8Array || (typeof v === "number" && !Number.isFinite(v))

/**
 * @param {unknown} v
 * @returns {unknown}
 */
const tag = (v) => {
  if (typeof v === "bigint") return { $bigint: v.toString() }
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") }
  if (typeof v === "number" && !Number.isFinite(v)) return { $number: String(v) }
  return v
}

/**
 * @param {unknown} v
 * @returns {unknown}
 */
const untag = (v) => {
  if (typeof v !== "object" || v === null) return v
  const t = /** @type {{ $bigint?: string, $bytes?: string, $number?: string }} */ (v)
  if (t.$bigint !== undefined) return BigInt(t.$bigint)
  if (t.$bytes !== undefined) return Buffer.from(t.$bytes, "base64")
  if (t.$number !== undefined) return Number(t.$number)
  return v
}

/**
 * Parameters to send: the same array when none needs a tag.
 * @param {ReadonlyArray<unknown>} params
 * @returns {{ params: ReadonlyArray<unknown>, tagged: boolean }}
 */
export const tagParams = (params) => (params.some(special) ? { params: params.map(tag), tagged: true } : { params, tagged: false })

/**
 * Parameters received with `tagged: true`.
 * @param {ReadonlyArray<unknown>} params
 * @returns {Array<unknown>}
 */
export const untagParams = (params) => params.map(untag)

/**
 * Replaces, in place, the values of a record or an array by `f`; true when one changed.
 * @param {Record<string, unknown> | Array<unknown>} values
 * @param {(v: unknown) => unknown} f
 */
const mapValues = (values, f) => {
  let changed = false
  if (Array.isArray(values)) {
    for (let i = 0; i < values.length; i++) {
      const v = f(values[i])
      if (v !== values[i]) {
        values[i] = v
        changed = true
      }
    }
    return changed
  }
  for (const k of Object.keys(values)) {
    const v = f(values[k])
    if (v !== values[k]) {
      values[k] = v
      changed = true
    }
  }
  return changed
}

/**
 * A result to send (rows as records or arrays, or a run result), tagged in place (it is the
 * executor's own copy); true when any value was.
 * @param {unknown} result
 */
export const tagResult = (result) => {
  if (typeof result !== "object" || result === null) return false
  if (!Array.isArray(result)) return mapValues(/** @type {Record<string, unknown>} */ (result), tag)
  let tagged = false
  for (const row of result)
    if (typeof row === "object" && row !== null && mapValues(/** @type {Record<string, unknown>} */ (row), tag)) tagged = true
  return tagged
}

/**
 * A result received with `tagged: true`, untagged in place (it is the message's own copy).
 * @param {unknown} result
 * @returns {unknown}
 */
export const untagResult = (result) => {
  if (typeof result !== "object" || result === null) return result
  if (!Array.isArray(result)) mapValues(/** @type {Record<string, unknown>} */ (result), untag)
  else for (const row of result) if (typeof row === "object" && row !== null) mapValues(/** @type {Record<string, unknown>} */ (row), untag)
  return result
}
