/**
 * deploy/k8s: every object is valid against the Kubernetes schemas (kubernetes-models), and the
 * objects agree with each other and with the daemon's configuration as the daemon itself reads it
 * (layers/Config.ts `loadConfig` on a copy of the ConfigMap's config.yaml).
 */
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { spawnSync } from "node:child_process"
import { Deployment } from "kubernetes-models/apps/v1"
import { Job } from "kubernetes-models/batch/v1"
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2"
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1"
import { PodDisruptionBudget } from "kubernetes-models/policy/v1"
import { ConfigMap, Secret, Service } from "kubernetes-models/v1"
import type { IContainer, IPodSpec, IProbe, IVolume, IVolumeMount } from "kubernetes-models/v1"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { parseRules } from "../../src/access/Policy.js"
import { loadConfig } from "../../layers/Config.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import type { DaemonConfig } from "../../src/Config.js"
import { requireServices } from "../support/services.js"
import { dockerfile, findObject, isUnder, type K8sObject, k8sDir, k8sFiles, k8sObjects, kustomization } from "./support.js"

const models: Record<string, new (data: any) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "batch/v1/Job": Job,
  "v1/Service": Service,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler
}

const objects = k8sObjects()
const deployment = findObject(objects, "Deployment", "dbal-daemon")
const service = findObject(objects, "Service", "dbal-daemon")
const configMap = findObject(objects, "ConfigMap", "dbal-config")
const rulesConfigMap = findObject(objects, "ConfigMap", "dbal-acl-rules")
const job = findObject(objects, "Job", "dbal-migrate")
const secret = findObject(objects, "Secret")
const pdb = findObject(objects, "PodDisruptionBudget")
const hpa = findObject(objects, "HorizontalPodAutoscaler")
const netpol = findObject(objects, "NetworkPolicy")

const podSpec = (deployment as any).spec.template.spec as IPodSpec
const podLabels = (deployment as any).spec.template.metadata.labels as Record<string, string>
const container = podSpec.containers.find((c) => c.name === "dbal") as IContainer
const mounts = container.volumeMounts ?? []
const volumes = podSpec.volumes ?? []
const volumeOf = (m: IVolumeMount): IVolume => {
  const v = volumes.find((x) => x.name === m.name)
  if (v === undefined) throw new Error(`volumeMount ${m.name} has no volume`)
  return v
}
/** The ConfigMap (name, key) a volume's file `base` comes from: a configMap volume or a projected one. */
const configMapSource = (v: IVolume, base: string): { name: string; key: string } | undefined => {
  const sources =
    v.configMap !== undefined
      ? [v.configMap]
      : (v.projected?.sources ?? []).flatMap((x) => (x.configMap === undefined ? [] : [x.configMap]))
  for (const cm of sources) {
    const item = (cm.items ?? []).find((i) => i.path === base)
    if (item !== undefined) return { name: cm.name!, key: item.key }
  }
  return undefined
}
/** The mount whose folder holds `file` directly (items are files in the mounted folder). */
const mountHolding = (file: string) => mounts.find((m) => path.posix.dirname(file) === m.mountPath)
const writableMounts = () => mounts.filter((m) => m.readOnly !== true && volumeOf(m).emptyDir !== undefined)
const isWritable = (p: string) => writableMounts().some((m) => isUnder(p, m.mountPath))

/** A named or numbered port of the container, as a number. */
const resolvePort = (port: number | string | undefined): number | undefined =>
  typeof port === "number" ? port : container.ports?.find((p) => p.name === port)?.containerPort

const websocketPort = () => {
  const p = container.ports?.find((x) => x.name === "websocket")
  expect(p, "container port named websocket").toBeDefined()
  return p!.containerPort
}

const configText = (configMap as any).data["config.yaml"] as string
const aclText = (rulesConfigMap as any).data["acl_rules.yaml"] as string
const rawConfig = YAML.parse(configText) as any
const configArg = () => {
  const arg = [...(container.command ?? []), ...(container.args ?? [])].find((a) => a.startsWith("--config="))
  expect(arg, "--config=FILE in the container's args").toBeDefined()
  return arg!.slice("--config=".length)
}

let dir: string
let cfg: DaemonConfig

const secretMount = "/var/run/secrets/dbal/"

