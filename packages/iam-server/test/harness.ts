// Starts the compiled iam daemon as a child process (built by `pnpm build`) and reads its JSON logs.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const iamBin = fileURLToPath(new URL("../bin/iam.js", import.meta.url));
const distEntry = fileURLToPath(new URL("../dist/iam-daemon.js", import.meta.url));

export interface RunningIam {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  grpcAddress: string;
  httpUrl: string;
  stop: () => Promise<number | null>;
}

const createdDirs: string[] = [];

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "iam-server-"));
  createdDirs.push(dir);
  return dir;
}

/** Removes every directory tempDir() created (call from afterAll). */
export function removeTempDirs(): void {
  for (const dir of createdDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function ed25519Pem(): string {
  return generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** A clean environment: nothing iam-related leaks in from the test runner's own environment. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...extra };
}

export function spawnIam(args: string[], env: Record<string, string>) {
  if (!existsSync(distEntry)) throw new Error("iam-server is not built: run `pnpm build` first");
  const child = spawn(process.execPath, [iamBin, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs the daemon until it exits by itself (a refused start); returns exit code and output. */
export async function runToExit(args: string[], env: Record<string, string>) {
  const p = spawnIam(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

async function pollFor<T>(what: string, fn: () => T | undefined, deadlineMs = 30_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts the daemon on ephemeral ports and waits (polling its log) until it is ready. */
export async function startIam(
  args: string[],
  env: Record<string, string>,
  clientUrl = "http://127.0.0.1:0",
): Promise<RunningIam> {
  const p = spawnIam(
    ["--listen-client-urls", clientUrl, "--listen-http-urls", "http://127.0.0.1:0", ...args],
    env,
  );
  let exitCode: number | null | undefined;
  void p.exited.then((c) => (exitCode = c));
  const ready = await pollFor("iam ready", () => {
    if (exitCode !== undefined) throw new Error(`iam exited ${exitCode}: ${p.stderr()}`);
    const line = p
      .stdout()
      .split("\n")
      .find((l) => l.includes('"msg":"iam ready"'));
    return line ? (JSON.parse(line) as { grpcUrls: string[]; httpUrls: string[] }) : undefined;
  });
  return {
    child: p.child,
    stdout: p.stdout,
    stderr: p.stderr,
    grpcAddress: ready.grpcUrls[0]!.replace(/^https?:\/\//, ""),
    httpUrl: ready.httpUrls[0]!,
    stop: async () => {
      if (exitCode === undefined) p.child.kill("SIGTERM");
      return p.exited;
    },
  };
}

/**
 * GETs a JSON document over a new connection. A pooled keep-alive connection (as `fetch` uses) races
 * the daemon's idle timeout: when the test process is slow to run (a loaded machine) the pool can reuse
 * a socket the daemon closed about 5 s after the previous request, and the request fails with
 * "other side closed". A fresh connection per request cannot hit that.
 */
export function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: HTTP ${res.statusCode}: ${body}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch (err) {
          reject(err);
        }
      });
      res.on("error", reject);
    }).on("error", reject);
  });
}
