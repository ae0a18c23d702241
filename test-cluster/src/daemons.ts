// Finds each daemon's entry point. A daemon that is not in this checkout, or not compiled yet, is
// reported with the reason and the fix instead of failing later with a spawn error.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CHAINFIRE_NODE_ARGS, chainfireEnv } from "@photoncloud/daemon";
import { repoRoot } from "./paths.js";

export const DaemonKind = { chainfire: "chainfire", flaredb: "flaredb", iam: "iam" } as const;
export type DaemonKind = (typeof DaemonKind)[keyof typeof DaemonKind];

const packageOf: Record<DaemonKind, string> = {
  chainfire: "chainfire-server",
  flaredb: "flaredb-server",
  iam: "iam-server",
};

/** How to start a daemon. */
export interface DaemonCommand {
  readonly command: string;
  readonly args: string[];
  /** Environment the daemon runs with, on top of the member's own. */
  readonly env?: Record<string, string>;
}

export type DaemonLocation =
  | ({ readonly available: true; readonly kind: DaemonKind } & DaemonCommand)
  | { readonly available: false; readonly kind: DaemonKind; readonly reason: string };

/**
 * How to run `kind`. PHOTON_<KIND>_BIN (an executable, e.g. a packaged binary from the nix flake)
 * wins; otherwise the workspace package's bin script run by this Node.
 */
export function locateDaemon(kind: DaemonKind): DaemonLocation {
  const override = process.env[`PHOTON_${kind.toUpperCase()}_BIN`];
  if (override !== undefined && override !== "") {
    if (!existsSync(override)) {
      return {
        available: false,
        kind,
        reason: `PHOTON_${kind.toUpperCase()}_BIN=${override} does not exist`,
      };
    }
    return { available: true, kind, command: override, args: [] };
  }
  const found = workspaceBin(packageOf[kind], kind);
  if (!found.ok) return { available: false, kind, reason: found.reason };
  // chainfire runs with the Node.js arguments and environment it is measured with (a larger initial
  // old generation, malloc on huge pages).
  if (kind === DaemonKind.chainfire) {
    const args = [...CHAINFIRE_NODE_ARGS, found.path];
    return { available: true, kind, command: process.execPath, args, env: chainfireEnv() };
  }
  return { available: true, kind, command: process.execPath, args: [found.path] };
}

/**
 * The script a workspace package declares as bin `name` (package.json "bin"), if it exists on disk.
 * Packages point their bins either at a small launcher or straight into dist/, so "declared but
 * missing" means "not compiled".
 */
export function workspaceBin(
  pkgDir: string,
  name: string,
): { ok: true; path: string } | { ok: false; reason: string } {
  const pkg = join(repoRoot(), "packages", pkgDir);
  const manifest = join(pkg, "package.json");
  const bins = existsSync(manifest)
    ? ((JSON.parse(readFileSync(manifest, "utf8")) as { bin?: Record<string, string> }).bin ?? {})
    : {};
  const rel = bins[name];
  if (rel === undefined) {
    return {
      ok: false,
      reason: `${name} is not in this checkout (packages/${pkgDir}/package.json declares no bin "${name}")`,
    };
  }
  const path = join(pkg, rel);
  if (!existsSync(path) || !existsSync(join(pkg, "dist"))) {
    return {
      ok: false,
      reason: `${name} is not compiled (packages/${pkgDir}/${rel} is missing): run \`pnpm build\``,
    };
  }
  return { ok: true, path };
}

/** Same as locateDaemon, but throws a DaemonUnavailableError when the daemon cannot run. */
export function requireDaemon(kind: DaemonKind): DaemonCommand {
  const location = locateDaemon(kind);
  if (!location.available) throw new DaemonUnavailableError(kind, location.reason);
  return location;
}

export class DaemonUnavailableError extends Error {
  readonly code = "DAEMON_UNAVAILABLE";
  constructor(
    readonly kind: DaemonKind,
    readonly reason: string,
  ) {
    super(`${kind} is not available: ${reason}`);
  }
}
