/**
 * Readers for the deployment files: the Dockerfile's instructions (by stage), the instructions
 * deploy/image-smoke.sh repeats, and the Kubernetes objects of deploy/k8s.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as YAML from "yaml"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const deployDir = path.join(root, "deploy")
export const k8sDir = path.join(deployDir, "k8s")

export interface Instruction {
  /** Name of the stage (`FROM ... AS name`). */
  readonly stage: string
  /** Upper-case keyword: FROM, COPY, RUN, ... */
  readonly keyword: string
  /** The rest of the line, whitespace collapsed. */
  readonly args: string
}

const collapse = (s: string) => s.trim().replace(/\s+/g, " ")

/** The Dockerfile's instructions: comments dropped, `\` continuations joined. */
export const parseDockerfile = (text: string): Array<Instruction> => {
  const logical: Array<string> = []
  let current = ""
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "")
    if (current === "" && /^\s*#/.test(line)) continue
    if (current !== "" && /^\s*#/.test(line)) continue // comment lines inside a continuation
    if (/\\\s*$/.test(line)) {
      current += line.replace(/\\\s*$/, " ")
      continue
    }
    current += line
    if (current.trim() !== "") logical.push(current)
    current = ""
  }
  if (current.trim() !== "") logical.push(current)
  const out: Array<Instruction> = []
  let stage = ""
  for (const l of logical) {
    const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(l)
    if (m === null) continue
    const keyword = m[1]!.toUpperCase()
    const args = collapse(m[2]!)
    if (keyword === "FROM") {
      const as = /\bAS\s+(\S+)\s*$/i.exec(args)
      stage = as?.[1] ?? `stage${out.filter((i) => i.keyword === "FROM").length}`
    }
    out.push({ stage, keyword, args })
  }
  return out
}

export const dockerfile = () => parseDockerfile(fs.readFileSync(path.join(deployDir, "Dockerfile"), "utf8"))

/** The instructions between the "stages" markers of deploy/image-smoke.sh. */
export const smokeInstructions = (): Array<Instruction> => {
  const text = fs.readFileSync(path.join(deployDir, "image-smoke.sh"), "utf8")
  const start = text.indexOf("# ---- stages")
  const end = text.indexOf("# ---- end of stages")
  if (start < 0 || end < start) throw new Error("deploy/image-smoke.sh: no '# ---- stages' ... '# ---- end of stages' section")
  const out: Array<Instruction> = []
  let stage = ""
  for (const line of text.slice(start, end).split("\n")) {
    const m = /^(FROM|WORKDIR|COPY|RUN|ENV|USER)\s+(.*)$/.exec(line.trim())
    if (m === null) continue
    if (m[1] === "FROM") stage = m[2]!.trim()
    out.push({ stage, keyword: m[1]!, args: collapse(m[2]!) })
  }
  return out
}

/** The npm commands of a RUN line (`a && b && c`), without `npm cache ...` (image hygiene only). */
export const npmCommands = (run: string): Array<string> =>
  run
    .split("&&")
    .map(collapse)
    .filter((c) => c.startsWith("npm ") && !c.startsWith("npm cache "))

/**
 * What the smoke script must repeat, per stage: FROM (stage name), WORKDIR, ENV, COPY, USER and
 * the npm commands of RUN lines.
 */
export const comparable = (ins: ReadonlyArray<Instruction>, fromScript: boolean): Array<string> =>
  ins.flatMap((i): Array<string> => {
    switch (i.keyword) {
      case "FROM":
        return [`FROM ${fromScript ? i.args : i.stage}`]
      case "WORKDIR":
      case "ENV":
      case "COPY":
      case "USER":
        return [`${i.keyword} ${i.args}`]
      case "RUN":
        return (fromScript ? [i.args] : npmCommands(i.args)).map((c) => `RUN ${c}`)
      default:
        return []
    }
  })

export interface K8sObject {
  readonly file: string
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> }
  readonly [key: string]: unknown
}

interface Kustomization {
  readonly resources: Array<string>
  readonly configMapGenerator?: Array<{ name: string; files: Array<string>; options?: { disableNameSuffixHash?: boolean } }>
  readonly images?: Array<{ name: string }>
}

export const kustomization = (dir = k8sDir): Kustomization =>
  YAML.parse(fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8")) as Kustomization

/**
 * The ConfigMaps kustomization.yaml's configMapGenerator makes (each file a key named after it),
 * under their unsuffixed names (kustomize appends the content hash to the name and to every
 * reference of it alike).
 */
export const generatedConfigMaps = (): Array<K8sObject> =>
  (kustomization().configMapGenerator ?? []).map((g) => ({
    file: "kustomization.yaml",
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: g.name },
    data: Object.fromEntries(g.files.map((f) => [path.posix.basename(f), fs.readFileSync(path.join(k8sDir, f), "utf8")]))
  }))

/** Every object of every YAML file in deploy/k8s except kustomization.yaml, and the generated ConfigMaps. */
export const k8sObjects = (): Array<K8sObject> =>
  [
    ...generatedConfigMaps(),
    ...k8sFiles()
      .filter((f) => f !== "kustomization.yaml")
      .flatMap((file) =>
        YAML.parseAllDocuments(fs.readFileSync(path.join(k8sDir, file), "utf8")).map((doc) => {
          if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`)
          return { file, ...(doc.toJS() as Omit<K8sObject, "file">) } as K8sObject
        })
      )
  ].filter((o) => typeof o.kind === "string")

export const k8sFiles = () =>
  fs
    .readdirSync(k8sDir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()

export const findObject = (objects: ReadonlyArray<K8sObject>, kind: string, name?: string): K8sObject => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? "" : ` ${name}`}, found ${found.length}`)
  return found[0]!
}

/** Whether `p` is `dir` or inside it (both absolute, POSIX). */
export const isUnder = (p: string, dir: string): boolean => {
  const rel = path.posix.relative(dir, p)
  return rel === "" || (!rel.startsWith("..") && !path.posix.isAbsolute(rel))
}
