/**
 * Sums the self time of a V8 .cpuprofile (node --cpu-prof) per function and per file, so that
 * what a benchmark spends its CPU on can be read at a glance.
 * Run: npx tsx bench/profile.ts <file.cpuprofile | folder> [top]   (a folder: the main thread of the newest run)
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}
interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Entry {
  readonly name: string
  readonly ms: number
  /** Share of the busy (non-idle) time. */
  readonly pct: number
}

export interface Summary {
  readonly file: string
  readonly totalMs: number
  readonly idleMs: number
  readonly busyMs: number
  readonly byFunction: ReadonlyArray<Entry>
  readonly byFile: ReadonlyArray<Entry>
  readonly byArea: ReadonlyArray<Entry>
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** A short file name: relative to the project, node_modules/<package>/… kept. */
const shortFile = (url: string): string => {
  if (url === "") return "(native)"
  const p = url.startsWith("file://") ? fileURLToPath(url) : url
  if (p.startsWith("node:")) return p
  const nm = p.lastIndexOf("node_modules/")
  if (nm >= 0) return p.slice(nm)
  return p.startsWith(root) ? path.relative(root, p) : p
}

/** A coarse area: the package, node internals, or the daemon's own folder. */
const areaOf = (file: string, fn: string): string => {
  if (file === "(native)") return fn.startsWith("(") ? fn : "(native)"
  if (file.startsWith("node:")) return "node internals"
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)
  if (m !== null) return m[1]!
  const top = file.split("/")
  return top.length > 1 ? `${top[0]}/${top.length > 2 ? top[1] + "/" : ""}` : file
}

const sorted = (m: Map<string, number>, busy: number, top: number): Array<Entry> =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / busy }))

export const newestProfile = (dirOrFile: string): string => {
  if (!fs.statSync(dirOrFile).isDirectory()) return dirOrFile
  const files = fs
    .readdirSync(dirOrFile)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => path.join(dirOrFile, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)
  if (files[0] === undefined) throw new Error(`no .cpuprofile in ${dirOrFile}`)
  return files[0]
}

export const summarize = (file: string, top = 25): Summary => {
  const prof = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map<number, CallFrame>()
  for (const n of prof.nodes) byId.set(n.id, n.callFrame)
  const self = new Map<number, number>()
  prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)))
  const fns = new Map<string, number>()
  const files = new Map<string, number>()
  const areas = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of self) {
    const cf = byId.get(id)!
    total += us
    if (cf.functionName === "(idle)") {
      idle += us
      continue
    }
    const f = shortFile(cf.url)
    const fn = `${cf.functionName === "" ? "(anonymous)" : cf.functionName} ${f}${cf.url === "" ? "" : `:${cf.lineNumber + 1}`}`
    fns.set(fn, (fns.get(fn) ?? 0) + us)
    files.set(f, (files.get(f) ?? 0) + us)
    const a = areaOf(f, cf.functionName)
    areas.set(a, (areas.get(a) ?? 0) + us)
  }
  const busy = Math.max(1, total - idle)
  return {
    file,
    totalMs: total / 1000,
    idleMs: idle / 1000,
    busyMs: busy / 1000,
    byFunction: sorted(fns, busy, top),
    byFile: sorted(files, busy, top),
    byArea: sorted(areas, busy, top)
  }
}

export const formatSummary = (s: Summary): string => {
  const lines: Array<string> = []
  lines.push(`profile ${s.file}: ${s.totalMs.toFixed(0)} ms sampled, idle ${s.idleMs.toFixed(0)} ms, busy ${s.busyMs.toFixed(0)} ms`)
  const table = (title: string, es: ReadonlyArray<Entry>) => {
    lines.push(`\n| ${title} | self ms | % of busy |`, "|---|---:|---:|")
    for (const e of es) lines.push(`| ${e.name.replace(/\|/g, "\\|")} | ${e.ms.toFixed(1)} | ${e.pct.toFixed(1)} |`)
  }
  table("area", s.byArea)
  table("file", s.byFile)
  table("function", s.byFunction)
  return lines.join("\n")
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const target = process.argv[2]
  if (target === undefined) {
    console.error("usage: npx tsx bench/profile.ts <file.cpuprofile | folder> [top]")
    process.exit(2)
  }
  const top = Number(process.argv[3] ?? 25)
  // A folder: its newest profiles of one process (one per thread; the busiest is the main thread).
  const newest = newestProfile(target)
  const pidOf = (f: string) => /\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f)?.[1]
  const siblings = fs.statSync(target).isDirectory()
    ? fs
        .readdirSync(target)
        .filter((f) => f.endsWith(".cpuprofile") && pidOf(f) === pidOf(newest))
        .map((f) => path.join(target, f))
    : [newest]
  const busiest = siblings.map((f) => summarize(f, top)).sort((a, b) => b.busyMs - a.busyMs)[0]!
  console.log(formatSummary(busiest))
}
