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
  const { register } = await import("tsx/esm/api")
  register()
  mod = await import(pathToFileURL(source).href)
}
mod.main(process.argv.slice(2))
