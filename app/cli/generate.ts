/**
 * `dbal-daemon generate --config=FILE --out=FILE.ts [--import=MODULE]`: writes the typed client
 * module (src/codegen/client.ts) of the entities that configuration loads (its entities folder
 * or its schema.prisma). Needs no database.
 */
import { Command, Options } from "@effect/cli"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, type Option } from "effect"
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

/** The subcommand; `configFile` resolves its --config as the other commands do. */
export const generateCommand = <E, R>(
  configOption: Options.Options<Option.Option<string>>,
  configFile: (own: Option.Option<string>) => Effect.Effect<string, E, R>
) =>
  Command.make(
    "generate",
    {
      config: configOption,
      out: Options.text("out").pipe(Options.withDescription("The TypeScript module to write (e.g. src/db.ts)")),
      importFrom: Options.text("import").pipe(
        Options.withDescription("The module the generated code imports the client from (default dbal-daemon/client)"),
        Options.withDefault("dbal-daemon/client")
      )
    },
    ({ config, out, importFrom }) => Effect.flatMap(configFile(config), (file) => generateProgram(file, out, importFrom))
  ).pipe(
    Command.withDescription(
      "Write a typed client module for the entities of the configuration (entities folder or schema.prisma): records, inputs, filters, relations and createClient(config). Needs no database."
    )
  )
