/**
 * The generated client module (src/codegen/client.ts): the committed src/client/entities.ts is
 * exactly what the generator writes for config/entities today, accessor names follow the rule
 * (or `client.accessor`), and the types follow the field definitions.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { generateProgram } from "../../app/cli/generate.js"
import { accessorOf, defaultAccessor, generateClientModule } from "../../src/codegen/client.js"
import { loadRegistry } from "../../src/entity/Load.js"
import { loadPrismaRegistry } from "../../src/entity/Prisma.js"
import type { EntityDef, EntityRegistryShape } from "../../src/entity/Model.js"
import { root } from "../support/daemon.js"
import { tempDir } from "../support/services.js"

const SHIPPED = path.join(root, "config", "entities")
const CUSTOM = path.join(root, "test", "fixtures", "entities-custom")

const code = (registry: EntityRegistryShape, importFrom?: string): string => {
  const g = generateClientModule(registry, { source: "config/entities", ...(importFrom === undefined ? {} : { importFrom }) })
  if ("problems" in g) throw new Error(g.problems.join("\n"))
  return g.code
}
/** The lines of one declaration (`export interface Name {` … `}`). */
const declaration = (text: string, head: string): string => {
  const start = text.indexOf(head)
  if (start < 0) throw new Error(`no ${head}`)
  return text.slice(start, text.indexOf("\n}", start) + 2)
}

