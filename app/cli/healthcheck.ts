/**
 * `dbal-daemon healthcheck`: GET /livez of the daemon a configuration describes, on its own host
 * and port, so that a container's HEALTHCHECK follows the configured port (whatever the file, the
 * DBAL_SERVER__PORT override or --port said) instead of a port written into the image.
 *
 * - A wildcard listen address (0.0.0.0, ::) is checked on the loopback address of its family.
 * - TLS: the certificate is not verified (the check is about this process being alive, on this
 *   host). With mTLS (server.tls.ca_file) the daemon completes no handshake without a client
 *   certificate, so only the TCP connection is checked.
 */
import { Effect } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import type { DaemonConfig } from "../../src/Config.js"
import * as ConfigLayer from "../../layers/Config.js"
import { problem } from "./errors.js"

const TIMEOUT_MS = 3000

/** The address to reach a daemon listening on `host`. */
export const probeHost = (host: string): string => (host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host)

const tcpOpen = (host: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy(new Error("timed out")))
    socket.once("connect", () => {
      socket.end()
      resolve()
    })
    socket.once("error", reject)
  })

const livez = (host: string, port: number, tls: boolean): Promise<number> =>
  new Promise((resolve, reject) => {
    const options = { host, port, path: "/livez", timeout: TIMEOUT_MS, ...(tls ? { rejectUnauthorized: false } : {}) }
    const req = (tls ? https : http).get(options, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.once("timeout", () => req.destroy(new Error("timed out")))
    req.once("error", reject)
  })

export const checkLiveness = (cfg: DaemonConfig) =>
  Effect.tryPromise({
    try: async () => {
      const host = probeHost(cfg.server.host)
      const tls = cfg.server.tls
      if (tls.enabled && tls.ca_file !== undefined) return tcpOpen(host, cfg.server.port)
      const status = await livez(host, cfg.server.port, tls.enabled)
      if (status !== 200) throw new Error(`GET /livez answered ${status}`)
    },
    catch: (e) => problem(`not alive on ${cfg.server.host}:${cfg.server.port}: ${e instanceof Error ? e.message : String(e)}`)
  })

/** The command: the configuration's daemon answers /livez, or exit code 1. */
export const healthcheckProgram = (file: string) => Effect.flatMap(ConfigLayer.loadConfig(file), checkLiveness)
