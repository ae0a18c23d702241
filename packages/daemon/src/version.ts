// What `--version` prints: `<name> <version>`, then the git commit and Node.js version.

import { execFileSync } from "node:child_process";
import { dirname } from "node:path";

/** The git commit of the checkout containing `dir`, or "unknown" (e.g. installed from a tarball). */
export function gitCommitOf(dir: string): string {
  if (process.env.PHOTON_GIT_COMMIT) return process.env.PHOTON_GIT_COMMIT;
  try {
    return execFileSync("git", ["-C", dir, "rev-parse", "--short=12", "HEAD"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 2000,
    }).trim();
  } catch {
    return "unknown";
  }
}

export interface VersionInfo {
  readonly name: string;
  readonly version: string;
  readonly gitCommit: string;
  readonly node: string;
}

export function versionInfo(name: string, version: string, gitCommit?: string): VersionInfo {
  const dir = process.argv[1] !== undefined ? dirname(process.argv[1]) : process.cwd();
  return { name, version, gitCommit: gitCommit ?? gitCommitOf(dir), node: process.version };
}

export function formatVersion(info: VersionInfo): string {
  return `${info.name} ${info.version}\ngit commit: ${info.gitCommit}\nnode: ${info.node}\n`;
}
