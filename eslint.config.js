// Lint (npm run lint): typescript-eslint's recommended rules on the program, its layers, the
// composition root, the tests, the bench and the scripts. Formatting is prettier's
// (.prettierrc.json), not eslint's. The layout rule is dependency-cruiser's (.dependency-cruiser.cjs).
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  {
    ignores: [
      ".dependency-cruiser.cjs",
      "dist/**",
      ".read-ab-build/**",
      "bench/results/**",
      "node_modules/**",
      "coverage/**",
      "src/client/entities.ts"
    ]
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        setImmediate: "readonly",
        performance: "readonly",
        WebSocket: "readonly",
        TextEncoder: "readonly",
        TextDecoder: "readonly",
        AbortController: "readonly",
        queueMicrotask: "readonly",
        structuredClone: "readonly",
        fetch: "readonly"
      }
    },
    rules: {
      // Unused names are mistakes, except a deliberately ignored `_x`.
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      // No `any` in the daemon (the standards); tests may need it to send what the types forbid.
      "@typescript-eslint/no-explicit-any": "error",
      "max-len": ["error", { code: 140, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true }],
      // Effect's generators and `yield*` on services are the style; empty catch blocks say why in a comment.
      "no-empty": ["error", { allowEmptyCatch: false }]
    }
  },
  {
    files: ["test/**", "bench/**", "scripts/**"],
    rules: { "@typescript-eslint/no-explicit-any": "off", "@typescript-eslint/no-non-null-assertion": "off" }
  }
)
