/** Settings shared by the database adapters. */
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import type { DaemonConfig } from "../../src/Config.js"

export const poolSize = (cfg: DaemonConfig) => cfg.database.pool_size ?? cfg.performance.connection_pool_size

/** Connect (and pool wait) bound: never longer than a request may take. */
export const connectTimeoutMs = (cfg: DaemonConfig) => Math.min(cfg.database.timeout, cfg.performance.query_timeout)

export const APPLICATION_NAME = "dbal-daemon"

/** What a login password source says when the password in use changes (for a log line). */
export type PasswordSwitch =
  /** The server refused the file's password and accepted the previous one: the file was rotated first. */
  | "previous"
  /** After a time on the previous password, the server accepted the file's: the rotation is complete. */
  | "current"

/**
 * The password of each new database connection, with `password_file` read again for every login so
 * that a rotated password is used from the next connection on, without a restart. (A file that cannot
 * be read at that moment, being replaced say, falls back to the last password read.)
 *
 * PostgreSQL and MariaDB accept one password per user, so a rotation has a moment where the file and
 * the server disagree. The file is meant to change first: when the server refuses the file's password
 * and has accepted another one before (the previous password, still valid there until ALTER USER),
 * the next logins use that one instead, until the server refuses it too (ALTER USER has run) — then
 * the file's again. So a rotation done as "write the file, then ALTER USER" opens no window in which
 * new connections fail, however long the file takes to reach the daemon (a Kubernetes Secret: about
 * a minute). Open connections are never affected: both servers check the password at login only.
 */
export interface LoginPassword {
  /** The password for the next login; undefined when none is configured. */
  readonly next: () => Promise<string | undefined>
  /** What the server answered to a login with `password`: accepted, or refused as a wrong password. */
  readonly report: (password: string, accepted: boolean) => void
}

const readPasswordFile = async (file: string): Promise<string | undefined> => {
  try {
    return (await fs.promises.readFile(file, "utf8")).replace(/\r?\n$/, "")
  } catch {
    return undefined
  }
}

export const loginPassword = (
  c: DaemonConfig["database"]["connection"],
  onSwitch: (to: PasswordSwitch) => void = () => undefined
): LoginPassword => {
  const file = c.password_file
  let read = c.password === undefined ? undefined : Redacted.value(c.password)
  if (file === undefined) return { next: () => Promise.resolve(read), report: () => undefined }
  /** The last password the server accepted, and the last it refused (not accepted since). */
  let accepted: string | undefined
  let refused: string | undefined
  let onPrevious = false
  return {
    next: async () => {
      read = (await readPasswordFile(file)) ?? read
      const usePrevious = read !== undefined && read === refused && accepted !== undefined && accepted !== read
      if (usePrevious && !onPrevious) {
        onPrevious = true
        onSwitch("previous")
      }
      return usePrevious ? accepted : read
    },
    report: (password, ok) => {
      if (ok) {
        accepted = password
        if (refused === password) refused = undefined
        if (onPrevious && password === read) {
          onPrevious = false
          onSwitch("current")
        }
      } else {
        refused = password
        if (accepted === password) accepted = undefined
      }
    }
  }
}

/** The log line of a password switch (never the password itself). */
export const logPasswordSwitch = (to: PasswordSwitch): Effect.Effect<void> =>
  to === "previous"
    ? Effect.logWarning(
        "the database refused the password in password_file; new connections log in with the previous password until the database refuses it (finish the rotation with ALTER USER)"
      )
    : Effect.logInfo("new database connections log in with the password in password_file")