beforeAll(async () => {
  // The ConfigMap's files as the daemon will see them, with the Deployment's environment
  // (secrets filled with stand-ins) and the files of the Secret mount (its folder mapped here).
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-k8s-"))
  expect(configText).toContain(secretMount)
  fs.writeFileSync(path.join(dir, "config.yaml"), configText.replaceAll(secretMount, `${dir}/`))
  fs.writeFileSync(path.join(dir, "acl_rules.yaml"), aclText)
  fs.writeFileSync(path.join(dir, "db-password"), "stand-in-password\n")
  fs.writeFileSync(path.join(dir, "service-token"), `${"t".repeat(40)}\n`)
  cfg = await Effect.runPromise(
    loadConfig(path.join(dir, "config.yaml"), {
      DBAL_REDIS_URL: "redis://:stand-in@redis.example:6379",
      POD_NAME: "dbal-daemon-abc12-xyz34"
    })
  )
})

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("deploy/k8s: Kubernetes schemas", () => {
  it("has the objects the deployment needs", () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(
      [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service"
      ].sort()
    )
  })

  for (const o of objects) {
    it(`${o.file}: ${o.kind} ${o.metadata.name} is valid for ${o.apiVersion}`, () => {
      const Model = models[`${o.apiVersion}/${o.kind}`]
      expect(Model, `a model for ${o.apiVersion} ${o.kind}`).toBeDefined()
      const { file: _file, ...data } = o
      expect(() => new Model!(data).validate()).not.toThrow()
    })
  }

  it("kubernetes-models rejects what the API server would (the check is live)", () => {
    const broken = structuredClone((({ file: _f, ...d }: K8sObject) => d)(deployment)) as any
    broken.spec.template.spec.containers[0].ports[0].containerPort = "50051x"
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort/)
  })

  it("kustomization.yaml lists every object file (the example Secret deliberately not) and nothing else", () => {
    const k = kustomization()
    const files = k8sFiles().filter((f) => f !== "kustomization.yaml")
    expect([...k.resources].sort()).toEqual(files.filter((f) => f !== "secret.example.yaml"))
    for (const r of k.resources) expect(fs.existsSync(path.join(k8sDir, r)), r).toBe(true)
    // The image override applies to the Deployment's image.
    expect(k.images?.map((i) => i.name)).toContain(container.image!.replace(/:[^:/]+$/, ""))
  })
})

