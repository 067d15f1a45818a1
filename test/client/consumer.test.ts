/**
 * The client as a consumer gets it: compiled (`npm run build:client` → dist/client, what
 * package.json exports), in a folder of its own that depends on the package, with a module
 * written by `dbal-daemon generate` for the shipped entities plus a custom one
 * (test/fixtures/entities-custom). The consumer's `tsc --strict --lib es2022 --skipLibCheck false`
 * is clean, and the program runs under plain `node` against a real daemon: with `ws` (Node 20),
 * with the platform's WebSocket (`--experimental-websocket`, as Node >= 22 has by default), and
 * in development mode (the daemon in process).
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client as WireClient, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, type TestDatabase, tempDir, writeConfig } from "../support/services.js"

const run = promisify(execFile)
const CUSTOM = path.join(root, "test", "fixtures", "entities-custom")
const BIN = path.join(root, "bin", "dbal-daemon.mjs")
const TSC = path.join(root, "node_modules", "typescript", "bin", "tsc")

type Rec = Record<string, unknown>

/** The consumer's program: typed use of the generated module, type errors where misuse is. */
const APP = `import { createClient, type Note, type NoteCreate } from "./db.js"
import { DbalError, isDbalError } from "dbal-daemon/client"

const env = (k: string): string => {
  const v = process.env[k]
  if (v === undefined) throw new Error(\`\${k} is not set\`)
  return v
}

// Counts sockets of the platform's WebSocket, when there is one (Node >= 22, --experimental-websocket).
let platformSockets = 0
const Native = (globalThis as { WebSocket?: new (url: string) => object }).WebSocket
if (Native !== undefined) {
  ;(globalThis as { WebSocket?: unknown }).WebSocket = class extends Native {
    constructor(url: string) {
      super(url)
      platformSockets++
    }
  }
}

const db = createClient({ mode: "production", endpoint: env("ENDPOINT"), auth: { token: env("TOKEN"), userId: env("USER_ID") } })
const data: NoteCreate = { userId: env("USER_ID"), title: "from a consumer", status: "published" }
const note: Note = await db.notes.create(data)
const listed = await db.notes.list({ include: ["user"], filter: { status: "published", title: { startsWith: "from" } }, sort: { createdAt: "desc" } })
const owner: string | undefined = listed.data[0]?.user?.username
let refused = 0
try {
  await db.notes.create({ userId: env("OTHER_ID"), title: "forged" })
} catch (e) {
  if (isDbalError(e) && e instanceof DbalError) refused = e.code
}
const counted: number = await db.entity("Note").count()
await db.close()
console.log(JSON.stringify({ id: note.id, status: note.status, owner, refused, counted, platformSockets }))

// Never called: these lines are here for the type checker.
export function misuse(): void {
  // @ts-expect-error title is required
  void db.notes.create({ userId: "x" })
  // @ts-expect-error status is one of draft, published
  void db.notes.update("id", { status: "archived" })
  // @ts-expect-error id and createdAt are set by the daemon
  void db.notes.create({ userId: "x", title: "t", createdAt: "2025-01-01T00:00:00Z" })
  // @ts-expect-error text operators do not apply to booleans
  void db.notes.count({ pinned: { contains: "x" } })
  // @ts-expect-error Note has no relation "page"
  void db.notes.list({ include: ["page"] })
  // @ts-expect-error username is a string
  void db.users.findByField("username", 1)
  // @ts-expect-error without include the record has no user
  void db.notes.list().then((r) => r.data[0]?.user)
  // @ts-expect-error the shipped accessors keep their names
  void db.pageViews
  void db.pages.list({ filter: { level: { gte: 2 } } })
  void db.components.list({ include: ["page"] }).then((r) => r.data[0]?.page?.slug)
}
`

/**
 * The Effect API, typed by dbal-daemon/client/effect (an Effect of the generated entities, a scoped
 * client, DbalError as an Effect error).
 */
