/**
 * Entities layer: the registry loaded from `entities.dir` (YAML definitions) or, when
 * `entities.prisma_schema` is set, from that schema.prisma's models (src/entity/Prisma.ts);
 * a broken definition stops the start.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { type Dialect, dialectOf } from "../src/entity/Ddl.js"
import { EntityLoadError, loadRegistry, yamlTables } from "../src/entity/Load.js"
import type { PrismaNaming } from "../src/entity/Prisma.js"
import { EntityRegistry, type EntityRegistryShape } from "../src/entity/Model.js"

export class EntitiesError extends Schema.TaggedError<EntitiesError>()("EntitiesError", {
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.join("\n")
  }
}

const load = (f: () => EntityRegistryShape) =>
  Effect.try({
    try: f,
    catch: (e) => new EntitiesError({ problems: e instanceof EntityLoadError ? [...e.problems] : [String(e)] })
  })

/** `dialect`: the one served, when known (what it cannot store is refused at load). */
export const fromDir = (dir: string, dialect?: Dialect) => load(() => loadRegistry(dir, dialect === undefined ? {} : { dialect }))

/** The models of a schema.prisma as entities (no default access rules: see src/entity/Prisma.ts). */
export const fromPrisma = (file: string, naming: PrismaNaming = "prisma", entitiesDir?: string, dialect?: Dialect) =>
  // The Prisma parser is loaded only when a schema.prisma is configured.
  Effect.flatMap(
    Effect.promise(() => import("../src/entity/Prisma.js")),
    ({ loadPrismaRegistry }) =>
      load(() =>
        loadPrismaRegistry(file, {
          naming,
          ...(dialect === undefined ? {} : { dialect }),
          // snake_case naming: the models keep the tables their YAML definitions name (one rule for both sources)
          ...(naming === "snake_case" && entitiesDir !== undefined ? { tables: yamlTables(entitiesDir) } : {})
        })
      )
  )

/** The registry a configuration names: its Prisma schema when set, else its entities folder. */
export const fromConfig = (
  cfg: Pick<DaemonConfig, "entitiesDir" | "prismaSchema"> & {
    readonly entities?: { readonly prisma_naming?: PrismaNaming }
    readonly database?: Pick<DaemonConfig["database"], "adapter">
  }
) => {
  const dialect = cfg.database === undefined ? undefined : dialectOf(cfg.database.adapter)
  return cfg.prismaSchema === undefined
    ? fromDir(cfg.entitiesDir, dialect)
    : fromPrisma(cfg.prismaSchema, cfg.entities?.prisma_naming, cfg.entitiesDir, dialect)
}

export const layer = Layer.effect(EntityRegistry, Effect.flatMap(AppConfig, fromConfig))