describe("deploy/k8s: objects agree with each other and with the daemon's configuration", () => {
  it("the daemon's loader accepts the ConfigMap's config.yaml and its ACL rules file", async () => {
    expect(cfg.database.adapter).toBe("postgresql")
    expect(cfg.security.acl.rules_file).toBe("/etc/dbal/acl_rules.yaml")
    // The rules as the daemon checks them at start (against the shipped entities).
    const registry = await Effect.runPromise(EntitiesLayer.fromConfig(cfg))
    const { rules, problems } = parseRules(YAML.parse(aclText), registry)
    expect(problems).toEqual([])
    expect(rules.length).toBeGreaterThan(0)
  })

  it("server.port == containerPort == Service targetPort; the Service selects the pods", () => {
    expect(cfg.server.port).toBe(websocketPort())
    expect(cfg.server.host).toBe("0.0.0.0")
    const spec = (service as any).spec
    expect(spec.type).toBe("ClusterIP")
    const port = spec.ports.find((p: any) => p.name === "websocket")
    expect(port.port).toBe(50051)
    expect(resolvePort(port.targetPort)).toBe(cfg.server.port)
    expect(podLabels).toMatchObject(spec.selector)
    // the Dockerfile exposes the same port
    expect(dockerfile().find((i) => i.keyword === "EXPOSE")?.args).toBe(String(cfg.server.port))
  })

  it("probes: readiness /readyz, liveness (and startup) /livez, on the daemon's port", () => {
    const check = (probe: IProbe | undefined, p: string) => {
      expect(probe?.httpGet?.path).toBe(p)
      expect(resolvePort(probe?.httpGet?.port)).toBe(cfg.server.port)
      expect(probe?.httpGet?.scheme ?? "HTTP").toBe(cfg.server.tls.enabled ? "HTTPS" : "HTTP")
    }
    check(container.readinessProbe, "/readyz")
    check(container.livenessProbe, "/livez")
    if (container.startupProbe !== undefined) check(container.startupProbe, "/livez")
    // /readyz pings the database with a 2 s bound: the probe must wait longer than that.
    expect(container.readinessProbe!.timeoutSeconds ?? 1).toBeGreaterThan(2)
  })

  it("the --config file in the args is the ConfigMap's config.yaml where it is mounted", () => {
    const file = configArg()
    const m = mountHolding(file)
    expect(m, `a volume mounted at ${path.posix.dirname(file)}`).toBeDefined()
    expect(m!.readOnly).toBe(true)
    expect(configMapSource(volumeOf(m!), path.posix.basename(file))).toEqual({ name: configMap.metadata.name, key: "config.yaml" })
  })

  it("security.acl.rules_file is the rules ConfigMap's acl_rules.yaml, mounted", () => {
    const rules = cfg.security.acl.rules_file!
    const m = mountHolding(rules)
    expect(m, `a volume mounted at ${path.posix.dirname(rules)}`).toBeDefined()
    expect(configMapSource(volumeOf(m!), path.posix.basename(rules))).toEqual({ name: rulesConfigMap.metadata.name, key: "acl_rules.yaml" })
  })

  it("the database password comes from the mounted Secret (password_file), never from the ConfigMap", () => {
    const file = rawConfig.database.connection.password_file as string
    expect(rawConfig.database.connection.password).toBeUndefined()
    const m = mountHolding(file)
    expect(m?.readOnly).toBe(true)
    const sv = volumeOf(m!).secret
    expect(sv?.secretName).toBe(secret.metadata.name)
    const key = (sv!.items ?? []).find((i) => i.path === path.posix.basename(file))?.key ?? path.posix.basename(file)
    expect(Object.keys((secret as any).stringData ?? (secret as any).data)).toContain(key)
  })

  it("the service token comes from the mounted Secret as a file (token_file), never from the environment", () => {
    const token = rawConfig.security.auth.service_tokens[0]
    expect(token.token).toBeUndefined()
    const file = token.token_file as string
    const m = mountHolding(file)
    expect(m?.readOnly).toBe(true)
    const sv = volumeOf(m!).secret
    expect(sv?.secretName).toBe(secret.metadata.name)
    const key = (sv!.items ?? []).find((i) => i.path === path.posix.basename(file))?.key
    expect(Object.keys((secret as any).stringData ?? (secret as any).data)).toContain(key)
    // What the daemon decoded is the file's content, without its newline.
    expect(Redacted.value(cfg.security.auth.service_tokens[0]!.token)).toBe("t".repeat(40))
    expect((container.env ?? []).map((e) => e.name)).not.toContain("DBAL_SERVICE_TOKEN")
  })

  it("every ${VAR} without a default in config.yaml is set by the Deployment; secrets come from the Secret", () => {
    const required = [...configText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!)
    const env = new Map((container.env ?? []).map((e) => [e.name, e]))
    for (const name of required) expect(env.has(name), `env ${name}`).toBe(true)
    const secretKeys = Object.keys((secret as any).stringData ?? (secret as any).data)
    for (const e of container.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef
      if (ref === undefined) continue
      expect(ref.name).toBe(secret.metadata.name)
      expect(secretKeys).toContain(ref.key)
    }
    // Secret-looking variables are never literal values in the manifest.
    for (const e of container.env ?? []) {
      if (/PASSWORD|TOKEN|SECRET|REDIS_URL/.test(e.name)) expect(e.value, e.name).toBeUndefined()
    }
    // The example Secret holds placeholders only.
    for (const [k, v] of Object.entries((secret as any).stringData as Record<string, string>)) expect(v, k).toMatch(/REPLACE_ME/)
  })

  it("readOnlyRootFilesystem: every path the daemon writes is on a writable emptyDir", () => {
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true)
    const written: Array<string> = ["/tmp"]
    if (cfg.security.audit_log && cfg.security.audit_log_path !== undefined) written.push(path.posix.dirname(cfg.security.audit_log_path))
    const c = cfg.database.connection
    if (cfg.database.adapter === "sqlite" && c.filename !== undefined && c.filename !== ":memory:")
      written.push(path.posix.dirname(c.filename))
    expect(written).toContain("/var/log/dbal")
    for (const p of written) expect(isWritable(p), `${p} writable`).toBe(true)
    // The audit log's rotation fits the emptyDir.
    const audit = volumeOf(mounts.find((m) => isUnder(cfg.security.audit_log_path!, m.mountPath))!)
    const limit = audit.emptyDir?.sizeLimit
    expect(limit).toMatch(/^\d+Gi$/)
    const limitMb = Number(String(limit).replace("Gi", "")) * 1024
    expect((cfg.security.audit.max_files + 1) * cfg.security.audit.max_size_mb).toBeLessThan(limitMb)
  })

  it("terminationGracePeriodSeconds >= preStop + shutdown_grace + close handshake + margin", () => {
    const preStop = container.lifecycle?.preStop
    const sleep = preStop?.sleep?.seconds ?? Number(/sleep (\d+)/.exec((preStop?.exec?.command ?? []).join(" "))?.[1] ?? 0)
    expect(sleep).toBeGreaterThan(0)
    const closeHandshake = 2 // layers/WebSocketServer.ts: peers get 2 s to answer the close frame
    const margin = 5
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(sleep + cfg.server.shutdown_grace + closeHandshake + margin)
  })

  it("pod and container security context, resources as the spec", () => {
    const user = dockerfile()
      .filter((i) => i.keyword === "USER")
      .at(-1)!
      .args.split(":")[0]
    expect(podSpec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: Number(user),
      seccompProfile: { type: "RuntimeDefault" }
    })
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: Number(user),
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" }
    })
    expect(container.securityContext?.capabilities?.add ?? []).toEqual([])
    expect(podSpec.automountServiceAccountToken).toBe(false)
    expect(container.resources).toEqual({ requests: { memory: "256Mi", cpu: "250m" }, limits: { memory: "512Mi", cpu: "500m" } })
  })

  it("replicas, selectors, disruption budget and autoscaler fit together", () => {
    const spec = (deployment as any).spec
    expect(spec.replicas).toBe(3)
    expect(podLabels).toMatchObject(spec.selector.matchLabels)
    const p = (pdb as any).spec
    expect(podLabels).toMatchObject(p.selector.matchLabels)
    if (p.maxUnavailable !== undefined) expect(p.maxUnavailable).toBe(1)
    else expect(p.minAvailable).toBeLessThan(spec.replicas)
    const h = (hpa as any).spec
    expect(h.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name })
    expect(h.minReplicas).toBe(spec.replicas)
    expect(h.maxReplicas).toBeGreaterThan(h.minReplicas)
    expect(h.metrics.map((m: any) => m.resource?.name)).toContain("cpu")
  })

  it("NetworkPolicy: in only to the daemon's port; out only to PostgreSQL, Redis and DNS", () => {
    const spec = (netpol as any).spec
    expect(podLabels).toMatchObject(spec.podSelector.matchLabels)
    expect([...spec.policyTypes].sort()).toEqual(["Egress", "Ingress"])
    const ports = (rules: Array<any>) => rules.flatMap((r) => (r.ports ?? []).map((p: any) => `${p.protocol ?? "TCP"}/${p.port}`)).sort()
    expect(ports(spec.ingress)).toEqual([`TCP/${cfg.server.port}`])
    for (const r of spec.ingress) expect(r.ports?.length ?? 0, "an ingress rule without ports allows every port").toBeGreaterThan(0)
    expect(ports(spec.egress)).toEqual(["TCP/53", "TCP/5432", "TCP/6379", "UDP/53"])
    for (const r of spec.egress) expect(r.ports?.length ?? 0, "an egress rule without ports allows every port").toBeGreaterThan(0)
    // ... and those are the ports the configuration uses.
    expect(cfg.database.connection.port ?? 5432).toBe(5432)
    expect(cfg.security.rate_limit.store).toBe("redis")
  })
})

