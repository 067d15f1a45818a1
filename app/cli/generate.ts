/**
 * `dbal-daemon generate --config=FILE --out=FILE.ts [--import=MODULE]`: writes the typed client
 * module (src/codegen/client.ts) of the entities that configuration loads (its entities folder
 * or its schema.prisma). Needs no database.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as ConfigLayer from "../../layers/Config.js"
import * as EntitiesLayer from "../../layers/Entities.js"
import { generateClientModule } from "../../src/codegen/client.js"
import { problem } from "./errors.js"

export const generateProgram = (file: string, outFile: string, importFrom: string) =>
  Effect.gen(function* () {
    const cfg = yield* ConfigLayer.loadConfig(file)
    const registry = yield* EntitiesLayer.fromConfig(cfg)
    const from = cfg.prismaSchema ?? cfg.entitiesDir
    const source = path.relative(process.cwd(), from) || "."
    const generated = generateClientModule(registry, { source: source.split(path.sep).join("/"), importFrom })
    if ("problems" in generated) return yield* problem(...generated.problems)
    const target = path.resolve(outFile)
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(path.dirname(target), { recursive: true })
        fs.writeFileSync(target, generated.code)
      },
      catch: (e) => `cannot write ${target} (${(e as NodeJS.ErrnoException).code ?? "error"})`
    }).pipe(Effect.catchAll((why) => problem(why)))
    process.stdout.write(`generated ${path.relative(process.cwd(), target)}: ${registry.entities.size} entities\n`)
  })
