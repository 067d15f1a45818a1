import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const pkg = JSON.parse(
  fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "package.json"), "utf8")
) as { version: string }

export const version: string = pkg.version
