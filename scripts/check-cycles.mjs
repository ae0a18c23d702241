#!/usr/bin/env node
// Fails when any package's source has an import cycle (generated code excluded).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dirs = ["packages", "test-cluster"].flatMap((d) =>
  d === "packages" && existsSync(join(root, d))
    ? readdirSync(join(root, d)).map((p) => join(d, p, "src"))
    : [join(d, "src")],
);
const entries = dirs.filter((d) => existsSync(join(root, d))).map((d) => `${d}/**/*.ts`);
const res = spawnSync(
  "pnpm",
  [
    "exec",
    "dpdm",
    "--no-warning",
    "--no-tree",
    "--transform",
    "--exit-code",
    "circular:1",
    "--exclude",
    "(/gen/|node_modules)",
    ...entries,
  ],
  { cwd: root, encoding: "utf8" },
);
process.stdout.write(res.stdout ?? "");
process.stderr.write(res.stderr ?? "");
process.exit(res.status ?? 1);
