#!/usr/bin/env node
// The whole test command: static checks, then every vitest suite, then a deterministic-simulation
// seed range. Stops at the first failing stage and prints a summary line per stage.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const seeds = process.env.PHOTON_SIM_SEEDS ?? "1-300";

const stages = [
  ["lint (biome)", "pnpm", ["exec", "biome", "check", "."]],
  ["import cycles", "node", ["scripts/check-cycles.mjs"]],
  ["generated code current", "node", ["scripts/codegen.mjs", "--check"]],
  ["typecheck + compile", "pnpm", ["exec", "tsc", "-b", "tsconfig.json"]],
  ["vitest", "pnpm", ["exec", "vitest", "run"]],
  [
    `raft simulation (seeds ${seeds})`,
    "pnpm",
    ["--filter", "@photoncloud/raft", "run", "--silent", "sim", "--seeds", seeds],
  ],
];

const summary = [];
for (const [name, cmd, args] of stages) {
  const started = Date.now();
  console.log(`\n=== ${name}`);
  const res = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  summary.push(`${res.status === 0 ? "ok  " : "FAIL"} ${name} (${seconds}s)`);
  if (res.status !== 0) {
    console.log(`\n${summary.join("\n")}`);
    process.exit(res.status ?? 1);
  }
}
console.log(`\n${summary.join("\n")}`);
