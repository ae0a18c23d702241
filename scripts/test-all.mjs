#!/usr/bin/env node
// The whole test command: static checks, then every vitest suite, a deterministic-simulation seed
// range, the .nix parse check, and the proof lanes (a short rollout-soak; PHOTON_SOAK_DURATION
// changes its length). Stops at the first failing stage and prints a summary line per stage.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const seeds = process.env.PHOTON_SIM_SEEDS ?? "1-300";
const vitestReport = join(root, "work", "test-report", "vitest.json");
mkdirSync(dirname(vitestReport), { recursive: true });
rmSync(vitestReport, { force: true });

// The soak runs at least one full round of restarts whatever the duration; 30s keeps it to one round.
const soak = process.env.PHOTON_SOAK_DURATION ?? "30s";
const lane = (name, ...extra) => [
  `proof lane ${name}`,
  "node",
  ["test-cluster/bin/cluster.js", name, ...extra],
];

const stages = [
  ["lint (biome)", "pnpm", ["exec", "biome", "check", "."]],
  ["import cycles", "node", ["scripts/check-cycles.mjs"]],
  ["generated code current", "node", ["scripts/codegen.mjs", "--check"]],
  ["typecheck + compile", "pnpm", ["exec", "tsc", "-b", "tsconfig.json"]],
  // Packages whose tests the build does not compile typecheck them on their own.
  ["typecheck tests", "pnpm", ["-r", "--if-present", "run", "typecheck:tests"]],
  [
    "vitest",
    "pnpm",
    ["exec", "vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${vitestReport}`],
  ],
  [
    `raft simulation (seeds ${seeds})`,
    "pnpm",
    ["--filter", "@photoncloud/raft", "run", "--silent", "sim", "--seeds", seeds],
  ],
  [".nix files parse", "node", ["test-cluster/scripts/check-nix-parse.mjs"]],
  // The proof lanes: each starts its own cluster and leaves its artifacts under work/<lane>/.
  lane("core-control-plane-ops-proof"),
  lane("durability-proof"),
  lane("chainfire-live-membership-proof"),
  lane("rollout-soak", "--duration", soak),
];

// The membership lane again with every member in its own network namespace, where its
// network-partition step cuts the leader off for real. Namespaces need root and iproute2's `ip`.
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const hasIp = spawnSync("ip", ["-V"], { stdio: "ignore" }).status === 0;
if (isRoot && hasIp) stages.push(lane("chainfire-live-membership-proof", "--netns"));
else console.log("(the --netns membership lane is left out: it needs root and iproute2's `ip`)");

const summary = [];

/** The closing line CI reads: vitest's test counts plus one per other stage. */
function countsLine() {
  let passed = summary.filter((l) => l.startsWith("ok") && !l.includes(" vitest ")).length;
  let failed = summary.filter((l) => l.startsWith("FAIL") && !l.includes(" vitest ")).length;
  if (existsSync(vitestReport)) {
    const report = JSON.parse(readFileSync(vitestReport, "utf8"));
    passed += report.numPassedTests;
    failed += report.numFailedTests + (report.numFailedTestSuites ?? 0);
  }
  return `${passed} passed, ${failed} failed`;
}
for (const [name, cmd, args] of stages) {
  const started = Date.now();
  console.log(`\n=== ${name}`);
  const res = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  summary.push(`${res.status === 0 ? "ok  " : "FAIL"} ${name} (${seconds}s)`);
  if (res.status !== 0) {
    console.log(`\n${summary.join("\n")}\n${countsLine()}`);
    process.exit(res.status ?? 1);
  }
}
console.log(`\n${summary.join("\n")}\n${countsLine()}`);
