/**
 * The reliability suite's figures. Each test calls `report` with what it measured; the line is
 * printed (so a run shows its numbers) and appended to a JSON-lines file that
 * `npm run test:reliability` turns into one table at the end (see summary.ts).
 *
 * DBAL_RELIABILITY=long selects the long run (100,000 fuzz frames, minutes of soak); the default
 * is the short version that runs inside `npm test`.
 */
import fs from "node:fs"
import os from "node:os"
import path from "node:path"

export const LONG = process.env.DBAL_RELIABILITY === "long"

/** The short value inside `npm test`, the long one under `npm run test:reliability`. */
export const scale = <A>(short: A, long: A): A => (LONG ? long : short)

export const FIGURES_FILE = process.env.DBAL_FIGURES_FILE ?? path.join(os.tmpdir(), "dbal-reliability-figures.jsonl")

export type Figures = Record<string, number | string | boolean>

export const report = (area: string, test: string, figures: Figures): void => {
  const line = { area, test, run: LONG ? "long" : "short", at: new Date().toISOString(), figures }
  console.log(
    `[figures] ${area} · ${test}: ${Object.entries(figures)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ")}`
  )
  fs.appendFileSync(FIGURES_FILE, JSON.stringify(line) + "\n")
}
