/**
 * Entities layer: the registry loaded from `entities.dir` (YAML definitions) or, when
 * `entities.prisma_schema` is set, from that schema.prisma's models (src/entity/Prisma.ts);
 * a broken definition stops the start.
 */
import { Effect, Layer, Schema } from "effect"
import { AppConfig, type DaemonConfig } from "../src/Config.js"
import { EntityLoadError, loadRegistry } from "../src/entity/Load.js"
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

export const fromDir = (dir: string) => load(() => loadRegistry(dir))

/** The models of a schema.prisma as entities (no default access rules: see src/entity/Prisma.ts). */
export const fromPrisma = (file: string) =>
  // The Prisma parser is loaded only when a schema.prisma is configured.
  Effect.flatMap(Effect.promise(() => import("../src/entity/Prisma.js")), ({ loadPrismaRegistry }) => load(() => loadPrismaRegistry(file)))

/** The registry a configuration names: its Prisma schema when set, else its entities folder. */
export const fromConfig = (cfg: Pick<DaemonConfig, "entitiesDir" | "prismaSchema">) =>
  cfg.prismaSchema === undefined ? fromDir(cfg.entitiesDir) : fromPrisma(cfg.prismaSchema)

export const layer = Layer.effect(EntityRegistry, Effect.flatMap(AppConfig, fromConfig))
