/**
 * Auth layer. This version knows the service tokens of the configuration (role `system`),
 * compared in constant time; session tokens and JWTs come with the security layers.
 * `auth.user_id`, when sent with a service token, must be the token's name.
 */
import { Effect, Layer, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { AppConfig } from "../src/Config.js"
import { Unauthorized } from "../src/Errors.js"
import { Auth, type Credentials } from "../src/services/Auth.js"
import type { Principal } from "../src/services/Principal.js"

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()

export const make = Effect.map(AppConfig, (cfg) => {
  // Digests have equal lengths, so the comparison time does not depend on the token's length.
  const services = cfg.security.auth.service_tokens.map((t) => ({ name: t.name, digest: digest(Redacted.value(t.token)) }))
  const authenticate = (creds: Credentials, _remoteAddress: string): Effect.Effect<Principal, Unauthorized> =>
    Effect.suspend(() => {
      const d = digest(creds.token)
      let match: string | undefined
      for (const s of services) if (timingSafeEqual(s.digest, d)) match = s.name
      if (match === undefined) return Effect.fail(new Unauthorized({ reason: "unknown or expired token" }))
      if (creds.userId !== undefined && creds.userId !== match) {
        return Effect.fail(new Unauthorized({ reason: "user_id does not match the token" }))
      }
      return Effect.succeed({ userId: match, role: "system", via: "service-token" } satisfies Principal)
    })
  return { authenticate }
})

export const layer = Layer.effect(Auth, make)
