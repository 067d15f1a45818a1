/** Vitest setup file: each test file's temporary folders go once its own afterAll hooks have run. */
import { afterAll } from "vitest"
import { removeTempDirs } from "./services.js"

afterAll(removeTempDirs)
