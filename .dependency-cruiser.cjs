/**
 * The layout's one rule (docs/architecture.md, "Code map"): src/ holds the program and the service
 * contracts, layers/ their implementations, app/ the composition root that wires them.
 * layers/ may import src/; src/ never imports layers/ or app/; layers/ never imports app/.
 * Checked by `npm run lint:deps` (part of `npm run lint`, which .ci/run runs).
 */
module.exports = {
  forbidden: [
    {
      name: "src-imports-no-implementation",
      comment: "src/ is the program and the contracts: it must not import an implementation (layers/) or the composition root (app/)",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(layers|app)/" }
    },
    {
      name: "layers-import-no-composition-root",
      comment: "layers/ implements src/ contracts: the wiring (app/) imports layers, not the reverse",
      severity: "error",
      from: { path: "^layers/" },
      to: { path: "^app/" }
    },
    {
      name: "no-unresolvable",
      comment: "every relative import resolves to a file",
      severity: "error",
      from: {},
      to: { couldNotResolve: true, path: "^\\." }
    }
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".mjs", ".d.ts"] }
  }
}
