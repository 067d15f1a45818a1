/** A plain JSON object (not null, not an array): what a decoded frame, a param or a YAML mapping must be to be read by key. */
export const isRecord = (u: unknown): u is Record<string, unknown> => u !== null && typeof u === "object" && !Array.isArray(u)
