/**
 * A custom entity end to end (docs/entities.md, "Your own entity, end to end"): the Note of
 * test/fixtures/entities-custom (owner field userId → User, `acl:` with `self`) is created by
 * `dbal-daemon migrate`, served by a real daemon process that does not migrate by itself, used
 * over the wire with the owner rule applied, then through a module written by
 * `dbal-daemon generate`.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Client as WireClient, connect, type Daemon, root, startDaemon } from "../support/daemon.js"
import { createDatabase, daemonConfig, serviceAuth, skipDialect, type TestDatabase, tempDir, writeConfig } from "../support/services.js"

const run = promisify(execFile)
const CUSTOM = path.join(root, "test", "fixtures", "entities-custom")
const BIN = path.join(root, "bin", "dbal-daemon.mjs")

type Rec = Record<string, unknown>
interface Person {
  readonly id: string
  readonly username: string
  readonly auth: { readonly token: string; readonly user_id: string }
}

for (const dialect of ["sqlite", "postgresql"] as const) {
  describe.skipIf(await skipDialect(dialect))(`a custom entity from YAML to the generated client (${dialect})`, () => {
    let db: TestDatabase
    let daemon: Daemon | undefined
    let service: WireClient
    let configFile: string
    let alice: Person
    let bob: Person
    let migrateOutput: string

    const ok = async <A = Rec>(method: string, params: ReadonlyArray<unknown>, auth: Rec = serviceAuth): Promise<A> => {
      const a = await service.call(method, params, auth)
      if (a.error !== undefined) throw new Error(`${method}: ${a.error.code} ${a.error.message} ${JSON.stringify(a.error.details ?? {})}`)
      return a.result as A
    }
    const code = async (method: string, params: ReadonlyArray<unknown>, auth: Rec): Promise<number | undefined> =>
      (await service.call(method, params, auth)).error?.code

    const person = async (): Promise<Person> => {
      const username = `u_${randomBytes(4).toString("hex")}`
      const u = await ok<Rec>("create", ["User", { username, email: `${username}@example.com` }])
      const token = `sess-${randomBytes(24).toString("hex")}`
      await ok("create", ["Session", { userId: u.id, token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() }])
      return { id: String(u.id), username, auth: { token, user_id: String(u.id) } }
    }

    beforeAll(async () => {
      db = await createDatabase(dialect)
      const base = daemonConfig(db, { entities: { dir: CUSTOM } })
      // The daemon creates nothing by itself here: `migrate` must have made the tables.
      configFile = writeConfig({ ...base, database: { ...(base.database as Rec), auto_migrate: false } })
      const migrated = await run(process.execPath, [BIN, "migrate", `--config=${configFile}`], { cwd: root, timeout: 120_000 })
      migrateOutput = migrated.stdout
      daemon = await startDaemon([`--config=${configFile}`], { timeoutMs: 120_000 })
      service = await connect(daemon.port, serviceAuth)
      alice = await person()
      bob = await person()
    }, 300_000)

    afterAll(async () => {
      await service?.close()
      await daemon?.stop()
      await db?.drop()
    })

    it("migrate creates the entity's table", () => {
      expect(migrateOutput).toMatch(/migrated: .*\bnotes\b/)
    })

    it("CRUD over the wire applies the owner rule", async () => {
      const mine = await ok<Rec>("create", ["Note", { userId: alice.id, title: "groceries" }], alice.auth)
      expect(mine).toMatchObject({ userId: alice.id, title: "groceries", body: null, status: "draft", pinned: false })
      // A note for somebody else is refused; so is one without an owner.
      expect(await code("create", ["Note", { userId: bob.id, title: "forged" }], alice.auth)).toBe(403)
      const bobs = await ok<Rec>("create", ["Note", { userId: bob.id, title: "bob's" }], bob.auth)

      const seen = await ok<{ data: Array<Rec>; total: number }>("list", ["Note", { limit: 100 }], alice.auth)
      expect(seen.data.map((n) => n.id)).toEqual([mine.id])
      expect(seen.total).toBe(1)
      expect(await code("read", ["Note", bobs.id], alice.auth)).toBe(404)
      expect(await code("update", ["Note", bobs.id, { title: "taken" }], alice.auth)).toBe(404)
      expect(await code("delete", ["Note", bobs.id], alice.auth)).toBe(404)
      // Nor can a note be handed over to another owner.
      expect(await code("update", ["Note", mine.id, { userId: bob.id }], alice.auth)).toBe(403)

      const changed = await ok<Rec>("update", ["Note", mine.id, { status: "published", pinned: true }], alice.auth)
      expect(changed).toMatchObject({ status: "published", pinned: true })
      expect(await code("update", ["Note", mine.id, { status: "archived" }], alice.auth)).toBe(422)

      const withOwner = await ok<{ data: Array<Rec> }>("list", ["Note", { include: ["user"] }], alice.auth)
      expect(withOwner.data[0]?.user).toMatchObject({ id: alice.id, username: alice.username })

      expect(await ok("delete", ["Note", mine.id], alice.auth)).toBe(true)
      expect((await ok<Rec>("read", ["Note", bobs.id], bob.auth)).title).toBe("bob's")
    })

    it("the module written by `dbal-daemon generate` works against it", async () => {
      const out = path.join(tempDir("generated"), "db.ts")
      const g = await run(process.execPath, [BIN, "generate", `--config=${configFile}`, `--out=${out}`], { cwd: root, timeout: 120_000 })
      expect(g.stdout).toMatch(/generated .*db\.ts: 9 entities/)
      const generated = (await import(out)) as typeof import("../../src/client/entities.js") & { createClient: (c: unknown) => unknown }
      type NoteRec = { id: string; userId: string; title: string; status: string; user?: { username: string } | null }
      interface NotesApi {
        create: (d: Rec) => Promise<NoteRec>
        list: (o: Rec) => Promise<{ data: Array<NoteRec> }>
        findByField: (f: string, v: unknown) => Promise<NoteRec | null>
        count: (f?: Rec) => Promise<number>
      }
      const client = generated.createClient({
        mode: "production",
        endpoint: `ws://127.0.0.1:${daemon!.port}`,
        auth: { token: bob.auth.token, userId: bob.id }
      }) as unknown as {
        notes: NotesApi
        entity: (n: string) => { count: (f?: Rec) => Promise<number> }
        close: () => Promise<void>
      }
      try {
        const n = await client.notes.create({ userId: bob.id, title: "typed", body: "from the generated client" })
        expect(n).toMatchObject({ userId: bob.id, title: "typed", status: "draft" })
        const listed = await client.notes.list({ include: ["user"], filter: { title: { startsWith: "typed" } } })
        expect(listed.data.map((x) => [x.id, x.user?.username])).toEqual([[n.id, bob.username]])
        expect(await client.notes.findByField("id", n.id)).toMatchObject({ title: "typed" })
        await expect(client.notes.create({ userId: alice.id, title: "forged" })).rejects.toMatchObject({ kind: "Server", code: 403 })
        // Untyped access by name counts the same rows.
        expect(await client.entity("Note").count()).toBe(await client.notes.count())
      } finally {
        await client.close()
      }
    })
  })
}
