// Finds each daemon's entry point. A daemon that is not in this checkout, or not compiled yet, is
// reported with the reason and the fix instead of failing later with a spawn error.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./paths.js";

export const DaemonKind = { chainfire: "chainfire", flaredb: "flaredb", iam: "iam" } as const;
export type DaemonKind = (typeof DaemonKind)[keyof typeof DaemonKind];

const packageOf: Record<DaemonKind, string> = {
  chainfire: "chainfire-server",
  flaredb: "flaredb-server",
  iam: "iam-server",
};

export type DaemonLocation =
  | { readonly available: true; readonly kind: DaemonKind; readonly command: string; readonly args: string[] }
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
  const pkg = join(repoRoot(), "packages", packageOf[kind]);
  const bin = join(pkg, "bin", `${kind}.js`);
  if (!existsSync(bin)) {
    return {
      available: false,
      kind,
      reason: `the ${kind} daemon is not in this checkout (packages/${packageOf[kind]}/bin/${kind}.js is missing)`,
    };
  }
  if (!existsSync(join(pkg, "dist"))) {
    return { available: false, kind, reason: `the ${kind} daemon is not compiled: run \`pnpm build\`` };
  }
  return { available: true, kind, command: process.execPath, args: [bin] };
}

/** Same as locateDaemon, but throws a DaemonUnavailableError when the daemon cannot run. */
export function requireDaemon(kind: DaemonKind): { command: string; args: string[] } {
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
