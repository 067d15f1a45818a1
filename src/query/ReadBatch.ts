/**
 * Coalescing of concurrent reads by id (docs/architecture.md, "Reads by id"). Reads that share a
 * lane (one entity, one access decision: the same statement but for the id) run alone while fewer
 * than `inFlight` statements of the lane are running; past that they queue, and the queue goes as
 * one statement for all of its ids (`many`) as soon as a running statement of the lane ends.
 * A read that finds the lane idle therefore waits for nothing: batches form only under load.
 *
 * The first read of a queue leads it: it waits for a free slot, runs `many` on its own fiber (its
 * timeout, cancel and retries apply) and hands each member its row. A member interrupted while
 * queued leaves the queue (its id is not asked for); a leader interrupted while queued hands the
 * lead on. When the leader's statement is interrupted (its own timeout), the other members each run
 * their read alone; a failure of the statement is every member's failure.
 */
import { Effect, Exit } from "effect"

/** What a queued member is told. */
type Instruction<A> = { readonly _tag: "Answer"; readonly value: A } | { readonly _tag: "Lead" } | { readonly _tag: "Alone" }

interface Member<A, E> {
  readonly id: unknown
  readonly idKey: string
  /** How a queued member is woken; undefined once it left. */
  resume: ((e: Effect.Effect<Instruction<A>, E>) => void) | undefined
}

interface Queue<A, E> {
  readonly members: Array<Member<A, E>>
  /** Wakes the waiting leader when a slot frees. */
  wake: (() => void) | undefined
  /** A slot freed while no leader was waiting (the lead was being handed on). */
  free: boolean
}

interface Lane<A, E> {
  running: number
  queued: Queue<A, E> | undefined
}

export interface ReadBatchShape {
  /**
   * The read of `id` in lane `lane`: `one` alone, or its row of `many` (keyed by `idKey`, absent
   * when there is none, then `missing`).
   */
  readonly read: <A, E>(
    lane: object,
    id: unknown,
    idKey: string,
    one: Effect.Effect<A, E>,
    many: (ids: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyMap<string, A>, E>,
    missing: A
  ) => Effect.Effect<A, E>
}

export const makeReadBatch = (inFlight: number): ReadBatchShape => {
  const lanes = new Map<object, Lane<unknown, unknown>>()

  const read = <A, E>(
    key: object,
    id: unknown,
    idKey: string,
    one: Effect.Effect<A, E>,
    many: (ids: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyMap<string, A>, E>,
    missing: A
  ): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      let lane = lanes.get(key) as Lane<A, E> | undefined
      if (lane === undefined) lanes.set(key, (lane = { running: 0, queued: undefined }) as Lane<unknown, unknown>)
      const l = lane
      const done = Effect.sync(() => {
        l.running--
        const q = l.queued
        if (q !== undefined) {
          const wake = q.wake
          q.wake = undefined
          if (wake !== undefined) wake()
          else q.free = true
        } else if (l.running === 0) lanes.delete(key)
      })
      const running = <X>(e: Effect.Effect<X, E>): Effect.Effect<X, E> => {
        l.running++
        return Effect.ensuring(e, done)
      }
      if (l.running < inFlight && l.queued === undefined) return running(one)

      const member: Member<A, E> = { id, idKey, resume: undefined }
      /** Waits for a free slot, then runs the queue (taken whole) as one statement. */
      const lead = (q: Queue<A, E>): Effect.Effect<A, E> =>
        Effect.flatMap(
          Effect.async<void>((resume) => {
            if (q.free || l.running < inFlight) return resume(Effect.void)
            q.wake = () => resume(Effect.void)
            return Effect.sync(() => {
              q.wake = undefined
              handOn(q)
            })
          }),
          () => {
            if (l.queued === q) l.queued = undefined
            const members = q.members.filter((m) => m === member || m.resume !== undefined)
            if (members.length === 1) return running(one)
            return Effect.onExit(running(many(members.map((m) => m.id))), (exit): Effect.Effect<void> =>
              Effect.sync(() => {
                for (const m of members) {
                  const resume = m.resume
                  if (m === member || resume === undefined) continue
                  m.resume = undefined
                  if (Exit.isSuccess(exit)) resume(Effect.succeed({ _tag: "Answer", value: exit.value.get(m.idKey) ?? missing }))
                  else if (Exit.isInterrupted(exit)) resume(Effect.succeed({ _tag: "Alone" }))
                  else resume(exit as Exit.Exit<never, E>)
                }
              })
            ).pipe(Effect.map((rows) => rows.get(idKey) ?? missing))
          }
        )
      /** The leader left before its queue ran: the next member leads, or the queue is gone. */
      const handOn = (q: Queue<A, E>) => {
        const i = q.members.indexOf(member)
        if (i >= 0) q.members.splice(i, 1)
        const next = q.members.find((m) => m.resume !== undefined)
        if (next === undefined) {
          if (l.queued === q) l.queued = undefined
          if (l.running === 0 && l.queued === undefined) lanes.delete(key)
          return
        }
        const resume = next.resume!
        next.resume = undefined
        resume(Effect.succeed({ _tag: "Lead" }))
      }

      const q = l.queued
      if (q === undefined) {
        const created: Queue<A, E> = { members: [member], wake: undefined, free: false }
        l.queued = created
        return lead(created)
      }
      q.members.push(member)
      return Effect.flatMap(
        Effect.async<Instruction<A>, E>((resume) => {
          member.resume = resume
          return Effect.sync(() => {
            member.resume = undefined
            const i = q.members.indexOf(member)
            if (i >= 0 && l.queued === q) q.members.splice(i, 1)
          })
        }),
        (instruction): Effect.Effect<A, E> => {
          switch (instruction._tag) {
            case "Answer":
              return Effect.succeed(instruction.value)
            case "Alone":
              return running(one)
            case "Lead":
              return lead(q)
          }
        }
      )
    })

  return { read }
}
