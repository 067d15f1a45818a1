/**
 * Shared setup of the operations suites: an in-process daemon (test/support/inprocess.ts
 * `startServing`: a real server on a free port, SQLite in a temp folder),
 * HTTP GETs with a bound, and the Prometheus text parsed into series.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { ServerInfoShape } from "../../src/services/ServerInfo.js"
import { startServing } from "../support/inprocess.js"
import type { Rec } from "../support/types.js"
import { createDatabase, daemonConfig, type TestDatabase, tempDir } from "../support/services.js"

export type { Rec }

export interface InProcessDaemon {
  readonly port: number
  readonly info: ServerInfoShape
  readonly dir: string
  readonly db: TestDatabase
  readonly dispose: () => Promise<void>
}

/**
 * Starts the live application in this process with a fresh SQLite database. `overrides(db, dir)`
 * returns top-level sections replacing the defaults of test/support/services.ts `daemonConfig`.
 */
export const startInProcess = async (prefix: string, overrides: (dir: string) => Rec = () => ({})): Promise<InProcessDaemon> => {
  const dir = tempDir(prefix)
  const db = await createDatabase("sqlite")
  const file = path.join(dir, "config.yaml")
  fs.writeFileSync(file, JSON.stringify(daemonConfig(db, overrides(dir)), null, 2))
  const removeFiles = async () => {
    await db.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    const s = await startServing(file, { quiet: true })
    return { port: s.port, info: s.info, dir, db, dispose: () => s.dispose().finally(removeFiles) }
  } catch (e) {
    await removeFiles()
    throw e
  }
}

/** GET over plain HTTP, bounded to 10 s. */
export const get = async (port: number, p: string): Promise<{ status: number; text: string; contentType: string | null }> => {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(10_000) })
  return { status: res.status, text: await res.text(), contentType: res.headers.get("content-type") }
}

/**
 * Samples of a Prometheus text exposition: `name{a="1",b="2"}` (labels as written) → value.
 * Throws on a sample line that appears twice.
 */
export const parseSamples = (text: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const i = line.lastIndexOf(" ")
    const series = line.slice(0, i)
    if (out.has(series)) throw new Error(`duplicate series ${series}`)
    out.set(series, Number(line.slice(i + 1)))
  }
  return out
}