const kubectlMissing = (): string | undefined => {
  const r = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8", timeout: 20_000 })
  return r.error !== undefined
    ? `kubectl is not installed (${r.error.message})`
    : r.status === 0
      ? undefined
      : `kubectl version --client exited with ${r.status}`
}
const kubectl = kubectlMissing()
if (kubectl !== undefined) console.warn(`skipping the kustomize rendering checks: ${kubectl}`)

/** `kubectl kustomize dir` as objects. */
const render = (dir: string): Array<any> => {
  const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60_000 })
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${r.stderr}`)
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS())
}

describe("deploy/k8s: configuration changes roll the pods; the migration Job", () => {
  it("config.yaml's ConfigMap is generated with a content hash, the rules' with a fixed name (re-read in place)", () => {
    const gens = kustomization().configMapGenerator ?? []
    const config = gens.find((g) => g.name === "dbal-config")
    const rulesGen = gens.find((g) => g.name === "dbal-acl-rules")
    expect(config?.options?.disableNameSuffixHash ?? false).toBe(false)
    expect(rulesGen?.options?.disableNameSuffixHash).toBe(true)
    // cache_ttl bounds how late a changed rules file is seen.
    expect(cfg.security.acl.cache_ttl).toBeGreaterThan(0)
  })

  it.skipIf(kubectl !== undefined && !requireServices)(
    "kubectl kustomize: a change to config.yaml changes the pod template (a rollout); one to the rules does not",
    () => {
      if (kubectl !== undefined) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${kubectl}`)
      const template = (objs: Array<any>) => JSON.stringify(objs.find((o) => o.kind === "Deployment").spec.template)
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dbal-kustomize-"))
      try {
        fs.cpSync(k8sDir, tmp, { recursive: true })
        const before = render(tmp)
        const cm = before.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("dbal-config-"))
        expect(cm, "dbal-config with a hash suffix").toBeDefined()
        // Every reference to it, in the Deployment and the Job, carries the same hashed name.
        const text = JSON.stringify(before)
        expect(text.split(`"${cm.metadata.name}"`).length - 1).toBe(3)
        expect(text).not.toMatch(/"dbal-config"/)
        const configFile = path.join(tmp, "config", "config.yaml")
        fs.writeFileSync(configFile, fs.readFileSync(configFile, "utf8").replace('level: "info"', 'level: "warning"'))
        const afterConfig = render(tmp)
        expect(template(afterConfig)).not.toBe(template(before))
        const rulesFile = path.join(tmp, "config", "acl_rules.yaml")
        fs.appendFileSync(rulesFile, "  # a comment\n")
        expect(template(render(tmp))).toBe(template(afterConfig))
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true })
      }
    }
  )

  it("the migration Job runs `migrate` with the Deployment's image, configuration, credentials and security context", () => {
    const spec = (job as any).spec
    const pod = spec.template.spec as IPodSpec
    const c = pod.containers[0]!
    expect(c.image).toBe(container.image)
    expect(c.args).toEqual(["migrate", `--config=${configArg()}`])
    expect(pod.restartPolicy).toBe("Never")
    expect(spec.backoffLimit).toBeGreaterThan(0)
    expect(spec.ttlSecondsAfterFinished).toBeGreaterThan(0)
    // The same files where the daemon reads them.
    const volumeFor = (mountPath: string, from: IPodSpec, cont: IContainer) => {
      const m = (cont.volumeMounts ?? []).find((x) => x.mountPath === mountPath)
      expect(m, `${mountPath} mounted`).toBeDefined()
      const { name: _n, ...v } = (from.volumes ?? []).find((x) => x.name === m!.name)!
      return v
    }
    for (const p of ["/etc/dbal", "/var/run/secrets/dbal"]) expect(volumeFor(p, pod, c)).toEqual(volumeFor(p, podSpec, container))
    // Every ${VAR} without a default in config.yaml is set, as for the daemon.
    const required = [...configText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!)
    for (const name of required)
      expect(
        (c.env ?? []).map((e) => e.name),
        name
      ).toContain(name)
    expect(c.securityContext).toEqual(container.securityContext)
    expect(pod.securityContext).toEqual(podSpec.securityContext)
  })
})

