import type pg from "pg"

/** See pin-backend.mjs. */
export declare const pinBackendTo: (cpu: number | string) => (client: pg.ClientBase) => Promise<void>
