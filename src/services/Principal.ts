/** Who is asking: a user with a role, or the service role `system`. */
export const UserRoles = ["user", "admin", "god", "supergod"] as const
export type UserRole = (typeof UserRoles)[number]
export type Role = UserRole | "system"

export const isUserRole = (v: unknown): v is UserRole => typeof v === "string" && (UserRoles as ReadonlyArray<string>).includes(v)

export interface Principal {
  readonly userId: string
  readonly role: Role
  /** How the principal authenticated (for the audit log). */
  readonly via: "service-token" | "session" | "jwt"
  /** When the credential stops being valid (ms since the epoch): a session's expiresAt, a JWT's exp. */
  readonly expiresAt?: number
}

/** `user < admin < god < supergod`; `system` is above every user role. */
export const roleRank = (role: Role): number => (role === "system" ? 100 : UserRoles.indexOf(role))

export const atLeast = (role: Role, minimum: Role): boolean => roleRank(role) >= roleRank(minimum)
