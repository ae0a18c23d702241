// In-process harness for chainfirectl tests and tools: runs one invocation, captures what it printed.
import { runCtl } from "./program.js";

export interface CtlRun {
  code: number;
  out: string;
  /** stdout as bytes (keys and values written raw). */
  outBytes: Buffer;
  err: string;
}

export async function ctl(
  args: readonly string[],
  options: { stdin?: string | Uint8Array; signal?: AbortSignal } = {},
): Promise<CtlRun> {
  const out: Buffer[] = [];
  const err: string[] = [];
  // Tests run on a shared, loaded machine: a generous default deadline (an explicit flag still wins).
  const code = await runCtl(["--command-timeout=30s", "--dial-timeout=30s", ...args], {
    out: (text) => out.push(Buffer.from(`${text}\n`)),
    outBytes: (bytes) => out.push(Buffer.concat([bytes, Buffer.from("\n")])),
    err: (text) => err.push(text),
    stderrIsTty: false,
    signal: options.signal,
    readStdin: options.stdin === undefined ? undefined : async () => options.stdin!,
  });
  const outBytes = Buffer.concat(out);
  return { code, out: outBytes.toString(), outBytes, err: err.map((l) => `${l}\n`).join("") };
}

/** Polls `check` every 25 ms until it holds; fails after `deadlineMs` naming what was awaited. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  deadlineMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
