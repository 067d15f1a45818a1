import * as fs from "node:fs"
import * as path from "node:path"
import { packageRoot } from "./paths.js"

const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string }

export const version: string = pkg.version
