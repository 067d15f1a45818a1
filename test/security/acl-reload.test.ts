/**
 * The rules file at run time and at start, and the access metric:
 * - with cache_ttl 0 a changed file decides the very next request, without a restart;
 * - with a long cache_ttl the change waits (the file is not re-read before the ttl);
 * - a file broken later (YAML syntax, unknown entity / role / operation / field) keeps the last
 *   good rules in force, and a repaired file is picked up again;
 * - a broken file at start stops the daemon process with exit code 1, one line per problem;
 * - dbal_acl_checks_total{result} counts allowed and denied decisions;
 * - dbal_acl_rules_reloads_total{result} counts each reload that took effect and each that failed.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Metric } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { aclChecks } from "../../layers/Acl.js"
import { aclRulesReloadsOf } from "../../src/Metrics.js"
import { startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, skipDialect, tempDir, writeConfig } from "../support/services.js"
import { ACL_DIALECTS, type AclDaemon, type Principal, rewrite, startAclDaemon } from "./acl-support.js"

const EMPTY = "rules: []\n"
const DENY_PAGES = `
rules:
  - roles: user
    entities: PageView
    operations: read
    effect: deny
`
const ALLOW_PAGES_AGAIN = `
# explicitly allowed again
rules:
  - roles: [user]
    entities: [PageView]
    operations: [read]
    effect: allow
`
const BROKEN: ReadonlyArray<[string, string]> = [
  ["a YAML syntax error", "rules:\n  - roles: user\n    entities: [PageView\n    operations: read\n"],
  ["an unknown entity", "rules:\n  - roles: user\n    entities: Nope\n    operations: read\n    effect: allow\n"],
  ["an unknown role", "rules:\n  - roles: wizard\n    entities: PageView\n    operations: read\n"],
  ["an unknown operation", "rules:\n  - roles: user\n    entities: PageView\n    operations: peek\n"],
  ["an unknown field in a filter", "rules:\n  - roles: user\n    entities: PageView\n    operations: read\n    filter: { nope: 1 }\n"],
  ["not a rules document", "- just\n- a list\n"]
]

for (const dialect of ACL_DIALECTS) {
  describe.skipIf(await skipDialect(dialect))(`rules file reload and metrics (${dialect})`, () => {
    describe("hot reload with cache_ttl 0", () => {
      let d: AclDaemon
      let user: Principal

      beforeAll(async () => {
        d = await startAclDaemon(dialect, { rules: EMPTY, cacheTtl: 0 })
        user = await d.principal("user")
      })
      afterAll(async () => {
        await d?.dispose()
      })

      const listPages = () => d.call("list", ["PageView"], user.auth)

      it("a changed file decides the next request; a broken one keeps the last good rules", async () => {
        const file = d.rulesFile!
        expect((await listPages()).error).toBeUndefined()
        const reloads = async () => ({
          success: (await Effect.runPromise(Metric.value(aclRulesReloadsOf("success")))).count,
          failure: (await Effect.runPromise(Metric.value(aclRulesReloadsOf("failure")))).count
        })
        const before = await reloads()

        rewrite(file, DENY_PAGES)
        expect((await listPages()).error?.code, "the deny rule applies at once").toBe(403)

        for (const [what, text] of BROKEN) {
          rewrite(file, text)
          expect((await listPages()).error?.code, `after ${what}: the deny rule stays in force`).toBe(403)
          expect((await listPages()).error?.code, `after ${what}, asked again`).toBe(403)
        }
        // A missing file keeps the last good rules too.
        fs.rmSync(file)
        expect((await listPages()).error?.code, "after the file was removed").toBe(403)

        rewrite(file, ALLOW_PAGES_AGAIN)
        const a = await listPages()
        expect(a.error, "a repaired file is read again").toBeUndefined()

        rewrite(file, BROKEN[1]![1])
        expect((await listPages()).error, "broken again: the allow rule stays").toBeUndefined()

        // Two reloads took effect (deny, allow again); each broken version failed once (asked
        // again, the unchanged file is not re-read), the missing file once, the last one once.
        const after = await reloads()
        expect(after.success - before.success).toBe(2)
        expect(after.failure - before.failure).toBe(BROKEN.length + 2)
      })
    })

    describe("cache_ttl bounds how often the file is read", () => {
      let d: AclDaemon
      let user: Principal

      beforeAll(async () => {
        d = await startAclDaemon(dialect, { rules: EMPTY, cacheTtl: 300 })
        user = await d.principal("user")
      })
      afterAll(async () => {
        await d?.dispose()
      })

      it("a change within cache_ttl of the last check is not read yet", async () => {
        expect((await d.call("list", ["PageView"], user.auth)).error).toBeUndefined()
        rewrite(d.rulesFile!, DENY_PAGES)
        expect((await d.call("list", ["PageView"], user.auth)).error, "still the rules read at start").toBeUndefined()
      })
    })

    describe("metric dbal_acl_checks_total", () => {
      let d: AclDaemon
      let user: Principal

      beforeAll(async () => {
        d = await startAclDaemon(dialect)
        user = await d.principal("user")
      })
      afterAll(async () => {
        await d?.dispose()
      })

      const counts = async () => ({
        allowed: (await d.runtime.runPromise(Metric.value(Metric.tagged(aclChecks, "result", "allowed")))).count,
        denied: (await d.runtime.runPromise(Metric.value(Metric.tagged(aclChecks, "result", "denied")))).count
      })

      it("counts a denied and an allowed decision under their result tags", async () => {
        const before = await counts()
        await d.fail(403, "create", ["Package", { name: "x", version: "1.0.0", author: "a", manifest: {} }], user.auth)
        const afterDenied = await counts()
        expect(afterDenied.denied).toBe(before.denied + 1)
        expect(afterDenied.allowed).toBe(before.allowed)
        await d.ok("list", ["PageView"], user.auth)
        const afterAllowed = await counts()
        expect(afterAllowed.allowed).toBe(afterDenied.allowed + 1)
        expect(afterAllowed.denied).toBe(afterDenied.denied)
        // The service principal's decisions count as allowed too.
        await d.ok("count", ["User"])
        expect((await counts()).allowed).toBe(afterAllowed.allowed + 1)
      })
    })

    describe("a broken rules file at start", () => {
      it("stops the daemon process with exit code 1 and one line per problem", async () => {
        const db = await createDatabase(dialect)
        const dir = tempDir("acl-start")
        try {
          const rules = path.join(dir, "acl_rules.yaml")
          fs.writeFileSync(
            rules,
            "rules:\n  - roles: wizard\n    entities: Nope\n    operations: read\n  - roles: user\n    entities: PageView\n    operations: peek\n"
          )
          const base = daemonConfig(db)
          const config = writeConfig(
            { ...base, security: { ...(base.security as Record<string, unknown>), acl: { rules_file: rules } } },
            dir
          )
          const started = startDaemon([`--config=${config}`])
          const err = await started.then(
            async (daemon) => {
              await daemon.stop("SIGKILL")
              throw new Error("the daemon started with a broken rules file")
            },
            (e: unknown) => e as Error
          )
          expect(err.message).toMatch(/daemon exited with 1 before listening/)
          const problems = err.message.split("\n").filter((l) => l.includes(`${rules}: `))
          expect(problems).toHaveLength(3)
          expect(problems.some((l) => /rules\[0\]\.roles: unknown role wizard/.test(l))).toBe(true)
          expect(problems.some((l) => /rules\[0\]\.entities: unknown entity Nope/.test(l))).toBe(true)
          expect(problems.some((l) => /rules\[1\]\.operations: unknown operation peek/.test(l))).toBe(true)

          // A YAML syntax error at start: exit code 1 too, naming the file.
          fs.writeFileSync(rules, "rules:\n  - roles: [user\n")
          const again = await startDaemon([`--config=${config}`]).then(
            async (daemon) => {
              await daemon.stop("SIGKILL")
              throw new Error("the daemon started with a broken rules file")
            },
            (e: unknown) => e as Error
          )
          expect(again.message).toMatch(/daemon exited with 1 before listening/)
          expect(
            again.message
              .split("\n")
              .filter((l) => l.includes(`${rules}: `))
              .join("\n")
          ).toMatch(/YAML syntax error/)
        } finally {
          await db.drop()
          fs.rmSync(dir, { recursive: true, force: true })
        }
      })
    })
  })
}
