/**
 * Pure decisions that let a single-row write be one statement (src/query/Repository.ts):
 * whether an update can change the answer of its row filter, and whether a new record is
 * admitted by the row filter, decided in memory, before any I/O.
 */
import type { FieldDef } from "../entity/Model.js"
import type { Values } from "../entity/Validate.js"
import { type WireRecord, wireOfValues } from "./Codec.js"
import { filterFields, type FilterNode } from "./Filter.js"
import { compileMatch } from "./FilterMatch.js"

/**
 * Whether writing these fields can change what the row filter answers for the row. When it
 * cannot, a row the filter admitted before the write is still admitted after it, and the
 * write's post-condition needs no statement of its own.
 */
export const touchesFilter = (rowFilter: FilterNode, written: Iterable<FieldDef>): boolean => {
  const tested = planOf(rowFilter).tested
  if (tested.size === 0) return false
  for (const f of written) if (tested.has(f)) return true
  return false
}

/** Types whose order is the same in memory and in every database: numbers, booleans, instants. */
const ORDERED: ReadonlySet<FieldDef["type"]> = new Set(["integer", "bigint", "decimal", "float", "boolean", "datetime"])

/**
 * Nodes whose in-memory answer (FilterMatch.ts) is the database's whatever the column's
 * collation: equality and lists on any field, order on non-text fields, NULL tests. Pattern,
 * case-insensitive and array tests, and order on text, are left to the database.
 */
const collationFree = (n: FilterNode): boolean => {
  switch (n._tag) {
    case "And":
    case "Or":
      return n.nodes.every(collationFree)
    case "Not":
      return collationFree(n.node)
    case "Cmp":
      if (n.insensitive === true) return false
      return n.op === "eq" || n.op === "ne" || ORDERED.has(n.field.type)
    case "In":
      return n.insensitive !== true
    case "IsNull":
      return true
    default:
      return false
  }
}

/**
 * Whether the row filter admits a new record whose every value is known (`record`, complete as
 * it will be inserted): true when it surely does, false when the database must decide (the
 * filter tests a value the database assigns, or a test whose answer depends on collation).
 */
export const admitsNewRecord = (rowFilter: FilterNode, record: Values): boolean => {
  const plan = planOf(rowFilter)
  if (plan.match === undefined) return false
  for (const f of plan.testedList) if (!record.has(f) || f.neverExpose) return false
  return plan.match(wireOfValues(record, plan.testedList)) === "T"
}

/** `admitsNewRecord` for one filter and many records (createMany): the filter's plan looked up once. */
export const newRecordAdmitter = (rowFilter: FilterNode): ((record: Values) => boolean) => {
  const { match, testedList } = planOf(rowFilter)
  if (match === undefined || testedList.some((f) => f.neverExpose)) return () => false
  return (record) => testedList.every((f) => record.has(f)) && match(wireOfValues(record, testedList)) === "T"
}

/** What these decisions need of a row filter, worked out once per filter (a decision's, kept while the rules are in force). */
interface FilterPlan {
  readonly tested: ReadonlySet<FieldDef>
  readonly testedList: ReadonlyArray<FieldDef>
  /** The in-memory test, when its answer is the database's (`collationFree`). */
  readonly match: ((record: WireRecord) => ReturnType<ReturnType<typeof compileMatch>>) | undefined
}

const plans = new WeakMap<FilterNode, FilterPlan>()

const planOf = (rowFilter: FilterNode): FilterPlan => {
  let plan = plans.get(rowFilter)
  if (plan === undefined) {
    const tested = filterFields(rowFilter)
    plan = { tested, testedList: [...tested], match: collationFree(rowFilter) ? compileMatch(rowFilter) : undefined }
    plans.set(rowFilter, plan)
  }
  return plan
}
