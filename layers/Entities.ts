/** Entities layer: the registry loaded from `entities.dir`; a broken definition stops the start. */
import { Effect, Layer, Schema } from "effect"
import { AppConfig } from "../src/Config.js"
import { EntityLoadError, loadRegistry } from "../src/entity/Load.js"
import { EntityRegistry } from "../src/entity/Model.js"

export class EntitiesError extends Schema.TaggedError<EntitiesError>()("EntitiesError", {
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.join("\n")
  }
}

export const fromDir = (dir: string) =>
  Effect.try({
    try: () => loadRegistry(dir),
    catch: (e) => new EntitiesError({ problems: e instanceof EntityLoadError ? [...e.problems] : [String(e)] })
  })

export const layer = Layer.effect(EntityRegistry, Effect.flatMap(AppConfig, (cfg) => fromDir(cfg.entitiesDir)))
