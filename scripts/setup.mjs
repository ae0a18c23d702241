#!/usr/bin/env node
// One-shot set-up shared by `npm start` and `npm test`: everything a fresh machine with only Node 20
// and npm needs — pnpm, the workspace's dependencies (including the native build of better-sqlite3),
// optional system tools for differential tests, and a compiled tree. Each step is idempotent and
// cheap when already done, so both quick-start commands can always run it.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const quiet = process.env.PHOTON_SETUP_VERBOSE ? "inherit" : "pipe";

function step(name, fn) {
  const started = Date.now();
  process.stderr.write(`setup: ${name} ... `);
  try {
    fn();
  } catch (err) {
    process.stderr.write("failed\n");
    if (err.stdout) process.stderr.write(err.stdout.toString());
    if (err.stderr) process.stderr.write(err.stderr.toString());
    process.stderr.write(`setup: ${name} failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`ok (${Date.now() - started} ms)\n`);
}

function has(cmd, args = ["--version"]) {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { cwd: root, stdio: quiet, ...opts });
}

step("pnpm", () => {
  if (has("pnpm")) return;
  run("npm", ["install", "--global", "pnpm@10"]);
  if (!has("pnpm")) throw new Error("pnpm is still not on PATH after `npm install -g pnpm@10`");
});

step("dependencies (pnpm install)", () => {
  run("pnpm", ["install", "--frozen-lockfile", "--prefer-offline"]);
});

step("native sqlite (better-sqlite3)", () => {
  const probe = ["-e", "require('better-sqlite3')(':memory:').prepare('select 1').get()"];
  const cwd = join(root, "packages", "raft");
  if (spawnSync("node", probe, { cwd, stdio: "ignore" }).status === 0) return;
  run("pnpm", ["rebuild", "better-sqlite3"]);
  execFileSync("node", probe, { cwd, stdio: quiet });
});

// Debian packages some tests need are installed when we are root on a Debian-like machine;
// elsewhere the set-up says which packages to install. apt's index is refreshed only if needed.
function aptInstall(packages, extraArgs = []) {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (!root || !existsSync("/usr/bin/apt-get")) {
    process.stderr.write(`(not root or no apt-get: install ${packages.join(", ")} yourself) `);
    return;
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const args = ["install", "-y", "-q", ...extraArgs, ...packages];
  try {
    run("apt-get", args, { env });
  } catch {
    run("apt-get", ["update", "-q"], { env });
    run("apt-get", args, { env });
  }
}

// Differential tests run real etcd 3.4 beside chainfire.
step("etcd and etcdctl (for differential tests)", () => {
  if (process.env.PHOTON_SKIP_ETCD === "1") return;
  if (has("etcd") && has("etcdctl", ["version"])) return;
  aptInstall(["etcd-server", "etcd-client"]);
  // Debian starts the packaged etcd as a service; our tests run their own members.
  spawnSync("sh", ["-c", "systemctl stop etcd 2>/dev/null; pkill -x etcd 2>/dev/null; true"]);
});

// The nix packaging cannot be built here (nix cannot fetch), but CI checks that every .nix file
// parses with Debian's nix-bin (`nix-instantiate --parse`).
step("nix-instantiate (for the .nix parse check)", () => {
  if (process.env.PHOTON_SKIP_NIX === "1") return;
  if (has("nix-instantiate")) return;
  aptInstall(["nix-bin"], ["--no-install-recommends"]);
});

// h2load (a C HTTP/2 load generator) drives the daemons in `pnpm bench` without taking half of a
// small machine's CPU as a Node.js load generator would; the bench helpers' tests run it.
step("h2load (for benchmarks)", () => {
  if (has("h2load", ["--version"])) return;
  aptInstall(["nghttp2-client"], ["--no-install-recommends"]);
});

// `--netns` lanes give each member its own network namespace with iproute2's `ip`.
step("iproute2 (for --netns lanes)", () => {
  if (has("ip", ["-V"])) return;
  aptInstall(["iproute2"], ["--no-install-recommends"]);
});

step("compile (tsc -b)", () => {
  run("pnpm", ["exec", "tsc", "-b", "tsconfig.json"]);
});

// Some packages point their bins into dist/, which does not exist during the first install, so pnpm
// skips linking them; once compiled, one more (offline, quick) install links every bin.
step("link package bins", () => {
  const missing = workspaceBins().filter((name) => !existsSync(join(root, "node_modules", ".bin", name)));
  if (missing.length === 0) return;
  run("pnpm", ["install", "--frozen-lockfile", "--prefer-offline"]);
});

function workspaceBins() {
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const deps = Object.keys({ ...manifest.dependencies, ...manifest.devDependencies });
  return deps
    .filter((d) => d.startsWith("@photoncloud/"))
    .flatMap((d) => {
      const pkg = join(root, "packages", d.slice("@photoncloud/".length), "package.json");
      return existsSync(pkg) ? Object.keys(JSON.parse(readFileSync(pkg, "utf8")).bin ?? {}) : [];
    });
}
