/**
 * Which password a new database connection sends (layers/db/settings.ts, `loginPassword`): the
 * configured one, or `password_file` read again for every login, falling back to the previous
 * password while the server refuses the file's (the file rotated before ALTER USER).
 */
import { Redacted } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { DaemonConfig } from "../../src/Config.js"
import { loginPassword, type PasswordSwitch } from "../../layers/db/settings.js"
import { tempDir } from "../support/services.js"

type Connection = DaemonConfig["database"]["connection"]

const withFile = (text: string) => {
  const dir = tempDir("loginpw")
  const file = path.join(dir, "db-password")
  const write = (t: string) => {
    fs.writeFileSync(`${file}.tmp`, t)
    fs.renameSync(`${file}.tmp`, file)
  }
  write(text)
  // As layers/Config.ts leaves it: the file read at start is also `password`.
  const connection = { password_file: file, password: Redacted.make(text.replace(/\n$/, "")) } as unknown as Connection
  return { file, write, connection }
}

describe("loginPassword", () => {
  it("without password_file: the configured password, or none", async () => {
    expect(await loginPassword({ password: Redacted.make("fixed-pw") } as unknown as Connection).next()).toBe("fixed-pw")
    expect(await loginPassword({} as Connection).next()).toBeUndefined()
  })

  it("reads the file at every login (trailing newline dropped); an unreadable file gives the last password read", async () => {
    const f = withFile("first\n")
    const logins = loginPassword(f.connection)
    expect(await logins.next()).toBe("first")
    f.write("second\r\n")
    expect(await logins.next()).toBe("second")
    fs.rmSync(f.file)
    expect(await logins.next()).toBe("second")
  })

  it("file rotated first: once the server refuses the file's password, the previous accepted one is used until it is refused too", async () => {
    const f = withFile("old-pw\n")
    const switches: Array<PasswordSwitch> = []
    const logins = loginPassword(f.connection, (to) => switches.push(to))
    expect(await logins.next()).toBe("old-pw")
    logins.report("old-pw", true)

    f.write("new-pw\n")
    // Not yet known to be refused: the file's password is tried first.
    expect(await logins.next()).toBe("new-pw")
    logins.report("new-pw", false)
    expect(await logins.next()).toBe("old-pw")
    expect(switches).toEqual(["previous"])
    logins.report("old-pw", true)
    expect(await logins.next()).toBe("old-pw")
    expect(switches).toEqual(["previous"])

    // ALTER USER has run: the previous password is refused, the file's is used from then on.
    logins.report("old-pw", false)
    expect(await logins.next()).toBe("new-pw")
    logins.report("new-pw", true)
    expect(switches).toEqual(["previous", "current"])
    expect(await logins.next()).toBe("new-pw")
  })

  it("ALTER USER first: the file's (old) password is refused and nothing else is known, so it is still the one sent", async () => {
    const f = withFile("old-pw\n")
    const switches: Array<PasswordSwitch> = []
    const logins = loginPassword(f.connection, (to) => switches.push(to))
    logins.report((await logins.next()) as string, true)
    logins.report("old-pw", false)
    expect(await logins.next()).toBe("old-pw")
    f.write("new-pw\n")
    expect(await logins.next()).toBe("new-pw")
    logins.report("new-pw", true)
    expect(switches).toEqual([])
  })

  it("a password that never worked is not fallen back to", async () => {
    const f = withFile("typo-pw\n")
    const logins = loginPassword(f.connection)
    logins.report((await logins.next()) as string, false)
    expect(await logins.next()).toBe("typo-pw")
  })
})
