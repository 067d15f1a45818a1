/**
 * The bound on one request: `performance.query_timeout`. Past it the request's fiber is
 * interrupted and the caller gets 504. Interruption reaches the database too:
 * - PostgreSQL: PgClient sends pg_cancel_backend for the interrupted statement, and every
 *   connection of the daemon carries `statement_timeout` = query_timeout (layers/Database.ts), so
 *   a statement the cancel missed is still stopped by the server.
 * - MySQL / MariaDB: every pool connection runs `SET SESSION max_statement_time` (MariaDB,
 *   seconds, every statement) or `max_execution_time` (MySQL, milliseconds, read-only SELECTs)
 *   when it is opened; the interrupted statement itself keeps running until that bound.
 * - SQLite: better-sqlite3 is synchronous and cannot be interrupted; a statement runs to its end
 *   (writers wait at most `busy_timeout` for the lock) and the 504 is answered as soon as it
 *   yields back to the event loop.
 */
import { Effect, Fiber, FiberId } from "effect"
import { Timeout } from "../Errors.js"

/**
 * Runs `self` with the request bound: interrupted after `timeoutMs`, failing with `Timeout` (504)
 * once the interruption has finished (a statement's cancel sent, a transaction rolled back).
 * A request that outran the bound without yielding (a synchronous SQLite statement blocks the
 * event loop, so the timer cannot fire before it returns) also gets the 504: the bound is a
 * promise to the caller, and past it the outcome is reported as unknown, like any timeout.
 *
 * One child fiber and one timer per request: `Effect.timeoutFail` races two fibers and a Clock
 * sleep, which cost about twice as much on the request path (measured in bench/handler-micro.ts).
 */
export const withQueryTimeout =
  (timeoutMs: number) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | Timeout, R> =>
    Effect.suspend(() => {
      const started = performance.now()
      return Effect.flatMap(Effect.fork(self), (fiber) =>
        Effect.async<A, E | Timeout>((resume) => {
          let expired = false
          const timer = setTimeout(() => {
            expired = true
            fiber.unsafeInterruptAsFork(FiberId.none)
          }, timeoutMs)
          fiber.addObserver((exit) => {
            clearTimeout(timer)
            resume(expired || performance.now() - started > timeoutMs ? Effect.fail(new Timeout({ timeoutMs })) : exit)
          })
          return Effect.suspend(() => {
            clearTimeout(timer)
            return Fiber.interrupt(fiber)
          })
        })
      )
    })