describe("deploy/k8s/monitoring: the optional ServiceMonitor and PrometheusRule", () => {
  const dir = path.join(k8sDir, "monitoring")
  const read = (f: string) => YAML.parse(fs.readFileSync(path.join(dir, f), "utf8")) as any

  it("the kustomization lists both; the ServiceMonitor scrapes /metrics on the Service's port, the job the rules expect", () => {
    expect(kustomization(dir).resources.sort()).toEqual(["prometheusrule.yaml", "servicemonitor.yaml"])
    const sm = read("servicemonitor.yaml")
    expect(sm.apiVersion).toBe("monitoring.coreos.com/v1")
    expect(sm.kind).toBe("ServiceMonitor")
    expect((service as any).metadata.labels).toMatchObject(sm.spec.selector.matchLabels)
    const ep = sm.spec.endpoints[0]
    expect((service as any).spec.ports.map((p: any) => p.name)).toContain(ep.port)
    expect(ep.path).toBe("/metrics")
    expect(ep.scheme).toBe(cfg.server.tls.enabled ? "https" : "http")
    // The Operator's job label is the Service's name: the one the alerts match on.
    const rules = read("prometheusrule.yaml")
    expect(JSON.stringify(rules.spec.groups)).toContain(`up{job=\\"${service.metadata.name}\\"}`)
  })

  it.skipIf(kubectl !== undefined && !requireServices)("kubectl kustomize renders it", () => {
    if (kubectl !== undefined) throw new Error(`DBAL_REQUIRE_SERVICES=1 but ${kubectl}`)
    expect(
      render(dir)
        .map((o) => o.kind)
        .sort()
    ).toEqual(["PrometheusRule", "ServiceMonitor"])
  })
})
