/** Changes layer (in process): listeners are called synchronously on each publish. */
import { Effect, Layer } from "effect"
import { Changes } from "../src/services/Changes.js"

export const layer = Layer.sync(Changes, () => {
  const listeners: Array<(entity: string) => void> = []
  return {
    publish: (entity) =>
      Effect.sync(() => {
        for (const l of listeners) l(entity)
      }),
    subscribe: (listener) => Effect.sync(() => void listeners.push(listener))
  }
})
