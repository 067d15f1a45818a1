/**
 * `performance.max_query_complexity`: a bound on how much work one request may ask of the
 * database, checked before anything runs (422 past it). The score of a list, count, findFirst,
 * updateMany or deleteMany request is
 *
 *     10 × filter nodes                 every node of the parsed filter tree: and/or/not groups and
 *                                       each condition (eq, gt, in, contains, isNull, …); a
 *                                       condition with mode "insensitive" counts twice (its folded
 *                                       column can use no index)
 *   +  1 × values of in / notIn lists   each bound value costs an index probe or a comparison
 *   +  1 × characters of each contains /  a LIKE pattern cannot use an index: every row is
 *          startsWith / endsWith pattern  scanned and matched, and matching costs per character
 *   + 20 × sort keys                    each key beyond the implicit primary key adds sort work
 *   + ⌊(page − 1) × limit / 100⌋        OFFSET rows the database reads and throws away
 *
 * With the default limit of 1000 that admits, for example, a filter of 50 conditions, an `in` list
 * of 500 values with a few other conditions, or a page offset of up to 100 000 rows. The access
 * rules' own row filter is not counted: only what the caller asked for.
 *
 * A `transaction` is scored as the sum of its operations' scores against the same limit (its
 * operations run in order; the one that crosses the limit fails, and the transaction with it).
 */
import { Either } from "effect"
import { ValidationFailed } from "../Errors.js"
import type { FilterNode } from "./Filter.js"

export const FILTER_NODE_COST = 10
export const IN_VALUE_COST = 1
export const SORT_KEY_COST = 20
export const OFFSET_ROWS_PER_POINT = 100
export const PATTERN_CHAR_COST = 1

export interface ComplexityRequest {
  readonly filter: FilterNode
  readonly sortKeys?: number
  readonly page?: number
  readonly limit?: number
}

export interface Complexity {
  readonly total: number
  readonly filterNodes: number
  readonly inValues: number
  /** Characters of contains / startsWith / endsWith patterns. */
  readonly patternChars: number
  readonly sortKeys: number
  readonly offsetRows: number
  /** The points of each part. */
  readonly filter: number
  readonly sort: number
  readonly page: number
}

const walk = (n: FilterNode, acc: { nodes: number; values: number; chars: number }, root: boolean): void => {
  switch (n._tag) {
    case "And":
    case "Or":
      // The empty root AND is "no filter", not a node.
      if (!(root && n._tag === "And" && n.nodes.length === 0)) acc.nodes++
      for (const c of n.nodes) walk(c, acc, false)
      return
    case "Not":
      acc.nodes++
      walk(n.node, acc, false)
      return
    case "In":
      acc.nodes += n.insensitive === true ? 2 : 1
      acc.values += n.values.length
      return
    case "Like":
      acc.nodes += n.insensitive === true ? 2 : 1
      // Code points, as the entity's string lengths are counted.
      for (const _ of n.value) acc.chars++
      return
    case "Cmp":
      acc.nodes += n.insensitive === true ? 2 : 1
      return
    case "IsNull":
    case "IsEmpty":
      acc.nodes++
      return
    case "Has":
      acc.nodes++
      acc.values += n.values.length
      return
  }
}

export const complexity = (q: ComplexityRequest): Complexity => {
  const acc = { nodes: 0, values: 0, chars: 0 }
  walk(q.filter, acc, true)
  const sortKeys = q.sortKeys ?? 0
  const offsetRows = Math.max(0, (q.page ?? 1) - 1) * (q.limit ?? 0)
  const filter = acc.nodes * FILTER_NODE_COST + acc.values * IN_VALUE_COST + acc.chars * PATTERN_CHAR_COST
  const sort = sortKeys * SORT_KEY_COST
  const page = Math.floor(offsetRows / OFFSET_ROWS_PER_POINT)
  return {
    total: filter + sort + page,
    filterNodes: acc.nodes,
    inValues: acc.values,
    patternChars: acc.chars,
    sortKeys,
    offsetRows,
    filter,
    sort,
    page
  }
}

/**
 * 422 when the request's score is above `max`, naming the part that weighs most and why.
 * `spent`: the scores of the transaction's earlier operations, which count against the same limit.
 */
export const checkComplexity = (q: ComplexityRequest, max: number, spent = 0): Either.Either<Complexity, ValidationFailed> => {
  const c = complexity(q)
  if (spent + c.total <= max) return Either.right(c)
  const parts: Array<string> = [
    `${c.filterNodes} filter nodes × ${FILTER_NODE_COST} + ${c.inValues} in/notIn values${
      c.patternChars > 0 ? ` + ${c.patternChars} pattern characters × ${PATTERN_CHAR_COST}` : ""
    } = ${c.filter}`
  ]
  if (c.sortKeys > 0) parts.push(`${c.sortKeys} sort keys × ${SORT_KEY_COST} = ${c.sort}`)
  if (c.offsetRows > 0) parts.push(`offset of ${c.offsetRows} rows / ${OFFSET_ROWS_PER_POINT} = ${c.page}`)
  const field = c.page > c.filter && c.page >= c.sort ? "page" : c.sort > c.filter ? "sort" : "filter"
  const hint =
    field === "page"
      ? "ask for an earlier page, or narrow the filter instead of paging deep"
      : field === "sort"
        ? "use fewer sort keys"
        : "use fewer conditions, shorter in/notIn lists or shorter patterns, or split the request"
  const message =
    spent === 0
      ? `query complexity ${c.total} exceeds the limit ${max}: ${parts.join("; ")}`
      : `transaction complexity ${spent + c.total} exceeds the limit ${max}: the earlier operations score ${spent}, this one ${c.total} (${parts.join("; ")})`
  return Either.left(ValidationFailed.one(field, `${message}; ${spent === 0 ? hint : `${hint}, or split the transaction`}`))
}
