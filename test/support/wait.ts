/**
 * Bounded waits on a condition (never a sleep as synchronization): the probe is tried every
 * `intervalMs` until it yields a value, and the wait fails with `what` past its deadline.
 */
export const until = async <T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 25
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** `until` for a yes/no condition. */
export const untilTrue = (what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 10_000, intervalMs = 25): Promise<true> =>
  until(what, async () => ((await condition()) ? (true as const) : undefined), timeoutMs, intervalMs)