const EFFECT_APP = `import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type {} from "dbal-daemon/client/effect"
import { DBALClient, DbalError } from "dbal-daemon/client"
import { createClient, type Note } from "./db.js"

const db = createClient({ mode: "production", endpoint: "ws://127.0.0.1:1", auth: { token: "t" } })
export const created: Effect.Effect<Note, DbalError> = db.effect.notes.create({ userId: "u", title: "t" })
export const scoped: Effect.Effect<DBALClient, never, Scope.Scope> = DBALClient.scoped({ mode: "production", endpoint: "ws://x", auth: { token: "t" } })
export const titled = Effect.gen(function* () {
  const n = yield* db.effect.notes.read("x")
  if (n.title === "") return yield* DbalError.protocol("read", "empty")
  return n.title
})
export const code = db.effect.notes.read("x").pipe(Effect.catchTag("DbalError", (e) => Effect.succeed(e.code)))
// @ts-expect-error title is required
export const bad = db.effect.notes.create({ userId: "u" })
`

/** Development mode under plain node: the compiled client starts the daemon in process. */
const DEV_APP = `import { createClient } from "./out/db.js"
const db = createClient({ mode: "development", adapter: "sqlite", database: process.env.DB_FILE, entitiesDir: process.env.ENTITIES })
const u = await db.users.create({ username: "dev_" + Date.now().toString(36), email: "dev@example.com" })
const n = await db.notes.create({ userId: u.id, title: "in process" })
const back = await db.notes.list({ include: ["user"] })
await db.close()
console.log(JSON.stringify({ title: n.title, owner: back.data[0].user.username === u.username }))
`

/** A strict consumer's compiler options: what the client's declarations must pass. */
const CONSUMER_TSC = [
  "--strict",
  "--lib",
  "es2022",
  "--skipLibCheck",
  "false",
  "--target",
  "es2022",
  "--module",
  "nodenext",
  "--moduleResolution",
  "nodenext",
  "--types",
  "node"
]