describe("generate", () => {
  it("src/client/entities.ts is what the generator writes for config/entities (npm run generate:client)", () => {
    const committed = fs.readFileSync(path.join(root, "src", "client", "entities.ts"), "utf8")
    expect(code(loadRegistry(SHIPPED), "./runtime.js")).toBe(committed)
  })

  it("names accessors by client.accessor, else the lower-camel plural; the shipped names stay", () => {
    expect(defaultAccessor("Invoice")).toBe("invoices")
    expect(defaultAccessor("ComponentHierarchy")).toBe("componentHierarchies")
    expect(defaultAccessor("Status")).toBe("statuses")
    expect(defaultAccessor("Key")).toBe("keys")
    const shipped = loadRegistry(SHIPPED)
    const names = Object.fromEntries([...shipped.entities.values()].map((e) => [e.name, accessorOf(e)]))
    expect(names).toEqual({
      User: "users",
      Credential: "credentials",
      Session: "sessions",
      PageView: "pages",
      ComponentHierarchy: "components",
      Workflow: "workflows",
      LuaScript: "luaScripts",
      Package: "packages"
    })
  })

  it("types a custom entity: record, inputs, enums, filters, lookups, relations", () => {
    const started = performance.now()
    const text = code(loadRegistry(CUSTOM))
    const ms = performance.now() - started
    console.log(`load + generate (shipped + Note): ${ms.toFixed(0)} ms`)
    expect(ms).toBeLessThan(2000)
    expect(text).toContain('import * as dbal from "dbal-daemon/client"')
    expect(text).toContain('export type NoteStatus = "draft" | "published"')
    expect(declaration(text, "export interface Note {")).toContain("readonly body: string | null")
    expect(declaration(text, "export interface Note {")).toContain("readonly status: NoteStatus\n")
    const create = declaration(text, "export interface NoteCreate {")
    expect(create).toContain("readonly userId: string\n")
    expect(create).toContain("readonly title: string\n")
    expect(create).toContain("readonly status?: NoteStatus\n")
    expect(create).not.toContain("readonly id")
    expect(create).not.toContain("createdAt")
    expect(declaration(text, "export interface NoteWhere")).toContain("readonly status?: dbal.EnumFilter<NoteStatus>")
    expect(declaration(text, "export interface NoteWhere")).toContain("readonly pinned?: dbal.BooleanFilter")
    expect(declaration(text, "export interface NoteRelations")).toContain("readonly user: User")
    expect(text).toContain('  notes: "Note"')
    // never_expose fields are settable, never in records or filters.
    expect(declaration(text, "export interface Credential {")).not.toContain("passwordHash")
    expect(declaration(text, "export interface CredentialCreate {")).toContain("readonly passwordHash: string")
    expect(declaration(text, "export interface CredentialWhere")).not.toContain("passwordHash")
    expect(declaration(text, "export interface UserTypes {")).toContain('readonly unique: "username" | "email"')
  })

  it("gives number ids to an entity whose id is an integer (autoincrement)", () => {
    const registry = loadRegistry(CUSTOM)
    const note = registry.entities.get("Note")!
    const id = { ...note.primaryKey, type: "integer" as const }
    const counter: EntityDef = { ...note, primaryKey: id, fields: note.fields.map((f) => (f.primary ? id : f)) }
    const text = code({ ...registry, entities: new Map([...registry.entities, ["Note", counter]]) })
    expect(declaration(text, "export interface NoteTypes {")).toContain("readonly id: number")
    expect(declaration(text, "export interface Note {")).toContain("readonly id: number")
    expect(declaration(text, "export interface UserTypes {")).toContain("readonly id: string")
  })

  it("types a Prisma app's models as the daemon answers them (test/fixtures/prisma-app), checked by tsc", async () => {
    const registry = loadPrismaRegistry(path.join(root, "test", "fixtures", "prisma-app", "postgresql", "schema.prisma"), { dialect: "pg" })
    const text = code(registry, path.join(root, "src", "client", "runtime.js"))
    const record = declaration(text, "export interface Customer {")
    for (const line of [
      "id: number",
      "balance: string",
      "visits: string",
      "score: number",
      "tags: ReadonlyArray<string> | null",
      "status: CustomerStatus"
    ]) {
      expect(record).toContain(`readonly ${line}`)
    }
    const create = declaration(text, "export interface CustomerCreate {")
    expect(create).not.toMatch(/readonly (id|createdAt|updatedAt)\b/)
    expect(create).toContain("readonly ref?: string")
    expect(create).toContain("readonly code?: string")
    expect(declaration(text, "export interface CustomerWhere")).toContain("readonly visits?: dbal.ExactNumberFilter")
    expect(declaration(text, "export interface CustomerTypes {")).toContain("readonly id: number")
    expect(declaration(text, "export interface CouponTypes {")).toContain("readonly id: string")
    // The generated module and a program that uses it, through the type checker.
    const dir = tempDir("codegen-prisma")
    fs.writeFileSync(path.join(dir, "db.ts"), text)
    fs.writeFileSync(
      path.join(dir, "app.ts"),
      `import type { Client, Customer, CustomerCreate, CustomerWhere } from "./db.js"
declare const db: Client
declare const c: Customer
export const read: [number, string, string, number] = [c.id, c.balance, c.visits, c.score]
export const create: CustomerCreate = { email: "a@example.com", name: "n", balance: "1.50", score: 1, tags: ["vip"] }
export const where: CustomerWhere = { email: { eq: "A@EXAMPLE.COM", mode: "insensitive" }, tags: { has: "vip", isEmpty: false }, visits: { gt: "9007199254740993" } }
export const reads = db.customers.read(1)
// @ts-expect-error the database numbers the ids
export const withId: CustomerCreate = { id: 1, email: "a@example.com", name: "n", balance: "1.50", score: 1 }
// @ts-expect-error Decimal values are strings
export const badBalance: CustomerCreate = { email: "a@example.com", name: "n", balance: 1.5, score: 1 }
// @ts-expect-error mode applies to free text only
export const badMode: CustomerWhere = { score: { eq: 1, mode: "insensitive" } }
// @ts-expect-error Customer ids are numbers
export const badRead = db.customers.read("x")
`
    )
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc")
    const args = [
      "--strict",
      "--noEmit",
      "--skipLibCheck",
      "--target",
      "es2022",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--types",
      "node",
      "--typeRoots",
      path.join(root, "node_modules", "@types"),
      "app.ts"
    ]
    const out = await promisify(execFile)(process.execPath, [tsc, ...args], { cwd: dir, timeout: 300_000 }).catch(
      (e: { stdout?: string }) => ({ stdout: e.stdout ?? "failed" })
    )
    expect(out.stdout).toBe("")
  }, 300_000)

  it("refuses accessor names that clash", () => {
    const registry = loadRegistry(SHIPPED)
    const user = registry.entities.get("User")!
    const clash = new Map([...registry.entities, ["User", { ...user, accessor: "pages" }]])
    const g = generateClientModule({ ...registry, entities: clash }, { source: "x" })
    expect("problems" in g && g.problems.join()).toContain("accessor pages is also")
    const reserved = new Map([...registry.entities, ["User", { ...user, accessor: "close" }]])
    const r = generateClientModule({ ...registry, entities: reserved }, { source: "x" })
    expect("problems" in r && r.problems.join()).toContain("accessor close is a member of the client")
  })

  it("writes the module for a configuration's schema.prisma as for a YAML folder", async () => {
    const dir = tempDir("generate-prisma")
    fs.writeFileSync(
      path.join(dir, "schema.prisma"),
      `model Invoice {
  id        String   @id @default(uuid())
  number    String   @unique
  paid      Boolean  @default(false)
  createdAt DateTime @default(now())
}
`
    )
    const config = path.join(dir, "config.yaml")
    fs.writeFileSync(
      config,
      JSON.stringify({
        database: { adapter: "sqlite", connection: { filename: ":memory:" } },
        entities: { prisma_schema: "schema.prisma" }
      })
    )
    const out = path.join(dir, "db.ts")
    await Effect.runPromise(generateProgram(config, out, "dbal-daemon/client"))
    const text = fs.readFileSync(out, "utf8")
    expect(text).toContain('invoices: "Invoice"')
    expect(declaration(text, "export interface InvoiceCreate {")).toContain("readonly number: string\n")
    expect(declaration(text, "export interface InvoiceCreate {")).toContain("readonly paid?: boolean\n")
    expect(declaration(text, "export interface InvoiceTypes {")).toContain('readonly unique: "number"')
  })
})
