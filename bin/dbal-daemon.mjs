#!/usr/bin/env node
// Runs the TypeScript sources through tsx (a runtime dependency, so production installs with
// `npm ci --omit=dev` start too). With DBAL_COMPILED=1, or when only the build is shipped,
// runs the output of `npm run build` (dist/) instead.
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const compiled = join(root, "dist", "src", "main.js")
const source = join(root, "src", "main.ts")
let mod
if (existsSync(compiled) && (process.env.DBAL_COMPILED === "1" || !existsSync(source))) {
  mod = await import(pathToFileURL(compiled).href)
} else {
  // The packages every command loads, imported before tsx's loader hooks are registered: the
  // hooks then see only the project's own modules and their direct imports, not each of the
  // ~600 files of these packages (a round trip to the hooks' thread apiece: most of the start-up
  // time, `--help` 4.6 s → 1.7 s of CPU). The sources importing them later get the same module
  // instances (same resolved URLs).
  await Promise.all(["effect/Effect", "effect/Schema", "effect/Layer", "@effect/cli/Command", "@effect/platform-node/NodeRuntime"].map((m) => import(m)))
  const { register } = await import("tsx/esm/api")
  register()
  mod = await import(pathToFileURL(source).href)
}
mod.main(process.argv.slice(2))
