/**
 * Processes as Linux's /proc shows them: the tests use it to find the daemon's SQLite executor
 * processes (layers/db/Sqlite.ts) and to see one gone.
 */
import * as fs from "node:fs"
import { until } from "./wait.js"

export interface ProcessInfo {
  readonly pid: number
  readonly ppid: number
  /** The arguments, the program first. */
  readonly argv: ReadonlyArray<string>
}

const info = (pid: number): ProcessInfo | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (2nd field) is in parentheses and may hold spaces: the fields after it start past the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    if (state === "Z") return undefined // exited, not yet reaped
    const argv = fs
      .readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((a) => a !== "")
    return { pid, ppid: Number(ppid), argv }
  } catch {
    return undefined // gone meanwhile
  }
}

/** Whether process `pid` still runs (an exited process not yet reaped by its parent does not). */
export const running = (pid: number): boolean => info(pid) !== undefined

/** Every running process below `pid` (children, their children ...). */
export const descendants = (pid: number): Array<ProcessInfo> => {
  const all = fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((d) => info(Number(d)))
    .filter((p): p is ProcessInfo => p !== undefined)
  const below = new Set([pid])
  const out: Array<ProcessInfo> = []
  // Parents can have higher pids than their children (pid reuse): repeat until nothing is added.
  for (let added = true; added;) {
    added = false
    for (const p of all) {
      if (below.has(p.ppid) && !below.has(p.pid)) {
        below.add(p.pid)
        out.push(p)
        added = true
      }
    }
  }
  return out
}

/** The daemon's SQLite executors below `pid`, with their role (from their settings argument). */
export const sqliteExecutors = (pid: number): Array<ProcessInfo & { readonly role: string }> =>
  descendants(pid).flatMap((p) => {
    const script = p.argv.findIndex((a) => a.endsWith("SqliteExecutor.js"))
    if (script < 0) return []
    const settings = JSON.parse(p.argv[script + 1] ?? "{}") as { role?: string }
    return [{ ...p, role: settings.role ?? "" }]
  })

/** Waits (bounded) until the executors below `pid` are one writer and `readers` readers, and returns them. */
export const executorSet = (pid: number, readers = 2, timeoutMs = 15_000) =>
  until(
    `one SQLite writer and ${readers} readers below process ${pid}`,
    () => {
      const now = sqliteExecutors(pid)
      return now.length === readers + 1 && now.filter((e) => e.role === "writer").length === 1 ? now : undefined
    },
    timeoutMs
  )
