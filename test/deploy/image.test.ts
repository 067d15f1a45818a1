/**
 * deploy/Dockerfile: its shape (current Node LTS slim image, production install, non-root numeric
 * user, port, health check, configuration path, nothing secret), the build context
 * (.dockerignore), and deploy/image-smoke.sh - which repeats the Dockerfile's steps on this
 * machine (no container engine here) and starts the daemon as the image would. The script's
 * steps must be the Dockerfile's, word for word, so that the two cannot drift apart.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { createDatabase, skipDialect, type TestDatabase } from "../support/services.js"
import { comparable, dockerfile, type Instruction, npmCommands, root, smokeInstructions } from "./support.js"

const ins = dockerfile()
const stages = [...new Set(ins.map((i) => i.stage))]
const finalStage = stages[stages.length - 1]!
const inStage = (stage: string, keyword: string) => ins.filter((i) => i.stage === stage && i.keyword === keyword)
const final = (keyword: string) => inStage(finalStage, keyword)
const jsonArray = (i: Instruction | undefined): Array<string> => {
  expect(i?.args, "an exec-form (JSON array) instruction").toMatch(/^\[.*\]$/)
  return JSON.parse(i!.args) as Array<string>
}

/** .dockerignore semantics (last matching pattern wins; a pattern also matches everything below). */
const dockerignored = (patterns: ReadonlyArray<string>, file: string): boolean => {
  const toRegex = (p: string) =>
    new RegExp(
      `^${p
        .replace(/\/+$/, "")
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*\*\/?/g, "\u0000")
        .replace(/\*/g, "[^/]*")
        .replace(/\?/g, "[^/]")
        // eslint-disable-next-line no-control-regex -- NUL marks "**" between the two replacements above
        .replace(/\u0000/g, "(?:.*/)?.*")}(?:/.*)?$`
    )
  let ignored = false
  for (const raw of patterns) {
    const negate = raw.startsWith("!")
    const p = negate ? raw.slice(1) : raw
    if (toRegex(p).test(file)) ignored = !negate
  }
  return ignored
}

describe("deploy/Dockerfile", () => {
  it("is multi-stage on the current Node LTS slim image", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    const arg = ins.find((i) => i.keyword === "ARG" && i.args.startsWith("NODE_VERSION="))
    expect(arg?.args).toMatch(/^NODE_VERSION=(22|24)$/)
    for (const from of ins.filter((i) => i.keyword === "FROM")) expect(from.args).toMatch(/^node:\$\{NODE_VERSION\}-slim AS \w+$/)
  })

  it("builds in the build stage and installs only production dependencies in the final one", () => {
    const finalNpm = final("RUN").flatMap((r) => npmCommands(r.args))
    expect(finalNpm.some((c) => /^npm ci( .*)? --omit=dev( |$)/.test(c))).toBe(true)
    expect(finalNpm.some((c) => c.startsWith("npm run build"))).toBe(false)
    const buildNpm = ins.filter((i) => i.stage !== finalStage && i.keyword === "RUN").flatMap((r) => npmCommands(r.args))
    expect(buildNpm).toContain("npm run build")
    // The final stage takes the build's output, not the TypeScript sources.
    const copies = final("COPY").map((c) => c.args)
    expect(copies.some((c) => /^--from=\w+ \S*\/dist \.\/dist$/.test(c))).toBe(true)
    expect(copies.some((c) => /^src\b/.test(c))).toBe(false)
    expect(
      final("ENV")
        .map((e) => e.args)
        .join(" ")
    ).toMatch(/\bDBAL_COMPILED=1\b/)
    expect(
      final("ENV")
        .map((e) => e.args)
        .join(" ")
    ).toMatch(/\bNODE_ENV=production\b/)
    // The V8 setting the benchmark measures by default (bench/run.ts), also in the other launchers.
    expect(
      final("ENV")
        .map((e) => e.args)
        .join(" ")
    ).toMatch(/\bNODE_OPTIONS=--max-semi-space-size=4\b/)
    expect(fs.readFileSync(path.join(root, "deploy", "systemd", "dbal-daemon.service"), "utf8")).toMatch(
      /^Environment=NODE_OPTIONS=--max-semi-space-size=4$/m
    )
    expect(fs.readFileSync(path.join(root, "deploy", "k8s", "deployment.yaml"), "utf8")).toMatch(
      /value: "[^"]*--max-semi-space-size=4[^"]*"/
    )
  })

  it("runs as a non-root numeric user, exposes 50051, checks /livez on the configured port without curl, reads /etc/dbal/config.yaml", () => {
    const user = final("USER").at(-1)?.args
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/)
    expect(final("EXPOSE").map((e) => e.args)).toEqual(["50051"])
    const hc = final("HEALTHCHECK")[0]?.args ?? ""
    // `dbal-daemon healthcheck` with the serve command's configuration: the port it checks is the
    // configured one, not a number written into the image.
    expect(JSON.parse(hc.replace(/^.*?CMD\s+/, ""))).toEqual([
      "node",
      "/app/bin/dbal-daemon.mjs",
      "healthcheck",
      "--config=/etc/dbal/config.yaml"
    ])
    expect(hc).not.toMatch(/50051/)
    expect(hc).not.toMatch(/curl|wget/)
    const cmd = [...jsonArray(final("ENTRYPOINT").at(-1)), ...jsonArray(final("CMD").at(-1))]
    expect(cmd.slice(0, 2)).toEqual(["node", "/app/bin/dbal-daemon.mjs"])
    expect(cmd).toContain("--config=/etc/dbal/config.yaml")
    // The default configuration is in the image where --config points.
    expect(final("COPY").map((c) => c.args)).toContain("config/production.yaml /etc/dbal/config.yaml")
  })

  it("bakes nothing secret in", () => {
    for (const i of ins.filter((x) => x.keyword === "ENV" || x.keyword === "ARG")) {
      expect(i.args, `${i.keyword} ${i.args}`).not.toMatch(/(PASSWORD|TOKEN|SECRET|KEY)\w*=/i)
    }
    for (const c of ins.filter((x) => x.keyword === "COPY")) expect(c.args).not.toMatch(/\.env\b|\.pem\b|\.key\b|secret|\.sqlite/)
    // The configuration copied in holds placeholders only.
    const prod = fs.readFileSync(path.join(root, "config", "production.yaml"), "utf8")
    expect(prod).toMatch(/password: "\$\{DBAL_DB_PASSWORD\}"/)
    expect(prod).toMatch(/token: "\$\{DBAL_SERVICE_TOKEN\}"/)
  })

  it(".dockerignore lets in exactly what the Dockerfile copies, and keeps secrets, data and node_modules out", () => {
    const patterns = fs
      .readFileSync(path.join(root, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"))
    const sources = ins.filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from=")).flatMap((i) => i.args.split(" ").slice(0, -1))
    expect(sources.length).toBeGreaterThan(0)
    for (const s of sources) {
      expect(fs.existsSync(path.join(root, s)), `${s} exists`).toBe(true)
      expect(dockerignored(patterns, s), `${s} is in the build context`).toBe(false)
    }
    expect(dockerignored(patterns, "app/main.ts")).toBe(false)
    for (const out of [
      "node_modules/effect/package.json",
      "dist/app/main.js",
      "data/dbal.sqlite",
      ".env",
      "config/development.yaml",
      ".git/config",
      "test/unit/config.test.ts",
      "src/x.log",
      "config/entities/.env"
    ]) {
      expect(dockerignored(patterns, out), `${out} is kept out`).toBe(true)
    }
  })

  it("deploy/image-smoke.sh repeats the Dockerfile's FROM, WORKDIR, ENV, COPY, USER and npm steps word for word", () => {
    expect(comparable(smokeInstructions(), true)).toEqual(comparable(ins, false))
  })
})

