import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The folder holding package.json, from the sources (src/) or the build (dist/src/) alike. */
const findRoot = (start: string): string => {
  let dir = start
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir
    const parent = path.dirname(dir)
    if (parent === dir) return path.resolve(start, "..")
    dir = parent
  }
}

export const packageRoot: string = findRoot(path.dirname(fileURLToPath(import.meta.url)))

/** The configuration the commands read without --config (here so that --help loads nothing else). */
export const defaultConfigPath: string = path.join(packageRoot, "config", "development.yaml")
