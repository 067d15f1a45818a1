/**
 * The client in a real browser: a module generated for the shipped entities plus a custom one
 * (test/fixtures/entities-custom), bundled by esbuild for the browser, loaded from an HTTP page
 * in headless Chromium (Debian's `chromium`, driven by playwright-core), talking to a real
 * daemon process over the browser's own WebSocket.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { promisify } from "node:util"
import { build } from "esbuild"
import { chromium, type BrowserContext } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client as WireClient, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, requireServices, serviceAuth, type TestDatabase, tempDir, writeConfig } from "../support/services.js"

const run = promisify(execFile)
const CHROMIUM = process.env.DBAL_TEST_CHROMIUM ?? "/usr/bin/chromium"
const CUSTOM = path.join(root, "test", "fixtures", "entities-custom")
const BIN = path.join(root, "bin", "dbal-daemon.mjs")

const haveChromium = fs.existsSync(CHROMIUM)
if (!haveChromium && requireServices) throw new Error(`DBAL_REQUIRE_SERVICES=1 but there is no ${CHROMIUM} (apt-get install chromium)`)

type Rec = Record<string, unknown>

/** Runs in the page: the generated client over the browser's WebSocket. */
const SCENARIO = (generated: string, client: string) => `import { createClient } from ${JSON.stringify(generated)}
import { DbalError } from ${JSON.stringify(client)}
window.scenario = async ({ endpoint, token, userId, otherId }) => {
  const db = createClient({ mode: "production", endpoint, auth: { token, userId } })
  const states = []
  db.onConnectionStateChange((s) => states.push(s))
  const note = await db.notes.create({ userId, title: "from the browser", body: navigator.userAgent })
  const listed = await db.notes.list({ include: ["user"], filter: { title: { contains: "browser" } } })
  let refused
  try {
    await db.notes.create({ userId: otherId, title: "forged" })
  } catch (e) {
    refused = { isDbalError: e instanceof DbalError, kind: e.kind, code: e.code }
  }
  const caps = await db.getCapabilities()
  const count = await db.entity("Note").count({ userId })
  await db.close()
  return { note, owner: listed.data[0]?.user?.id, total: listed.total, refused, methods: caps.methods.length, count, states }
}
`

describe.skipIf(!haveChromium)("the client in headless Chromium", () => {
  let db: TestDatabase
  let daemon: Daemon | undefined
  let service: WireClient
  let server: http.Server | undefined
  let context: BrowserContext | undefined
  let pageUrl = ""
  let bundleText = ""

  const person = async () => {
    const username = `b_${randomBytes(4).toString("hex")}`
    const u = (await service.call("create", ["User", { username, email: `${username}@example.com` }])).result as Rec
    const token = `sess-${randomBytes(24).toString("hex")}`
    await service.call("create", ["Session", { userId: u.id, token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }])
    return { id: String(u.id), token }
  }

  beforeAll(async () => {
    db = await createDatabase("sqlite")
    const config = writeConfig(daemonConfig(db, { entities: { dir: CUSTOM } }))
    daemon = await startDaemon([`--config=${config}`], { timeoutMs: 120_000 })
    service = await connect(daemon.port, serviceAuth)

    const dir = tempDir("browser")
    // The generated module imports the client's sources here (a consumer's imports dbal-daemon/client).
    const generated = path.join(dir, "db.ts")
    await run(
      process.execPath,
      [BIN, "generate", `--config=${config}`, `--out=${generated}`, `--import=${path.join(root, "src", "client", "index.ts")}`],
      {
        cwd: root,
        timeout: 120_000
      }
    )
    fs.writeFileSync(path.join(dir, "entry.js"), SCENARIO(generated, path.join(root, "src", "client", "index.ts")))
    const bundled = await build({
      entryPoints: [path.join(dir, "entry.js")],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "silent"
    })
    bundleText = bundled.outputFiles[0]!.text
    server = http.createServer((req, res) => {
      if (req.url === "/app.js") {
        res.writeHead(200, { "content-type": "text/javascript" })
        res.end(bundleText)
      } else {
        res.writeHead(200, { "content-type": "text/html" })
        res.end('<!doctype html><title>dbal</title><script type="module" src="/app.js"></script>')
      }
    })
    await new Promise<void>((ok) => server!.listen(0, "127.0.0.1", ok))
    pageUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    context = await chromium.launchPersistentContext(tempDir("chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ],
      timeout: 120_000
    })
  }, 600_000)

  afterAll(async () => {
    await context?.close()
    await new Promise((ok) => (server === undefined ? ok(undefined) : server.close(ok)))
    await service?.close()
    await daemon?.stop()
    await db?.drop()
  })

  it("the bundle holds no Node module (no ws, no in-process daemon)", () => {
    expect(bundleText).not.toMatch(/from\s*["']node:|require\(["'](ws|fs|net)["']\)/)
    // Text of app/inprocess.ts and of ws: neither is in the bundle.
    expect(bundleText).not.toContain("refused its service token")
    expect(bundleText).not.toContain("WebSocketServer")
    expect(bundleText).toContain("createClient")
  })

  it("creates, lists with include, is refused by the owner rule, and closes", async () => {
    const me = await person()
    const other = await person()
    const page = await context!.newPage()
    const errors: Array<string> = []
    page.on("pageerror", (e) => errors.push(e.message))
    await page.goto(pageUrl)
    await page.waitForFunction(() => typeof (globalThis as unknown as { scenario?: unknown }).scenario === "function", undefined, {
      timeout: 60_000
    })
    const r = (await page.evaluate((args) => (globalThis as unknown as { scenario: (a: unknown) => Promise<unknown> }).scenario(args), {
      endpoint: `ws://127.0.0.1:${daemon!.port}`,
      token: me.token,
      userId: me.id,
      otherId: other.id
    })) as Rec
    expect(errors).toEqual([])
    expect(r.note).toMatchObject({ userId: me.id, title: "from the browser", status: "draft" })
    expect(String((r.note as Rec).body)).toContain("HeadlessChrome")
    expect(r.owner).toBe(me.id)
    expect(r.total).toBe(1)
    expect(r.refused).toEqual({ isDbalError: true, kind: "Server", code: 403 })
    expect(r.methods).toBeGreaterThan(10)
    expect(r.count).toBe(1)
    expect(r.states).toEqual(["connecting", "ready", "closed"])
    await page.close()
  }, 300_000)
})
