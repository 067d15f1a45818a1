/**
 * TLS and mutual TLS (server.tls), with certificates made here by the `openssl` CLI in a temp
 * folder: a CA, a server certificate for 127.0.0.1/localhost (subjectAltName), a client
 * certificate from the same CA, and an unrelated CA with its own client certificate.
 *
 * - TLS (the daemon process): a wss client trusting the CA creates and reads; a plain ws://
 *   client and a client that speaks at most TLS 1.1 are refused; SIGHUP after the certificate
 *   files were replaced serves the new certificate to new connections while a connection opened
 *   before keeps working.
 * - mTLS (ca_file set; in-process): no client certificate and a certificate of the unrelated CA
 *   are refused; the right client certificate works.
 * - A missing or unusable certificate file stops the start with exit code 1 and one line naming
 *   server.tls.cert_file.
 *
 * Without openssl the suite is skipped with a line saying why (a failure with
 * DBAL_REQUIRE_SERVICES=1).
 */
import { randomBytes, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as tls from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client, connect, type Daemon, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, type TestDatabase, serviceAuth, tempDir } from "../support/services.js"
import { checkOpenssl, openssl } from "../support/openssl.js"
import { type InProcessDaemon, startInProcess } from "./support.js"

const missing = checkOpenssl("the TLS tests")

