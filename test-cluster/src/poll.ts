// Waiting for a condition with a deadline. Every wait in the harness goes through here: conditions
// are polled, never assumed after a fixed sleep.

export class DeadlineError extends Error {
  readonly code = "DEADLINE_EXCEEDED";
  constructor(
    readonly what: string,
    readonly deadlineMs: number,
    readonly lastError: unknown,
  ) {
    const last = lastError instanceof Error ? `; last error: ${lastError.message}` : "";
    super(`timed out after ${deadlineMs} ms waiting for ${what}${last}`);
  }
}

export interface PollOptions {
  readonly deadlineMs: number;
  readonly intervalMs?: number;
}

/**
 * Calls `probe` until it returns a value other than undefined, or throws DeadlineError. A probe that
 * throws counts as "not yet" (its error is reported if the deadline passes), unless the error is
 * marked fatal with `fatal()`.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: PollOptions,
): Promise<T> {
  const end = Date.now() + options.deadlineMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof FatalPollError) throw err.cause;
      lastError = err;
    }
    if (Date.now() >= end) throw new DeadlineError(what, options.deadlineMs, lastError);
    await delay(options.intervalMs ?? 100);
  }
}

class FatalPollError extends Error {
  constructor(override readonly cause: unknown) {
    super("fatal");
  }
}

/** Wrap an error so that pollUntil stops at once instead of retrying. */
export function fatal(err: unknown): never {
  throw new FatalPollError(err);
}

/** A pause between polls or before a restart back-off; never used to wait for a state. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
