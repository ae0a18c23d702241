// The chainfirectl executable as an operator runs it: real process, stdout/stderr and exit status.
import { execFile, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../src/testing/test-server.js";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

function chainfirectl(args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ["--conditions=source", "--import", "tsx", join(packageDir, "src/bin/chainfirectl.ts"), ...args],
      { cwd: packageDir, timeout: 60_000 },
      (error, out, err) => resolve({ code: error ? Number(error.code ?? 1) : 0, out, err }),
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

/** The executable as a long-running process (a watch), its pipes open. */
function spawnChainfirectl(args: string[]) {
  const bin = join(packageDir, "src/bin/chainfirectl.ts");
  return spawn(process.execPath, ["--conditions=source", "--import", "tsx", bin, ...args], {
    cwd: packageDir,
  });
}

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server.stop();
});

describe("chainfirectl executable", () => {
  it("round-trips a value read from stdin and exits 0", async () => {
    // Proves the bin wires argv, stdin and stdout to the command tree.
    const put = await chainfirectl([`--endpoints=${server.endpoint}`, "put", "bin/k"], "piped value\n");
    expect(put).toEqual({ code: 0, out: "OK\n", err: "" });
    const get = await chainfirectl([
      `--endpoints=http://${server.endpoint}`,
      "get",
      "bin/k",
      "--print-value-only",
    ]);
    // As etcdctl, every byte piped in is the value: its trailing newline too.
    expect(get.out).toBe("piped value\n\n");
  }, 120_000);

  it("prints one error line on stderr and exits non-zero when the server is down", async () => {
    // Proves failures reach the shell as a status and a message, without a stack trace.
    const down = await chainfirectl([
      "--endpoints=127.0.0.1:1",
      "--command-timeout=2s",
      "--dial-timeout=2s",
      "endpoint",
      "status",
    ]);
    // etcdctl 3.4.23 answers the same way: a line for the endpoint, exit 1.
    expect(down.code).toBe(1);
    expect(down.out).toBe("");
    expect(down.err).toContain("Failed to get the status of endpoint 127.0.0.1:1 (");
    expect(down.err).not.toMatch(/\n\s+at /);
  }, 120_000);

  it("ends a running command on Ctrl-C with status 130, as etcdctl does", async () => {
    // Proves SIGINT stops the CLI at once whatever it runs (here a watch that has printed an event).
    const child = spawnChainfirectl([`--endpoints=${server.endpoint}`, "watch", "bin/w"]);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!out.includes("PUT\n") && Date.now() < deadline) {
      await chainfirectl([`--endpoints=${server.endpoint}`, "put", "bin/w", "v"]);
    }
    expect(out).toContain("PUT\nbin/w\nv\n");
    child.kill("SIGINT");
    expect(await exited).toBe(130);
  }, 120_000);

  it("ends watch -i when a watch's command fails, with standard input still open", async () => {
    // Proves the interactive watch stops reading standard input when it ends, so the process exits
    // (status 1, as etcdctl) instead of waiting for the input to close; the command itself gets
    // no standard input (it would take the request lines), so `cat` ends at once and `false` fails.
    const child = spawnChainfirectl([`--endpoints=${server.endpoint}`, "watch", "-i"]);
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      child.stdin.write("watch bin/i -- sh -c 'cat; echo ran $ETCD_WATCH_VALUE; exit 1'\nprogress\n");
      const deadline = Date.now() + 60_000;
      while (!out.includes("progress notify: ") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(out).toContain("progress notify: ");
      await chainfirectl([`--endpoints=${server.endpoint}`, "put", "bin/i", "v"]);
      expect(await exited).toBe(1);
      expect(out).toContain('PUT\nbin/i\nv\nran "v"\n');
      expect(err).toContain("error (exit status 1)");
    } finally {
      child.kill();
    }
  }, 120_000);
});
