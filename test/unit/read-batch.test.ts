/**
 * Coalescing of reads by id (src/query/ReadBatch.ts) with statements the test controls: what runs
 * alone, what is batched, and what each member gets when a member leaves, the leader leaves, the
 * batch's statement is interrupted or fails.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { makeReadBatch } from "../../src/query/ReadBatch.js"

/** A lane whose statements wait for the test: each call is logged with a gate the test opens. */
const makeLane = () =>
  Effect.sync(() => {
    const calls: Array<{ ids: ReadonlyArray<string>; gate: Deferred.Deferred<void, string> }> = []
    const statement = (ids: ReadonlyArray<string>) =>
      Effect.flatMap(Deferred.make<void, string>(), (gate) => {
        calls.push({ ids, gate })
        return Effect.map(Deferred.await(gate), () => new Map(ids.filter((id) => id !== "missing").map((id) => [id, `row ${id}`])))
      })
    const batch = makeReadBatch(1)
    const lane = {}
    const read = (id: string) =>
      batch.read(
        lane,
        id,
        id,
        Effect.map(statement([id]), (rows) => rows.get(id)),
        (ids) => statement(ids as ReadonlyArray<string>),
        undefined
      )
    /** Waits until `n` statements have been started (bounded). */
    const started = (n: number) =>
      Effect.gen(function* () {
        for (let i = 0; i < 1000 && calls.length < n; i++) yield* Effect.yieldNow()
        expect(calls.length).toBe(n)
      })
    return { calls, read, started }
  })

describe("ReadBatch", () => {
  it.effect("an idle lane's read runs alone; reads queued behind it run as one statement, each with its row", () =>
    Effect.gen(function* () {
      const { calls, read, started } = yield* makeLane()
      const first = yield* Effect.fork(read("a"))
      yield* started(1)
      const queued = yield* Effect.forEach(["b", "c", "missing", "b"], (id) => Effect.fork(read(id)))
      yield* Effect.yieldNow()
      expect(calls).toHaveLength(1)
      yield* Deferred.succeed(calls[0]!.gate, undefined)
      expect(yield* Fiber.join(first)).toBe("row a")
      yield* started(2)
      expect(calls[1]!.ids).toEqual(["b", "c", "missing", "b"])
      yield* Deferred.succeed(calls[1]!.gate, undefined)
      expect(yield* Effect.forEach(queued, Fiber.join)).toEqual(["row b", "row c", undefined, "row b"])
      // The lane is idle again: the next read runs alone at once.
      const next = yield* Effect.fork(read("d"))
      yield* started(3)
      expect(calls[2]!.ids).toEqual(["d"])
      yield* Deferred.succeed(calls[2]!.gate, undefined)
      expect(yield* Fiber.join(next)).toBe("row d")
    })
  )

  it.effect("a member interrupted while queued is not asked for; a leader interrupted while queued hands the lead on", () =>
    Effect.gen(function* () {
      const { calls, read, started } = yield* makeLane()
      const first = yield* Effect.fork(read("a"))
      yield* started(1)
      const leader = yield* Effect.fork(read("b"))
      yield* Effect.yieldNow()
      const left = yield* Effect.fork(read("c"))
      const stays = yield* Effect.fork(read("d"))
      const also = yield* Effect.fork(read("e"))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader)
      yield* Fiber.interrupt(left)
      yield* Deferred.succeed(calls[0]!.gate, undefined)
      yield* Fiber.join(first)
      yield* started(2)
      expect(calls[1]!.ids).toEqual(["d", "e"])
      yield* Deferred.succeed(calls[1]!.gate, undefined)
      expect(yield* Fiber.join(stays)).toBe("row d")
      expect(yield* Fiber.join(also)).toBe("row e")
    })
  )

  it.effect("when the batch's statement is interrupted (its leader's bound), the other members run alone", () =>
    Effect.gen(function* () {
      const { calls, read, started } = yield* makeLane()
      const first = yield* Effect.fork(read("a"))
      yield* started(1)
      const leader = yield* Effect.fork(read("b"))
      yield* Effect.yieldNow()
      const member = yield* Effect.fork(read("c"))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(calls[0]!.gate, undefined)
      yield* Fiber.join(first)
      yield* started(2)
      expect(calls[1]!.ids).toEqual(["b", "c"])
      yield* Fiber.interrupt(leader)
      yield* started(3)
      expect(calls[2]!.ids).toEqual(["c"])
      yield* Deferred.succeed(calls[2]!.gate, undefined)
      expect(yield* Fiber.join(member)).toBe("row c")
    })
  )

  it.effect("a failure of the batch's statement is every member's failure", () =>
    Effect.gen(function* () {
      const { calls, read, started } = yield* makeLane()
      const first = yield* Effect.fork(read("a"))
      yield* started(1)
      const members = yield* Effect.forEach(["b", "c"], (id) => Effect.fork(read(id)))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(calls[0]!.gate, undefined)
      yield* Fiber.join(first)
      yield* started(2)
      yield* Deferred.fail(calls[1]!.gate, "database down")
      for (const m of members) expect(yield* Fiber.await(m)).toEqual(Exit.fail("database down"))
    })
  )
})
