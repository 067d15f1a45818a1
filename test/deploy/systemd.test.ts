/**
 * deploy/systemd/dbal-daemon.service: the unit's keys (the hardening docs/deployment.md lists,
 * paths agreeing with config/production.yaml as the daemon reads it), and
 * `systemd-analyze verify` where systemd-analyze is installed.
 */
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { loadConfig } from "../../layers/Config.js"
import { isUnder, root } from "./support.js"

const unitPath = path.join(root, "deploy", "systemd", "dbal-daemon.service")
const unitText = fs.readFileSync(unitPath, "utf8")

/** section -> key -> values (a key may repeat). */
const parseUnit = (text: string): Map<string, Map<string, Array<string>>> => {
  const sections = new Map<string, Map<string, Array<string>>>()
  let current: Map<string, Array<string>> | undefined
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s !== null) {
      current = new Map()
      sections.set(s[1]!, current)
      continue
    }
    const kv = /^([A-Za-z0-9]+)=(.*)$/.exec(line)
    if (kv === null || current === undefined) throw new Error(`unparsable unit line: ${line}`)
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!])
  }
  return sections
}

const unit = parseUnit(unitText)
const service = unit.get("Service")!
const one = (key: string) => {
  const v = service.get(key)
  expect(v, `[Service] ${key}`).toBeDefined()
  return v![v!.length - 1]!
}
const seconds = (v: string) => {
  const m = /^(\d+)\s*(s|sec|min)?$/.exec(v)
  if (m === null) throw new Error(`not a duration: ${v}`)
  return Number(m[1]) * (m[2] === "min" ? 60 : 1)
}

/** config/production.yaml as the daemon reads it (the unit's --config is a copy of it). */
const production = () =>
  Effect.runPromise(
    loadConfig(path.join(root, "config", "production.yaml"), { DBAL_DB_PASSWORD: "stand-in", DBAL_SERVICE_TOKEN: "x".repeat(32) })
  )

describe("deploy/systemd/dbal-daemon.service", () => {
  it("has the three sections and runs the daemon as dbal with --config=/etc/dbal/config.yaml", () => {
    expect([...unit.keys()]).toEqual(["Unit", "Service", "Install"])
    expect(one("Type")).toBe("simple")
    expect(one("User")).toBe("dbal")
    expect(one("Group")).toBe("dbal")
    const exec = one("ExecStart").split(/\s+/)
    expect(path.basename(exec[0]!)).toBe("node")
    expect(path.isAbsolute(exec[0]!)).toBe(true)
    expect(exec[1]).toMatch(/\/bin\/dbal-daemon\.mjs$/)
    expect(exec).toContain("--config=/etc/dbal/config.yaml")
    expect(one("EnvironmentFile")).toMatch(/^-?\/etc\/dbal\//)
    expect(one("Restart")).toBe("on-failure")
    expect(unit.get("Install")!.get("WantedBy")).toEqual(["multi-user.target"])
  })

  it("has the spec's hardening", () => {
    expect(one("NoNewPrivileges")).toBe("true")
    expect(one("PrivateTmp")).toBe("true")
    expect(one("ProtectSystem")).toBe("strict")
    expect(one("ProtectHome")).toBe("true")
    expect(one("ProtectKernelTunables")).toBe("true")
    expect(one("ProtectKernelModules")).toBe("true")
    expect(one("ProtectControlGroups")).toBe("true")
    expect(one("ReadWritePaths").split(/\s+/)).toContain("/var/log/dbal")
  })

  it("has the extra hardening, and not MemoryDenyWriteExecute (V8's JIT needs W+X memory)", () => {
    expect(one("CapabilityBoundingSet")).toBe("")
    expect(one("RestrictAddressFamilies").split(/\s+/).sort()).toEqual(["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"])
    expect(one("LockPersonality")).toBe("true")
    expect(one("SystemCallArchitectures")).toBe("native")
    expect(one("RestrictSUIDSGID")).toBe("true")
    expect(one("PrivateDevices")).toBe("true")
    expect(service.has("MemoryDenyWriteExecute")).toBe(false)
  })

  it("every path the daemon writes with config/production.yaml is writable; SQLite's folder too", async () => {
    const cfg = await production()
    const rw = one("ReadWritePaths")
      .split(/\s+/)
      .map((p) => p.replace(/^-/, ""))
    const audit = path.dirname(cfg.security.audit_log_path!)
    expect(
      rw.some((p) => isUnder(audit, p)),
      `${audit} in ReadWritePaths`
    ).toBe(true)
    // StateDirectory= (the folder for a SQLite file) is writable and listed.
    expect(rw).toContain(`/var/lib/${one("StateDirectory")}`)
    expect(`/var/log/${one("LogsDirectory")}`).toBe(audit)
    // The configuration and rules are read from /etc/dbal, which stays read-only.
    expect(rw.some((p) => isUnder("/etc/dbal", p))).toBe(false)
  })

  it("stops with SIGTERM and gives the drain (shutdown_grace + close handshake) time before SIGKILL", async () => {
    const cfg = await production()
    expect(one("KillSignal")).toBe("SIGTERM")
    expect(one("KillMode")).toBe("mixed")
    expect(seconds(one("TimeoutStopSec"))).toBeGreaterThanOrEqual(cfg.server.shutdown_grace + 2 + 5)
  })

  const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" })
  const noAnalyze = analyze.error !== undefined ? "systemd-analyze is not installed (apt package systemd)" : undefined

  it.skipIf(noAnalyze !== undefined)(
    `systemd-analyze verify accepts it without a warning${noAnalyze === undefined ? "" : ` (skipped: ${noAnalyze})`}`,
    () => {
      // verify checks that ExecStart's program exists: where node lives elsewhere, a copy of the
      // unit names this machine's node instead.
      let file = unitPath
      let dir: string | undefined
      const node = one("ExecStart").split(/\s+/)[0]!
      if (!fs.existsSync(node)) {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-unit-"))
        file = path.join(dir, "dbal-daemon.service")
        fs.writeFileSync(file, unitText.replace(`ExecStart=${node} `, `ExecStart=${process.execPath} `))
      }
      try {
        const r = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8", timeout: 30_000 })
        expect(r.status, r.stderr).toBe(0)
        expect(`${r.stdout}${r.stderr}`.trim()).toBe("")
      } finally {
        if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
      }
    }
  )

  it.skipIf(noAnalyze !== undefined)("systemd-analyze security rates its exposure low (offline, where supported)", (ctx) => {
    const r = spawnSync("systemd-analyze", ["security", "--offline=true", "--no-pager", unitPath], { encoding: "utf8", timeout: 30_000 })
    const m = /Overall exposure level for \S+: ([\d.]+)/.exec(`${r.stdout}${r.stderr}`)
    if (m === null) return ctx.skip()
    expect(Number(m[1])).toBeLessThanOrEqual(3)
  })
})
