/**
 * Access layer: loads the rules (src/access/Policy.ts decides), reloads them when the file
 * changes, and counts every decision. Deny by default; the service role `system` passes every rule.
 *
 * `security.acl.rules_file` adds or overrides rules per role × entity × operation. The file is
 * re-read when it changes, at most every `cache_ttl` seconds; a broken file keeps the last good
 * rules and logs why. Every decision counts in dbal_acl_checks_total.
 */
import { Effect, Either, Layer, Runtime, Schema } from "effect"
import * as fs from "node:fs"
import * as YAML from "yaml"
import { decideFor, parseRules, type Rule, systemDecision } from "../src/access/Policy.js"
import { AppConfig } from "../src/Config.js"
import { childSpan, spansExported } from "../src/Spans.js"
import { aclChecks, aclChecksOf, aclRulesReloadsOf } from "../src/Metrics.js"
import { Forbidden } from "../src/Errors.js"
import { type AclOperation, EntityRegistry, type EntityDef, type FieldDef } from "../src/entity/Model.js"
import { Acl, type Decision } from "../src/services/Acl.js"
import type { Principal } from "../src/services/Principal.js"

export { aclChecks }

// Made once from their labelled keys (src/Metrics.ts says why).
const allowed = aclChecksOf("allowed")
const denied = aclChecksOf("denied")
const reloadsOk = aclRulesReloadsOf("success")
const reloadsFailed = aclRulesReloadsOf("failure")

/** Decisions kept per rules in force (principal × entity × operation) before the cache is emptied. */
const MAX_DECISIONS = 10_000

interface RulesState {
  rules: ReadonlyArray<Rule>
  mtimeMs: number
  size: number
  checkedAt: number
}

export const make = Effect.gen(function* () {
  const cfg = yield* AppConfig
  const aclSpan = childSpan(cfg)("acl")
  const registry = yield* EntityRegistry
  const file = cfg.security.acl.rules_file
  const ttlMs = cfg.security.acl.cache_ttl * 1000
  const hiddenByEntity = new Map<string, Set<FieldDef>>()
  for (const ref of cfg.security.never_expose) {
    const [entityName, fieldName] = ref.split(".") as [string, string]
    const f = registry.entities.get(entityName)?.byName.get(fieldName)
    if (f === undefined) return yield* Effect.dieMessage(`security.never_expose: ${ref} names no field`)
    hiddenByEntity.set(entityName, (hiddenByEntity.get(entityName) ?? new Set()).add(f))
  }

  const load = (): { rules: Array<Rule>; problems: Array<string> } => {
    if (file === undefined) return { rules: [], problems: [] }
    try {
      const doc = YAML.parseDocument(fs.readFileSync(file, "utf8"))
      if (doc.errors.length > 0)
        return { rules: [], problems: doc.errors.map((e) => `line ${e.linePos?.[0].line ?? "?"}: YAML syntax error`) }
      return parseRules(doc.toJS(), registry)
    } catch (e) {
      return { rules: [], problems: [`cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`] }
    }
  }

  const state: RulesState = { rules: [], mtimeMs: -1, size: -1, checkedAt: 0 }
  if (file !== undefined) {
    const first = load()
    if (first.problems.length > 0) return yield* Effect.fail(new RulesFileError({ file, problems: first.problems }))
    const st = fs.statSync(file)
    Object.assign(state, { rules: first.rules, mtimeMs: st.mtimeMs, size: st.size, checkedAt: Date.now() })
  }

  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  /**
   * Decisions made, per rules in force: a decision depends only on the rules, the principal's role
   * and id (rules that bind the user, `self` access, the rank guard), the entity and the operation.
   * Emptied when the rules change; bounded (emptied when full).
   */
  let decisions = new Map<string, Decision | string>()

  /** Re-reads the rules file when it changed (at most every cache_ttl); what it logs runs on its own fiber. */
  const refresh = (): void => {
    if (file === undefined) return
    const now = Date.now()
    if (now - state.checkedAt < ttlMs) return
    state.checkedAt = now
    let st: fs.Stats
    try {
      st = fs.statSync(file)
    } catch {
      reloadsFailed.unsafeUpdate(1, [])
      runFork(Effect.logWarning("acl rules file cannot be read; keeping the last good rules", file))
      return
    }
    if (st.mtimeMs === state.mtimeMs && st.size === state.size) return
    const next = load()
    state.mtimeMs = st.mtimeMs
    state.size = st.size
    if (next.problems.length > 0) {
      reloadsFailed.unsafeUpdate(1, [])
      runFork(Effect.logError(`acl rules file is broken; keeping the last good rules: ${next.problems.join("; ")}`, file))
      return
    }
    state.rules = next.rules
    decisions = new Map()
    reloadsOk.unsafeUpdate(1, [])
    runFork(Effect.logInfo(`acl rules reloaded (${next.rules.length} rules)`, file))
  }

  const decisionOf = (principal: Principal, entity: EntityDef, op: AclOperation): Decision | string => {
    refresh()
    const key = `${principal.role}\u0000${principal.userId}\u0000${entity.name}\u0000${op}`
    let decision = decisions.get(key)
    if (decision === undefined) {
      const hidden = hiddenByEntity.get(entity.name) ?? new Set<FieldDef>()
      decision =
        principal.role === "system"
          ? { ...systemDecision(entity), readable: entity.exposed.filter((f) => !hidden.has(f)) }
          : decideFor(state.rules, principal, entity, op, hidden)
      if (decisions.size >= MAX_DECISIONS) decisions = new Map()
      decisions.set(key, decision)
    }
    return decision
  }

  const decideNow = (principal: Principal, entity: EntityDef, op: AclOperation): Either.Either<Decision, Forbidden> => {
    const decision = decisionOf(principal, entity, op)
    if (typeof decision === "string") {
      denied.unsafeUpdate(1, [])
      return Either.left(new Forbidden({ reason: decision }))
    }
    allowed.unsafeUpdate(1, [])
    return Either.right(decision)
  }

  const decide = (principal: Principal, entity: EntityDef, op: AclOperation) =>
    aclSpan(Effect.suspend(() => Either.match(decideNow(principal, entity, op), { onLeft: Effect.fail, onRight: Effect.succeed })))

  // The read decision's fields, for shaping answers and checking tested fields of any method: not
  // an access check of its own (the method's decision is), so not counted in the metric.
  const readable = (principal: Principal, entity: EntityDef) =>
    Effect.sync(() => {
      const decision = decisionOf(principal, entity, "read")
      return typeof decision === "string" ? undefined : decision.readable
    })

  return { decide, readable, ...(spansExported(cfg) ? {} : { decideNow }) }
})

export class RulesFileError extends Schema.TaggedError<RulesFileError>()("RulesFileError", {
  file: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.map((p) => `${this.file}: ${p}`).join("\n")
  }
}

export const layer = Layer.effect(Acl, make)
