/**
 * FileSink (layers/AuditLog.ts) on its own, with an injected clock: rotation by size and at a
 * UTC day change, retention by count and by age, group commit (counted fdatasync calls and
 * write batches, not timings), and retry of retained records after a failure. node:fs is the
 * real module; the mock only counts `writeSync`/`fdatasync` calls, can hold an fdatasync open, and
 * can make writes fail with ENOSPC on demand.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it, vi } from "vitest"
import { FileSink, type FileSinkOptions } from "../../layers/AuditLog.js"
import { untilTrue } from "../support/wait.js"
import { tempDir } from "../support/services.js"

const ctl = vi.hoisted(() => ({
  writes: 0,
  fdatasyncs: 0,
  failWrites: false,
  /** When set, writes fail with ENOSPC after this many more write calls. */
  failAfterCalls: undefined as number | undefined,
  /** When set, a write call takes at most this many bytes (a short write, as on a filling disk). */
  maxWriteBytes: undefined as number | undefined,
  /** When set, fdatasync calls wait for it before running. */
  hold: undefined as Promise<void> | undefined,
  /** Called when an fdatasync starts. */
  onFdatasync: undefined as (() => void) | undefined
}))

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>()
  // The sink writes with writeSync(fd, buffer, offset, length) and waits only for fdatasync.
  const writeSync = (fd: number, buffer: Buffer, offset: number, length: number) => {
    ctl.writes++
    const failNow = ctl.failAfterCalls !== undefined && ctl.failAfterCalls-- <= 0
    if (ctl.failWrites || failNow) {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" })
    }
    return real.writeSync(fd, buffer, offset, ctl.maxWriteBytes === undefined ? length : Math.min(length, ctl.maxWriteBytes))
  }
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    ctl.fdatasyncs++
    ctl.onFdatasync?.()
    const held = ctl.hold
    if (held === undefined) return real.fdatasync(fd, cb)
    void held.then(() => real.fdatasync(fd, cb))
  }
  const patched = { ...real, writeSync, fdatasync }
  return { ...patched, default: patched }
})

const dirs: Array<string> = []
const sinks: Array<FileSink> = []

