/**
 * The bound on one request: `performance.query_timeout`. Past it the request's fiber is
 * interrupted and the caller gets 504. Interruption reaches the database too:
 * - PostgreSQL: PgClient sends pg_cancel_backend for the interrupted statement, and every
 *   connection of the daemon carries `statement_timeout` = query_timeout (layers/Database.ts), so
 *   a statement the cancel missed is still stopped by the server.
 * - MySQL / MariaDB: every pool connection runs `SET SESSION max_statement_time` (MariaDB,
 *   seconds, every statement) or `max_execution_time` (MySQL, milliseconds, read-only SELECTs)
 *   when it is opened; the interrupted statement itself keeps running until that bound.
 * - SQLite: statements run in executor processes (layers/db/Sqlite.ts); an interrupted
 *   statement's process is killed, which ends the statement and releases its locks (a transaction
 *   it had not committed leaves nothing), and replaced; the 504 comes at the bound, once the
 *   process is gone (docs/operations.md).
 */
import { Effect, Fiber, FiberId, Runtime, RuntimeFlags } from "effect"
import { Timeout } from "../Errors.js"

/**
 * A runtime whose fibers cannot be interrupted from outside; the WebSocket server forks every
 * request on it. In such a fiber the bound needs no second fiber: the request body
 * runs in an interruptible region that the timer interrupts, and what follows it (the audit
 * record, the answer) runs to its end. Forking a fiber for the bound cost about 25 µs per
 * request (bench/handler-micro.ts).
 */
export const requestRuntime = <R>(runtime: Runtime.Runtime<R>): Runtime.Runtime<R> =>
  Runtime.disableRuntimeFlag(runtime, RuntimeFlags.Interruption)

/**
 * Runs `self` with the request bound: interrupted after `timeoutMs`, failing with `Timeout` (504)
 * once the interruption has finished (a statement's cancel sent, a transaction rolled back).
 * A request that outran the bound without yielding (a synchronous SQLite statement blocks the
 * event loop, so the timer cannot fire before it returns) also gets the 504: the bound is a
 * promise to the caller, and past it the outcome is reported as unknown, like any timeout.
 *
 * In a fiber that cannot be interrupted (`requestRuntime`) the timer interrupts the fiber itself
 * while `self` runs; anywhere else (the in-process client, whose caller may interrupt a request
 * itself) `self` runs in a child fiber that the timer interrupts, so that the caller's fiber is
 * never interrupted by the bound.
 */
export const withQueryTimeout =
  (timeoutMs: number) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | Timeout, R> =>
    Effect.checkInterruptible((interruptible) => {
      const started = performance.now()
      /** Arms the timer against `target`; `settle` ends it and gives the request's outcome. */
      const arm = (target: Fiber.RuntimeFiber<unknown, unknown>) => {
        let expired = false
        const timer = setTimeout(() => {
          expired = true
          target.unsafeInterruptAsFork(FiberId.none)
        }, timeoutMs)
        return {
          clear: () => clearTimeout(timer),
          settle: <X>(exit: Effect.Effect<X, E>): Effect.Effect<X, E | Timeout> => {
            clearTimeout(timer)
            return expired || performance.now() - started > timeoutMs ? Effect.fail(new Timeout({ timeoutMs })) : exit
          }
        }
      }
      if (!interruptible) {
        return Effect.withFiberRuntime<A, E | Timeout, R>((fiber) => {
          const bound = arm(fiber)
          return Effect.flatMap(Effect.exit(Effect.interruptible(self)), (exit) => bound.settle(exit))
        })
      }
      return Effect.flatMap(Effect.fork(self), (child) =>
        Effect.async<A, E | Timeout>((resume) => {
          const bound = arm(child)
          child.addObserver((exit) => resume(bound.settle(exit)))
          return Effect.suspend(() => {
            bound.clear()
            return Fiber.interrupt(child)
          })
        })
      )
    })
