/** Global setup of the long run: starts a fresh figures file and prints every figure as one table at the end. */
import fs from "node:fs"
import { FIGURES_FILE } from "./figures.js"

export const setup = () => {
  fs.rmSync(FIGURES_FILE, { force: true })
}

export const teardown = () => {
  if (!fs.existsSync(FIGURES_FILE)) return
  const rows = fs.readFileSync(FIGURES_FILE, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { area: string; test: string; figures: Record<string, unknown> })
  const lines = ["", "| area | test | figures |", "|---|---|---|"]
  for (const r of rows) lines.push(`| ${r.area} | ${r.test} | ${Object.entries(r.figures).map(([k, v]) => `${k} ${String(v)}`).join("; ")} |`)
  console.log(lines.join("\n"))
}