afterEach(async () => {
  ctl.failWrites = false
  ctl.failAfterCalls = undefined
  ctl.maxWriteBytes = undefined
  ctl.hold = undefined
  ctl.onFdatasync = undefined
  for (const s of sinks.splice(0)) await s.close()
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

const setup = (o: Partial<FileSinkOptions> = {}) => {
  const dir = tempDir("audit-sink")
  dirs.push(dir)
  const file = path.join(dir, "logs", "audit.log")
  const sink = new FileSink({ file, fsync: true, maxBytes: 1024 * 1024, rotateDaily: true, maxFiles: 14, maxAgeDays: 30, ...o })
  sinks.push(sink)
  return { dir: path.dirname(file), file, sink }
}

const line = (n: number, pad = 0) => JSON.stringify({ n, pad: "x".repeat(pad) }) + "\n"
const rotatedFiles = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((n) => n.startsWith("audit.log."))
    .sort()
const readLines = (file: string) =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
const DAY = 86_400_000

describe("FileSink: files", () => {
  it("creates the folder 0700 and the file 0600", () => {
    const { dir, file } = setup()
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
  })
})

describe("FileSink: rotation", () => {
  it("rotates before a batch would take the file past max size; no line is lost or split", async () => {
    const { dir, file, sink } = setup({ maxBytes: 200 })
    const lines = Array.from({ length: 10 }, (_, i) => line(i, 43)) // 60 bytes each: 3 per file
    expect(Buffer.byteLength(lines[0]!)).toBe(60)
    for (const l of lines) await sink.append(l)
    const rotated = rotatedFiles(dir)
    expect(rotated.length).toBe(3)
    const all = [...rotated.map((n) => path.join(dir, n)), file]
    for (const f of all) {
      expect(fs.statSync(f).size).toBeLessThanOrEqual(200)
      expect(fs.statSync(f).mode & 0o777).toBe(0o600)
    }
    // Names sort in rotation order here (same second: -1, -2 suffixes); contents in order, complete.
    expect(readLines(file)).toEqual([lines[9]!.trim()])
    expect(all.flatMap(readLines).sort()).toEqual(lines.map((l) => l.trim()).sort())
    for (const f of all.slice(0, -1)) expect(readLines(f).length).toBe(3)
  })

  it("rotates at the first record of a new UTC day, and not before", async () => {
    const midnight = Math.ceil(Date.now() / DAY) * DAY
    let now = midnight - 2000
    const { dir, file, sink } = setup({ now: () => now })
    await sink.append(line(1))
    now = midnight - 1 // 23:59:59.999 UTC, same day
    await sink.append(line(2))
    expect(rotatedFiles(dir)).toEqual([])
    now = midnight + 1 // 00:00:00.001 UTC, next day
    await sink.append(line(3))
    const stamp = new Date(now).toISOString().replace(/[-:]/g, "").replace(/\..*$/, "Z")
    expect(rotatedFiles(dir)).toEqual([`audit.log.${stamp}`])
    expect(readLines(path.join(dir, `audit.log.${stamp}`))).toEqual([line(1).trim(), line(2).trim()])
    expect(readLines(file)).toEqual([line(3).trim()])
  })

  it("does not rotate at a day change when rotate_daily is off", async () => {
    const midnight = Math.ceil(Date.now() / DAY) * DAY
    let now = midnight - 1000
    const { dir, file, sink } = setup({ now: () => now, rotateDaily: false })
    await sink.append(line(1))
    now = midnight + 1000
    await sink.append(line(2))
    expect(rotatedFiles(dir)).toEqual([])
    expect(readLines(file).length).toBe(2)
  })
})

describe("FileSink: retention", () => {
  /** Pre-existing rotated files with the given ages (days), plus an unrelated file. */
  const seed = (dir: string, now: number, ages: Record<string, number>) => {
    for (const [name, age] of Object.entries(ages)) {
      const f = path.join(dir, name)
      fs.writeFileSync(f, `${name}\n`)
      const t = new Date(now - age * DAY)
      fs.utimesSync(f, t, t)
    }
  }

  it("keeps at most max_files rotated files, the newest", async () => {
    const now = Date.now()
    const { dir, file, sink } = setup({ maxBytes: 100, maxFiles: 3, maxAgeDays: 365, now: () => now })
    seed(dir, now, {
      "audit.log.A-1d": 1,
      "audit.log.B-2d": 2,
      "audit.log.C-3d": 3,
      "audit.log.D-4d": 4,
      "audit.log.E-5d": 5,
      "other.log": 100
    })
    await sink.append(line(1, 60))
    await sink.append(line(2, 60)) // exceeds 100 bytes: rotation, then pruning
    const rotated = rotatedFiles(dir)
    expect(rotated.length).toBe(3)
    expect(rotated).toContain("audit.log.A-1d")
    expect(rotated).toContain("audit.log.B-2d")
    const fresh = rotated.filter((n) => !n.endsWith("d"))
    expect(fresh.length).toBe(1)
    expect(readLines(path.join(dir, fresh[0]!))).toEqual([line(1, 60).trim()])
    expect(fs.existsSync(path.join(dir, "other.log"))).toBe(true)
    expect(readLines(file)).toEqual([line(2, 60).trim()])
  })

  it("removes rotated files older than max_age_days (measured with the injected clock)", async () => {
    const now = Date.now()
    const { dir, sink } = setup({ maxBytes: 100, maxFiles: 100, maxAgeDays: 7, now: () => now })
    seed(dir, now, {
      "audit.log.young-1d": 1,
      "audit.log.young-6.9d": 6.9,
      "audit.log.old-7.1d": 7.1,
      "audit.log.old-30d": 30,
      "other.log": 100
    })
    await sink.append(line(1, 60))
    await sink.append(line(2, 60))
    const rotated = rotatedFiles(dir)
    expect(rotated).toContain("audit.log.young-1d")
    expect(rotated).toContain("audit.log.young-6.9d")
    expect(rotated).not.toContain("audit.log.old-7.1d")
    expect(rotated).not.toContain("audit.log.old-30d")
    expect(rotated.length).toBe(3) // the two young ones and the file just rotated
    expect(fs.existsSync(path.join(dir, "other.log"))).toBe(true)
  })
})

describe("FileSink: group commit", () => {
  it("N appends issued together complete with 2 write+fdatasync batches, not N", async () => {
    const { file, sink } = setup()
    const N = 64
    const writes0 = ctl.writes
    const syncs0 = ctl.fdatasyncs
    await Promise.all(Array.from({ length: N }, (_, i) => sink.append(line(i))))
    const syncs = ctl.fdatasyncs - syncs0
    const writes = ctl.writes - writes0
    // The first append starts a batch alone; the other N-1 arrive while it is written and share one.
    expect(syncs).toBe(2)
    expect(writes).toBe(2)
    expect(readLines(file).length).toBe(N)
  })

  it("records arriving while an fdatasync is in progress share the next one; none resolves before its own fdatasync", async () => {
    const { file, sink } = setup()
    let release!: () => void
    ctl.hold = new Promise<void>((r) => (release = r))
    const started = new Promise<void>((r) => (ctl.onFdatasync = r))
    const syncs0 = ctl.fdatasyncs
    const settled = new Set<number>()
    const first = sink.append(line(0)).then(() => settled.add(0))
    await started // the first batch is now in fdatasync, held
    const later: Array<Promise<unknown>> = []
    for (let i = 1; i <= 20; i++) {
      later.push(sink.append(line(i)).then(() => settled.add(i)))
      await Promise.resolve() // each arrives in its own microtask turn
      await new Promise<void>((r) => setImmediate(r)) // and its own event-loop turn
    }
    expect(settled.size).toBe(0) // nothing is acknowledged before its fdatasync
    expect(ctl.fdatasyncs - syncs0).toBe(1)
    ctl.hold = undefined
    release()
    await first
    await Promise.all(later)
    expect(ctl.fdatasyncs - syncs0).toBe(2)
    expect(readLines(file).length).toBe(21)
  })

  it("with fsync off, no fdatasync is called", async () => {
    const { sink } = setup({ fsync: false })
    const syncs0 = ctl.fdatasyncs
    await Promise.all(Array.from({ length: 10 }, (_, i) => sink.append(line(i))))
    expect(ctl.fdatasyncs - syncs0).toBe(0)
  })
})

describe("FileSink: failures", () => {
  it("a failed batch is retained; flush() after the failure writes it, once and in order", async () => {
    const { file, sink } = setup()
    await sink.append(line(0))
    ctl.failWrites = true
    await expect(sink.append(line(1))).rejects.toThrow(/ENOSPC/)
    expect(sink.healthy).toBe(false)
    sink.appendLater(line(2)) // a read's record while failing: retained too
    await expect(sink.append(line(3))).rejects.toThrow(/ENOSPC/)
    await expect(sink.flush()).rejects.toThrow(/ENOSPC/) // still failing: still retained
    expect(readLines(file)).toEqual([line(0).trim()])
    ctl.failWrites = false
    await sink.flush()
    expect(sink.healthy).toBe(true)
    expect(readLines(file)).toEqual([0, 1, 2, 3].map((n) => line(n).trim()))
    await sink.append(line(4))
    expect(readLines(file)).toEqual([0, 1, 2, 3, 4].map((n) => line(n).trim()))
  })

  it("a short write (the kernel took only part of the batch) is completed before the append resolves", async () => {
    const { file, sink } = setup()
    ctl.maxWriteBytes = 7
    const lines = [line(1, 30), line(2, 30), line(3, 30)]
    await Promise.all(lines.map((l) => sink.append(l)))
    ctl.maxWriteBytes = undefined
    await sink.append(line(4))
    expect(readLines(file)).toEqual([...lines, line(4)].map((l) => l.trim()))
  })

  it("a batch that fails part-way is taken back, so its retry leaves no broken or doubled line", async () => {
    const { file, sink } = setup()
    await sink.append(line(0))
    ctl.maxWriteBytes = 10
    ctl.failAfterCalls = 2 // 20 bytes of the next batch reach the file, then ENOSPC
    await expect(sink.append(line(1, 30))).rejects.toThrow(/ENOSPC/)
    expect(sink.healthy).toBe(false)
    ctl.maxWriteBytes = undefined
    ctl.failAfterCalls = undefined
    await sink.flush()
    expect(sink.healthy).toBe(true)
    expect(readLines(file)).toEqual([line(0).trim(), line(1, 30).trim()])
  })

  it("on /dev/full (a real ENOSPC): append rejects and the sink is unhealthy", async () => {
    const sink = new FileSink({ file: "/dev/full", fsync: true, maxBytes: 1024 * 1024, rotateDaily: false, maxFiles: 1, maxAgeDays: 1 })
    sinks.push(sink)
    expect(sink.healthy).toBe(true) // unknown until it takes bytes
    await expect(sink.append(line(1))).rejects.toThrow(/ENOSPC/)
    expect(sink.healthy).toBe(false)
    await expect(sink.flush()).rejects.toThrow(/ENOSPC/)
    expect(sink.healthy).toBe(false)
  })
})

describe("FileSink: flush, fsync and close", () => {
  it("a flush with nothing pending does not stall the writer (later appends are written)", async () => {
    const { file, sink } = setup()
    await sink.flush()
    await sink.append(line(1))
    expect(readLines(file)).toEqual([line(1).trim()])
  })

  it("reads' records are written without fsync; the next durable record's fsync (or close) covers them", async () => {
    const { file, sink } = setup()
    let syncs = 0
    ctl.onFdatasync = () => {
      syncs++
    }
    sink.appendLater(line(1))
    sink.appendLater(line(2))
    await untilTrue("the reads' records are in the file", () => fs.existsSync(file) && readLines(file).length === 2)
    expect(syncs).toBe(0)
    await sink.flush()
    expect(syncs).toBe(1) // flush: the written-but-unsynced lines go to disk
    sink.appendLater(line(3))
    await sink.append(line(4))
    expect(readLines(file)).toEqual([1, 2, 3, 4].map((n) => line(n).trim()))
    expect(syncs).toBeGreaterThanOrEqual(2)
    expect(syncs).toBeLessThanOrEqual(3)
  })

  it("close returns the records the file still cannot take, instead of dropping them silently", async () => {
    const sink = new FileSink({ file: "/dev/full", fsync: true, maxBytes: 1024 * 1024, rotateDaily: false, maxFiles: 1, maxAgeDays: 1 })
    await expect(sink.append(line(1))).rejects.toThrow(/ENOSPC/)
    expect(await sink.close()).toEqual([line(1)])
  })
})
