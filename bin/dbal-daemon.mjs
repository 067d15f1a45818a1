#!/usr/bin/env node
// Runs the compiled daemon (dist/, made by `npm run build`, which `npm install` runs) when it is a
// build of the current sources, or when DBAL_COMPILED=1 or only the build is shipped (the image,
// systemd). Otherwise — sources edited since the last build, in development — runs the TypeScript
// sources through tsx, a development dependency. DBAL_COMPILED=0 forces the sources.
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { buildState } from "./build-state.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const state = buildState(root)
const wantCompiled = process.env.DBAL_COMPILED === "1" || (process.env.DBAL_COMPILED !== "0" && (!state.hasSources || state.isFresh()))

const fromSources = async () => {
  let register
  try {
    ;({ register } = await import("tsx/esm/api"))
  } catch {
    return undefined
  }
  // The packages every command loads, imported before tsx's loader hooks are registered: the
  // hooks then see only the project's own modules, not each of the ~600 files of these packages
  // (a round trip to the hooks' thread apiece: most of the start-up time from the sources). The
  // sources importing them later get the same module instances (same resolved URLs).
  await Promise.all(
    ["effect/Effect", "effect/Schema", "effect/Layer", "@effect/cli/Command", "@effect/platform-node/NodeRuntime"].map((m) => import(m))
  )
  register()
  return import(pathToFileURL(join(root, "app", "main.ts")).href)
}

let mod
if (wantCompiled && state.built) mod = await import(pathToFileURL(state.entry).href)
else mod = await fromSources()
if (mod === undefined && state.built) {
  process.stderr.write("dbal-daemon: the build in dist/ is older than the sources and tsx is not installed: running the build\n")
  mod = await import(pathToFileURL(state.entry).href)
}
if (mod === undefined) {
  process.stderr.write("dbal-daemon: no build in dist/ and tsx is not installed: run `npm run build` (needs the dev dependencies)\n")
  process.exit(1)
}
mod.main(process.argv.slice(2))
