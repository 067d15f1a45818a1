/**
 * Keys under which the realtime layer shares work between subscriptions: two filters with the
 * same key compile to the same test, so subscriptions whose read access and subscription filter
 * have equal keys get the same event for every change and are decided once, as a group.
 *
 * A key that differs where the filters mean the same only costs sharing; equal keys must mean
 * equal filters. Fields are named (one entity's field names are unique), and values keep their
 * type: a string "5", a number 5, a bigint 5n and a date are four different keys.
 */
import type { FilterNode } from "../query/Filter.js"

const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)

const isObject = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object"

export const filterKey = (node: FilterNode): string =>
  JSON.stringify(node, function (this: unknown, key: string, value: unknown) {
    // `this[key]` is the value before toJSON (a Date's arrives here as its ISO text).
    const raw = isObject(this) ? this[key] : value
    if (raw instanceof Date) return `d:${Number.isNaN(raw.getTime()) ? "invalid" : raw.toISOString()}`
    if (key === "field" && isRecord(value) && typeof value.name === "string") return `f:${value.name}`
    if (typeof value === "string") return `s:${value}`
    if (typeof value === "bigint") return `b:${value.toString()}`
    if (typeof value === "number" && !Number.isFinite(value)) return `n:${String(value)}`
    return value
  })
