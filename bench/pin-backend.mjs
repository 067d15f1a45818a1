/**
 * Pinning a PostgreSQL backend to a CPU, for the bench's placement measurement (bench/run.ts and
 * bench/floor-server.mjs). Plain JavaScript, so that floor-server.mjs runs without a loader.
 */
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { promisify } from "node:util"

const execFileP = promisify(execFile)

/**
 * A pg-pool onConnect hook that pins the new connection's backend to `cpu` (`taskset -pc`);
 * pg-pool awaits it before the connection serves a query, and fails the connection if it throws.
 */
export const pinBackendTo = (cpu) => async (client) => {
  const pid = Number((await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid)
  // The pid must name a PostgreSQL process of this PID namespace (not a server in a container).
  let comm = "no such process"
  try {
    comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    // No such process: reported below.
  }
  if (comm !== "postgres") throw new Error(`backend pid ${pid} is not a local postgres process (${comm})`)
  await execFileP("taskset", ["-pc", String(cpu), String(pid)])
}