/** A P-256 key and a certificate for `cn`, self-signed (a CA) or signed by `ca` with `ext`. */
const makeCert = (dir: string, name: string, cn: string, opts: { ca?: string; ext?: string } = {}) => {
  openssl(dir, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`])
  if (opts.ca === undefined) {
    openssl(dir, [
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign"
    ])
  } else {
    fs.writeFileSync(path.join(dir, `${name}.ext`), opts.ext ?? "")
    openssl(dir, ["req", "-new", "-key", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`])
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${opts.ca}.crt`,
      "-CAkey",
      `${opts.ca}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`
    ])
  }
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
}

const serverExt = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
const clientExt = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"

const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is served. */
const servedFingerprint = (port: number, ca: Buffer, extra: tls.ConnectionOptions = {}): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost", ...extra }, () => {
      const fp = socket.getPeerCertificate().fingerprint256
      socket.end()
      resolve(fp)
    })
    socket.setTimeout(10_000, () => socket.destroy(new Error("TLS handshake timed out")))
    socket.once("error", reject)
  })

/** Resolves with the error of a connection attempt that must fail (rejects if it opens). */
const refused = async (attempt: () => Promise<Client>): Promise<Error> => {
  let client: Client | undefined
  try {
    client = await Promise.race([
      attempt(),
      new Promise<never>((_, fail) => setTimeout(() => fail(new Error("neither opened nor failed within 10 s")), 10_000).unref())
    ])
  } catch (e) {
    if ((e as Error).message.startsWith("neither opened")) throw e
    return e as Error
  }
  await client.close()
  throw new Error("the connection was accepted")
}

const suffix = () => randomBytes(4).toString("hex")

const createAndRead = async (client: Client) => {
  const s = suffix()
  const created = await client.call("create", ["User", { username: `tls_${s}`, email: `tls_${s}@example.com`, role: "user" }])
  expect(created.error, JSON.stringify(created)).toBeUndefined()
  const id = (created.result as { id: string }).id
  const read = await client.call("read", ["User", id])
  expect(read.result, JSON.stringify(read)).toMatchObject({ id, username: `tls_${s}` })
}

describe.skipIf(missing !== undefined)("TLS", () => {
  const dir = tempDir("tls")
  let ca: ReturnType<typeof makeCert>
  let server: ReturnType<typeof makeCert>
  let server2: ReturnType<typeof makeCert>
  let client: ReturnType<typeof makeCert>
  let otherClient: ReturnType<typeof makeCert>
  let caPem: Buffer
  let db: TestDatabase | undefined
  let daemon: Daemon | undefined
  const clients: Array<Client> = []
  const servedCert = path.join(dir, "served.crt")
  const servedKey = path.join(dir, "served.key")

  const configFile = (name: string, tlsSection: Record<string, unknown>) => {
    const file = path.join(dir, `${name}.yaml`)
    const cfg = daemonConfig(db!)
    fs.writeFileSync(file, JSON.stringify({ ...cfg, server: { ...(cfg.server as object), tls: { enabled: true, ...tlsSection } } }))
    return file
  }

  beforeAll(async () => {
    ca = makeCert(dir, "ca", "dbal test CA")
    server = makeCert(dir, "server", "localhost", { ca: "ca", ext: serverExt })
    server2 = makeCert(dir, "server2", "localhost", { ca: "ca", ext: serverExt })
    client = makeCert(dir, "client", "dbal test client", { ca: "ca", ext: clientExt })
    makeCert(dir, "otherca", "unrelated CA")
    otherClient = makeCert(dir, "otherclient", "dbal test client", { ca: "otherca", ext: clientExt })
    caPem = fs.readFileSync(ca.cert)
    fs.copyFileSync(server.cert, servedCert)
    fs.copyFileSync(server.key, servedKey)
    db = await createDatabase("sqlite")
    daemon = await startDaemon([`--config=${configFile("tls", { cert_file: servedCert, key_file: servedKey })}`])
  })

  afterAll(async () => {
    for (const c of clients) await c.close()
    await daemon?.stop()
    await db?.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("announces wss:// and serves the configured certificate", async () => {
    expect(daemon!.output()).toMatch(/listening on wss:\/\/127\.0\.0\.1:\d+/)
    expect(await servedFingerprint(daemon!.port, caPem)).toBe(fingerprint(server.cert))
  })

  it("a wss client that trusts the CA creates and reads", async () => {
    const c = await connect(daemon!.port, serviceAuth, { tls: { ca: caPem } })
    clients.push(c)
    await createAndRead(c)
  })

  it("a wss client that does not trust the CA is refused by the client's own check", async () => {
    const e = await refused(() => connect(daemon!.port, serviceAuth, { tls: {} }))
    expect(e.message).toMatch(/certificate/i)
  })

  it("a plain ws:// client is refused", async () => {
    await refused(() => connect(daemon!.port, serviceAuth))
  })

  it("a client that speaks at most TLS 1.1 is refused", async () => {
    const e = await refused(() =>
      connect(daemon!.port, serviceAuth, {
        // SECLEVEL=0 lets this client offer TLS 1.1 at all; the server must still refuse it.
        tls: { ca: caPem, minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" }
      })
    )
    expect(e.message).toMatch(/protocol version|unsupported protocol|no protocols available/i)
  })

  it("SIGHUP reloads the certificate: new connections see the new one, open ones keep working", async () => {
    const before = await connect(daemon!.port, serviceAuth, { tls: { ca: caPem } })
    clients.push(before)
    const oldFp = fingerprint(server.cert)
    const newFp = fingerprint(server2.cert)
    expect(newFp).not.toBe(oldFp)
    // Replace the files in place (new inode contents, same paths) and signal the daemon.
    fs.writeFileSync(servedCert, fs.readFileSync(server2.cert))
    fs.writeFileSync(servedKey, fs.readFileSync(server2.key))
    const reloads = (daemon!.output().match(/TLS certificates reloaded/g) ?? []).length
    daemon!.process.kill("SIGHUP")
    await daemon!.waitForOutput(new RegExp(`(TLS certificates reloaded[\\s\\S]*){${reloads + 1}}`), 10_000)
    expect(await servedFingerprint(daemon!.port, caPem)).toBe(newFp)
    const after = await connect(daemon!.port, serviceAuth, { tls: { ca: caPem } })
    clients.push(after)
    await createAndRead(after)
    // The connection opened before the reload is still open, on the old certificate, and works.
    const socket = (before.ws as unknown as { _socket: tls.TLSSocket })._socket
    expect(socket.getPeerCertificate().fingerprint256).toBe(oldFp)
    expect(before.ws.readyState).toBe(before.ws.OPEN)
    await createAndRead(before)
    expect(daemon!.alive()).toBe(true)
  })

  describe("mutual TLS (server.tls.ca_file)", () => {
    let mtls: InProcessDaemon | undefined

    beforeAll(async () => {
      mtls = await startInProcess("mtls", () => ({
        server: { host: "127.0.0.1", port: 0, tls: { enabled: true, cert_file: server.cert, key_file: server.key, ca_file: ca.cert } }
      }))
    })

    afterAll(async () => {
      await mtls?.dispose()
    })

    it("refuses a client without a certificate", async () => {
      await refused(() => connect(mtls!.port, serviceAuth, { tls: { ca: caPem } }))
    })

    it("refuses a client certificate of an unrelated CA", async () => {
      await refused(() =>
        connect(mtls!.port, serviceAuth, {
          tls: { ca: caPem, cert: fs.readFileSync(otherClient.cert), key: fs.readFileSync(otherClient.key) }
        })
      )
    })

    it("accepts the client certificate the CA signed", async () => {
      const c = await connect(mtls!.port, serviceAuth, {
        tls: { ca: caPem, cert: fs.readFileSync(client.cert), key: fs.readFileSync(client.key) }
      })
      clients.push(c)
      await createAndRead(c)
    })
  })

  describe("a certificate file that cannot be used stops the start", () => {
    const failedStart = async (file: string): Promise<{ code: number | null; output: string }> => {
      const d = startDaemon([`--config=${file}`], { timeoutMs: 30_000 })
      try {
        const started = await d
        await started.stop()
        throw new Error(`the daemon started:\n${started.output()}`)
      } catch (e) {
        const m = /^daemon exited with (\S+) before listening:\n([\s\S]*)$/.exec((e as Error).message)
        if (m === null) throw e
        return { code: m[1] === "null" ? null : Number(m[1]), output: m[2]! }
      }
    }

    it("missing: exit code 1 and one line naming server.tls.cert_file", async () => {
      const r = await failedStart(configFile("missing", { cert_file: path.join(dir, "nope.crt"), key_file: server.key }))
      expect(r.code).toBe(1)
      const lines = r.output.trim().split("\n")
      expect(lines, r.output).toHaveLength(1)
      expect(lines[0]).toMatch(/server\.tls\.cert_file/)
      expect(lines[0]).toMatch(/ENOENT/)
    })

    it("unreadable (a folder where the file should be): exit code 1 and one line naming server.tls.cert_file", async () => {
      const folder = path.join(dir, "a-folder.crt")
      fs.mkdirSync(folder, { recursive: true })
      const r = await failedStart(configFile("folder", { cert_file: folder, key_file: server.key }))
      expect(r.code).toBe(1)
      const lines = r.output.trim().split("\n")
      expect(lines, r.output).toHaveLength(1)
      expect(lines[0]).toMatch(/server\.tls\.cert_file/)
    })
  })
})
