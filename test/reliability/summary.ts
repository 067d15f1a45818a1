/**
 * Global setup of the long run: a figures file of this run's own (concurrent runs on one machine
 * do not mix), and every figure printed as one table at the end.
 */
import fs from "node:fs"
import os from "node:os"
import path from "node:path"

const file = () => process.env.DBAL_FIGURES_FILE!

export const setup = () => {
  // Read by test/reliability/figures.ts in the test workers, which inherit this environment.
  process.env.DBAL_FIGURES_FILE ??= path.join(os.tmpdir(), `dbal-reliability-figures-${process.pid}.jsonl`)
  fs.rmSync(file(), { force: true })
}

export const teardown = () => {
  if (!fs.existsSync(file())) return
  const rows = fs
    .readFileSync(file(), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { area: string; test: string; figures: Record<string, unknown> })
  const lines = ["", `figures (${file()}):`, "", "| area | test | figures |", "|---|---|---|"]
  for (const r of rows)
    lines.push(
      `| ${r.area} | ${r.test} | ${Object.entries(r.figures)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join("; ")} |`
    )
  console.log(lines.join("\n"))
}
