/**
 * Access layer: loads the rules (src/access/Policy.ts decides), reloads them when the file
 * changes, and counts every decision. Deny by default; the service role `system` passes every rule.
 *
 * `security.acl.rules_file` adds or overrides rules per role × entity × operation. The file is
 * re-read when it changes, at most every `cache_ttl` seconds; a broken file keeps the last good
 * rules and logs why. Every decision counts in dbal_acl_checks_total.
 */
import { Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as YAML from "yaml"
import { decideFor, parseRules, type Rule, systemDecision } from "../src/access/Policy.js"
import { AppConfig } from "../src/Config.js"
import { childSpan } from "../src/Spans.js"
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

  /** Re-reads the rules file when it changed (at most every cache_ttl). */
  const refresh = Effect.suspend(() => {
    if (file === undefined) return Effect.void
    const now = Date.now()
    if (now - state.checkedAt < ttlMs) return Effect.void
    state.checkedAt = now
    let st: fs.Stats
    try {
      st = fs.statSync(file)
    } catch {
      reloadsFailed.unsafeUpdate(1, [])
      return Effect.logWarning("acl rules file cannot be read; keeping the last good rules", file)
    }
    if (st.mtimeMs === state.mtimeMs && st.size === state.size) return Effect.void
    const next = load()
    if (next.problems.length > 0) {
      state.mtimeMs = st.mtimeMs
      state.size = st.size
      reloadsFailed.unsafeUpdate(1, [])
      return Effect.logError(`acl rules file is broken; keeping the last good rules: ${next.problems.join("; ")}`, file)
    }
    state.rules = next.rules
    state.mtimeMs = st.mtimeMs
    state.size = st.size
    reloadsOk.unsafeUpdate(1, [])
    return Effect.logInfo(`acl rules reloaded (${next.rules.length} rules)`, file)
  })

  const decisionOf = (principal: Principal, entity: EntityDef, op: AclOperation): Decision | string => {
    const hidden = hiddenByEntity.get(entity.name) ?? new Set<FieldDef>()
    return principal.role === "system"
      ? { ...systemDecision(entity), readable: entity.exposed.filter((f) => !hidden.has(f)) }
      : decideFor(state.rules, principal, entity, op, hidden)
  }

  // A plain function after `refresh` (no Effect.gen, direct metric updates): it runs for every
  // entity of every request.
  const decide = (principal: Principal, entity: EntityDef, op: AclOperation) =>
    Effect.flatMap(refresh, () => {
      const decision = decisionOf(principal, entity, op)
      if (typeof decision === "string") {
        denied.unsafeUpdate(1, [])
        return Effect.fail(new Forbidden({ reason: decision }))
      }
      allowed.unsafeUpdate(1, [])
      return Effect.succeed(decision)
    }).pipe(aclSpan)

  // The read decision's fields, for shaping answers and checking tested fields of any method: not
  // an access check of its own (the method's decision is), so not counted in the metric.
  const readable = (principal: Principal, entity: EntityDef) =>
    Effect.map(refresh, () => {
      const decision = decisionOf(principal, entity, "read")
      return typeof decision === "string" ? undefined : decision.readable
    })

  return { decide, readable }
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
