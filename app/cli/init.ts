/**
 * `dbal-daemon init`: a starter configuration in a folder (the current one), to try the daemon
 * without writing YAML first. SQLite, a generated service token in a file only the owner can
 * read (0600), every path relative to the configuration file, so that the folder can be moved as
 * a whole. Nothing is overwritten: an existing file is a problem, reported before anything is
 * written.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { problem } from "./errors.js"
import { out } from "./output.js"

export const CONFIG_FILE = "dbal-daemon.yaml"
export const TOKEN_FILE = "service-token"
export const TOKEN_NAME = "app"

export interface InitResult {
  readonly configFile: string
  readonly tokenFile: string
}

/** The starter configuration; every path in it is relative to the folder of the file. */
export const starterConfig = (): string => `# dbal-daemon starter configuration, written by \`dbal-daemon init\`.
# Start:   dbal-daemon serve --config=${CONFIG_FILE}
# Check:   dbal-daemon check-config --config=${CONFIG_FILE}
# Every key and its default: config/production.yaml and docs/. Relative paths are relative to
# the folder of this file (token_file: to $CREDENTIALS_DIRECTORY when systemd sets it).
server:
  host: "127.0.0.1"           # this machine only; "0.0.0.0" to listen on every interface
  port: 50051
database:
  adapter: "sqlite"
  connection:
    filename: "data/dbal.sqlite"   # created at the first start
  auto_migrate: true          # create missing tables at start (production: dbal-daemon migrate)
security:
  audit_log: true
  audit_log_path: "logs/audit.log"
  rate_limit:
    enabled: true
  auth:
    service_tokens:
      - name: "${TOKEN_NAME}"
        token_file: "${TOKEN_FILE}"   # generated, readable by its owner only (0600)
logging:
  level: "info"
`

/** Writes the configuration and the token file into `dir`; fails before writing if either exists. */
export const init = (dir: string): Effect.Effect<InitResult, ReturnType<typeof problem>> =>
  Effect.gen(function* () {
    const configFile = path.join(dir, CONFIG_FILE)
    const tokenFile = path.join(dir, TOKEN_FILE)
    const existing = [configFile, tokenFile].filter((f) => fs.existsSync(f))
    if (existing.length > 0) {
      return yield* problem(...existing.map((f) => `${f} already exists; init writes nothing over an existing file (move it away first)`))
    }
    const token = randomBytes(32).toString("base64url")
    yield* Effect.try({
      try: () => {
        // O_EXCL: a file that appeared since the check above is not overwritten either; the mode
        // is given at creation, so the token is never readable by others, not even briefly.
        fs.writeFileSync(tokenFile, `${token}\n`, { mode: 0o600, flag: "wx" })
        fs.writeFileSync(configFile, starterConfig(), { mode: 0o644, flag: "wx" })
      },
      catch: (e) => problem(`cannot write the starter configuration in ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
    })
    return { configFile, tokenFile }
  })

/** The command: writes the files into `dir` and says how to start. */
export const initProgram = (dir: string) =>
  Effect.gen(function* () {
    const r = yield* init(dir)
    yield* out([
      `wrote ${r.configFile}`,
      `wrote ${r.tokenFile} (the service token, mode 0600)`,
      "start the daemon with:",
      `  dbal-daemon serve --config=${r.configFile}`
    ])
  })
