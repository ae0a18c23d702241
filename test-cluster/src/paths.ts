// Where things live: the repository root (found from this file, so the CLI works from any directory),
// the daemons' entry points, and the `work/` tree that holds every run's data, logs and artifacts.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The monorepo root: the nearest ancestor holding pnpm-workspace.yaml. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 8; depth++) {
    if (existsSync(join(dir, "pnpm-workspace.yaml"))) return dir;
    dir = resolve(dir, "..");
  }
  throw new Error("cannot find the repository root (no pnpm-workspace.yaml above test-cluster)");
}

/** `work/` under the repository root, or PHOTON_WORK_DIR when set (tests use a temporary directory). */
export function workRoot(): string {
  return process.env.PHOTON_WORK_DIR ?? join(repoRoot(), "work");
}

/** A UTC timestamp usable as a directory name, e.g. 20261125T093000Z. */
export function utcStamp(date = new Date()): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
}