const skipSmoke = await skipDialect("postgresql")

describe.skipIf(skipSmoke)("deploy/image-smoke.sh (the image's steps on this machine, PostgreSQL)", () => {
  let db: TestDatabase | undefined
  let child: ChildProcess | undefined

  afterAll(async () => {
    // The script runs in its own process group: nothing of it outlives the test.
    if (child?.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // gone
      }
    }
    await db?.drop()
  })

  // Two `npm ci` from the npm cache and a tsc build: about 1-2 minutes, more on a loaded machine.
  it("installs, builds, starts as the image's user, answers /livez /readyz /health and the HEALTHCHECK, drains on SIGTERM", async () => {
    db = await createDatabase("postgresql")
    const conn = (db.databaseConfig as { connection: { host: string; port: number; user: string; database: string } }).connection
    let out = ""
    const code = await new Promise<number | null>((resolve, reject) => {
      child = spawn("bash", [path.join(root, "deploy", "image-smoke.sh")], {
        cwd: root,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          DBAL_SMOKE_DB_HOST: conn.host,
          DBAL_SMOKE_DB_PORT: String(conn.port),
          DBAL_SMOKE_DB_USER: conn.user,
          DBAL_SMOKE_DB_NAME: conn.database,
          DBAL_SMOKE_MIGRATE: "1"
        }
      })
      child.stdout!.on("data", (b: Buffer) => (out += b.toString()))
      child.stderr!.on("data", (b: Buffer) => (out += b.toString()))
      const timer = setTimeout(() => {
        if (child?.pid !== undefined) process.kill(-child.pid, "SIGKILL")
        reject(new Error(`image-smoke.sh did not finish within 230 s:\n${out}`))
      }, 230_000)
      child.once("error", reject)
      child.once("exit", (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(code, out).toBe(0)
    expect(out).toMatch(/^image-smoke: OK$/m)
    expect(out).toMatch(/HEALTHCHECK: ok/)
    expect(out).toMatch(/\/readyz: 200/)
    expect(out).toMatch(/SIGTERM: drained, exit 0/)
  }, 240_000)
})