describe("a consumer of the compiled client", () => {
  let db: TestDatabase
  let daemon: Daemon | undefined
  let service: WireClient
  let dir: string
  let user: { id: string; token: string }
  let otherId = ""
  let generateMs = 0

  beforeAll(async () => {
    await run(process.execPath, [TSC, "-p", "tsconfig.client.json"], { cwd: root, timeout: 300_000 })
    db = await createDatabase("sqlite")
    daemon = await startDaemon([`--config=${writeConfig(daemonConfig(db, { entities: { dir: CUSTOM } }))}`], { timeoutMs: 120_000 })
    service = await connect(daemon.port, serviceAuth)
    const username = `c_${randomBytes(4).toString("hex")}`
    const u = (await service.call("create", ["User", { username, email: `${username}@example.com` }])).result as Rec
    const token = `sess-${randomBytes(24).toString("hex")}`
    await service.call("create", ["Session", { userId: u.id, token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }])
    user = { id: String(u.id), token }
    const other = (await service.call("create", ["User", { username: `o${username}`, email: `o${username}@example.com` }])).result as Rec
    otherId = String(other.id)

    dir = tempDir("consumer")
    fs.mkdirSync(path.join(dir, "node_modules", "@types"), { recursive: true })
    fs.symlinkSync(root, path.join(dir, "node_modules", "dbal-daemon"))
    fs.symlinkSync(path.join(root, "node_modules", "@types", "node"), path.join(dir, "node_modules", "@types", "node"))
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }))
    const config = writeConfig(daemonConfig(db, { entities: { dir: CUSTOM } }))
    const started = performance.now()
    await run(process.execPath, [BIN, "generate", `--config=${config}`, `--out=${path.join(dir, "db.ts")}`], { cwd: dir, timeout: 120_000 })
    generateMs = performance.now() - started
    fs.writeFileSync(path.join(dir, "app.ts"), APP)
    fs.writeFileSync(path.join(dir, "dev.mjs"), DEV_APP)
    fs.writeFileSync(path.join(dir, "effect-app.ts"), EFFECT_APP)
    fs.symlinkSync(path.join(root, "node_modules", "effect"), path.join(dir, "node_modules", "effect"))
  }, 600_000)

  afterAll(async () => {
    await service?.close()
    await daemon?.stop()
    await db?.drop()
  })

  it("package.json exports compiled JavaScript with declarations", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { exports: Record<string, Record<string, string>> }
    const client = pkg.exports["./client"]!
    expect(client.default).toBe("./dist/client/index.js")
    expect(client.types).toBe("./dist/client/index.d.ts")
    expect(fs.existsSync(path.join(root, client.default!))).toBe(true)
    expect(fs.existsSync(path.join(root, client.types!))).toBe(true)
    // The compiled client does not carry the daemon: no server module is among its files.
    const files = fs.readdirSync(path.join(root, "dist", "client"))
    expect(files.filter((f) => /inprocess|Config|Acl/.test(f))).toEqual([])
    console.log(`generate (CLI, shipped + Note, wall clock incl. process start): ${generateMs.toFixed(0)} ms`)
  })

  it("type-checks with tsc --strict --lib es2022 --skipLibCheck false, then runs under plain node", async () => {
    const started = performance.now()
    const tsc = await run(process.execPath, [TSC, ...CONSUMER_TSC, "--outDir", "out", "app.ts"], { cwd: dir, timeout: 300_000 }).catch(
      (e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ""}${e.stderr ?? ""}`, stderr: "" })
    )
    console.log(
      `consumer typecheck + emit (db.ts, app.ts, the client's .d.ts, @types/node): ${(performance.now() - started).toFixed(0)} ms`
    )
    expect(tsc.stdout).toBe("")
    const env = { ...process.env, ENDPOINT: `ws://127.0.0.1:${daemon!.port}`, TOKEN: user.token, USER_ID: user.id, OTHER_ID: otherId }
    const plain = await run(process.execPath, [path.join(dir, "out", "app.js")], { cwd: dir, env, timeout: 120_000 })
    const a = JSON.parse(plain.stdout) as Rec
    expect(a).toMatchObject({ status: "published", refused: 403, platformSockets: 0 })
    expect(a.owner).toMatch(/^c_/)
    expect(a.counted).toBe(1)
    // The platform's WebSocket, without ws.
    const platform = await run(process.execPath, ["--experimental-websocket", path.join(dir, "out", "app.js")], {
      cwd: dir,
      env,
      timeout: 120_000
    })
    const b = JSON.parse(platform.stdout) as Rec
    expect(b).toMatchObject({ status: "published", refused: 403, counted: 2 })
    expect(b.platformSockets).toBeGreaterThanOrEqual(1)
  }, 600_000)

  it("types the Effect API with dbal-daemon/client/effect imported; without it, the Promise API does not read effect's declarations", async () => {
    const tscArgs = [...CONSUMER_TSC, "--noEmit", "--listFiles"]
    const check = (file: string) =>
      run(process.execPath, [TSC, ...tscArgs, file], { cwd: dir, timeout: 300_000 }).catch((e: { stdout?: string; stderr?: string }) => ({
        stdout: `${e.stdout ?? ""}${e.stderr ?? ""}`,
        stderr: ""
      }))
    const fx = await check("effect-app.ts")
    expect(fx.stdout.split("\n").filter((l) => /error TS/.test(l))).toEqual([])
    expect(fx.stdout).toMatch(/effect\/dist\/dts\/Effect\.d\.ts/)
    const plain = await check("app.ts")
    expect(plain.stdout.split("\n").filter((l) => /error TS/.test(l))).toEqual([])
    expect(plain.stdout).not.toMatch(/effect\/dist\/dts/)
  }, 600_000)

  it("runs development mode under plain node (the daemon in process)", async () => {
    const env = { ...process.env, DB_FILE: path.join(dir, "dev.sqlite"), ENTITIES: CUSTOM }
    const out = await run(process.execPath, [path.join(dir, "dev.mjs")], { cwd: dir, env, timeout: 300_000 })
    expect(JSON.parse(out.stdout)).toEqual({ title: "in process", owner: true })
  }, 600_000)
})
