#!/usr/bin/env node
// Runs the compiled daemon when `npm run build` has produced it, else the TypeScript sources
// through tsx (a runtime dependency, so `npm ci --omit=dev` installs can start it too).
import { existsSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"
import { dirname, join } from "node:path"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const compiled = join(root, "dist", "src", "main.js")
let mod
if (existsSync(compiled) && process.env.DBAL_FROM_SOURCE !== "1") {
  mod = await import(pathToFileURL(compiled).href)
} else {
  const { register } = await import("tsx/esm/api")
  register()
  mod = await import(pathToFileURL(join(root, "src", "main.ts")).href)
}
mod.main(process.argv.slice(2))
