import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { checkHealth } from "./grpc/probe-clients.js";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const ECHO = join(packageDir, "src", "example", "echo-daemon.ts");

interface Child {
  readonly proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

const children: Child[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
});

function spawnEcho(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", ECHO, ...args], {
    cwd: packageDir,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  const child = { proc, stdout: () => out, stderr: () => err, exited };
  children.push(child);
  return child;
}

function logLines(child: Child): Record<string, unknown>[] {
  return child
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Poll the child's log until a line with `msg` appears (or the deadline passes). */
async function waitForLog(child: Child, msg: string, deadlineMs = 30_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const line = logLines(child).find((l) => l.msg === msg);
    if (line) return line;
    if (child.proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no "${msg}" log line; stdout:\n${child.stdout()}\nstderr:\n${child.stderr()}`);
}

describe("runDaemon (child process)", () => {
  it("shuts down gracefully on SIGTERM and exits 0, never logging the secret", async () => {
    // Proves the SIGTERM path runs every shutdown step in reverse start order and exits cleanly.
    const child = spawnEcho(["--shutdown-delay", "200"], { ECHO_ADMIN_TOKEN: "hunter2-secret" });
    const ready = await waitForLog(child, "echo ready");
    const grpcUrl = (ready.grpcUrls as string[])[0]!;
    expect(await checkHealth(grpcUrl.replace("http://", ""))).toBe("SERVING");
    const metrics = await (await fetch(`${(ready.httpUrls as string[])[0]}/metrics`)).text();
    expect(metrics).toMatch(/^process_resident_memory_bytes\{daemon="echo"\} \d+/m);
    child.proc.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    const steps = logLines(child)
      .filter((l) => l.msg === "stopping")
      .map((l) => l.step);
    expect(steps).toEqual(["delay", "http", "grpc"]);
    expect(logLines(child).at(-1)).toMatchObject({ msg: "stopped", clean: true });
    expect(child.stdout()).not.toContain("hunter2-secret");
  });

  it("exits 1 at once on a second signal during shutdown", async () => {
    // Proves an operator can force a stuck shutdown with a second Ctrl-C.
    const child = spawnEcho(["--shutdown-delay", "60000"]);
    await waitForLog(child, "echo ready");
    child.proc.kill("SIGINT");
    await waitForLog(child, "stopping");
    child.proc.kill("SIGINT");
    expect(await child.exited).toBe(1);
  });

  it("exits 2 with a one-line message and no stack trace on bad config", async () => {
    // Proves a configuration mistake reads as an instruction, not a crash.
    const child = spawnEcho(["--max-request-bytes", "lots"]);
    expect(await child.exited).toBe(2);
    expect(child.stderr()).toBe(
      'echo: --max-request-bytes: expected a size in bytes (a number, or with a unit: KB MB GB KiB MiB GiB), got "lots" (example: --max-request-bytes 1.5MiB)\n',
    );
    expect(child.stdout()).toBe("");
  });

  it("exits 2 when main finds the config unusable (https:// without a certificate)", async () => {
    // Proves a ConfigError thrown while starting is reported like a parse error.
    const child = spawnEcho(["--listen-client-urls", "https://127.0.0.1:0"]);
    expect(await child.exited).toBe(2);
    expect(child.stderr()).toContain("uses https:// but --cert-file is not set");
    expect(child.stderr()).not.toMatch(/\n\s+at /);
  });

  it("exits 1 with a message on stderr when a listen address is taken", async () => {
    // Proves a port clash names the flag and URL for the operator instead of a bare stack trace.
    const first = spawnEcho([]);
    const ready = await waitForLog(first, "echo ready");
    const taken = (ready.grpcUrls as string[])[0]!;
    const second = spawnEcho(["--listen-client-urls", taken]);
    expect(await second.exited).toBe(1);
    expect(second.stderr()).toContain(`echo: --listen-client-urls: cannot listen on ${taken}`);
    first.proc.kill("SIGTERM");
    expect(await first.exited).toBe(0);
  });

  it("prints the version with git and node information", async () => {
    // Proves --version prints `<name> <version>` first, then build details, and exits 0.
    const child = spawnEcho(["--version"]);
    expect(await child.exited).toBe(0);
    const lines = child.stdout().trim().split("\n");
    expect(lines[0]).toBe("echo 0.1.0");
    expect(lines).toContain(`node: ${process.version}`);
    expect(lines.some((l) => l.startsWith("git commit: "))).toBe(true);
  });

  it("logs and exits 1 when start-up fails or an error escapes", async () => {
    // Proves failures after config parsing are logged as fatal JSON lines with exit status 1.
    const atStart = spawnEcho(["--simulate-failure", "start"]);
    expect(await atStart.exited).toBe(1);
    expect(logLines(atStart).find((l) => l.level === "fatal")).toMatchObject({ msg: "failed to start" });
    const later = spawnEcho(["--simulate-failure", "uncaught"]);
    expect(await later.exited).toBe(1);
    expect(logLines(later).find((l) => l.level === "fatal")).toMatchObject({ msg: "uncaught exception" });
  });

  it("logs process warnings as JSON lines and keeps running", async () => {
    // Proves a warning raised in the process (a failed background checkpoint reports this way) is
    // in the JSON log.
    const child = spawnEcho(["--simulate-failure", "warning"]);
    expect(await waitForLog(child, "process warning")).toMatchObject({
      level: "warn",
      warning: "Warning",
      detail: "simulated warning",
    });
    await waitForLog(child, "echo ready");
    child.proc.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  });
});
