// `npm run build`: compiles the daemon (dist/src, dist/layers, dist/app) and the client (dist/client),
// then stamps dist/ so that bin/dbal-daemon.mjs knows the build matches the sources.
// With --if-stale (npm start) it does nothing when the build is already fresh.
import { spawnSync } from "node:child_process"
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { buildState } from "../bin/build-state.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
if (process.argv.includes("--if-stale") && buildState(root).isFresh()) process.exit(0)
const started = Date.now()
const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
// A file removed or renamed in the sources must not live on in the build.
for (const out of ["src", "layers", "app", "client", ".build-stamp"]) rmSync(join(root, "dist", out), { recursive: true, force: true })
for (const project of ["tsconfig.build.json", "tsconfig.client.json"]) {
  const r = spawnSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
mkdirSync(join(root, "dist"), { recursive: true })
const stampFile = join(root, "dist", ".build-stamp")
writeFileSync(stampFile, `${new Date(started).toISOString()}\n`)
// The stamp carries the time the compile started: a source saved during the compile counts as newer.
utimesSync(stampFile, started / 1000, started / 1000)
